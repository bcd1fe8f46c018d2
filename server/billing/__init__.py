"""Invoicing: bill runs turn charges into invoices, finalising numbers them without gaps,
credit notes correct them. Pure maths in ``rounding``, ``pricing``, ``periods``, ``tax`` and
``compute``; SQL in ``store``; outputs in ``render_pdf`` and ``cii``.
"""
