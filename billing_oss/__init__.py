"""billing-oss: the one import root the distribution installs.

The repository keeps its top-level folders (``core``, ``server``, ``native``, ``adapters``,
``config``; DESIGN.md §1); this package links them in, so they are imported — and installed —
as ``billing_oss.server`` and so on, and cannot collide with another distribution's
``server`` or ``config``.
"""
