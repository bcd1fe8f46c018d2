"""CLI verbs, one module each. A verb module exposes ``register(subparsers)``.

Adding a verb: write ``server/commands/<verb>.py`` and list it in ``VERB_MODULES``.
"""

VERB_MODULES: tuple[str, ...] = (
    "server.commands.serve",
    "server.commands.api_key",
    "server.commands.bill_run",
    "server.commands.invoice",
    "server.commands.adjustment",
    "server.commands.credit_note",
    "server.commands.ingest",
    "server.commands.catalog",
    "server.commands.suspense",
    "server.commands.audit",
    "server.commands.rerate",
    "server.commands.files",
    "server.commands.rate",
    "server.commands.decode",
)
