"""CLI verbs, one module each. A verb module exposes ``register(subparsers)``.

Adding a verb: write ``server/commands/<verb>.py`` and list it in ``VERB_MODULES``.
"""

VERB_MODULES: tuple[str, ...] = (
    "billing_oss.server.commands.serve",
    "billing_oss.server.commands.api_key",
    "billing_oss.server.commands.account",
    "billing_oss.server.commands.bill_run",
    "billing_oss.server.commands.invoice",
    "billing_oss.server.commands.adjustment",
    "billing_oss.server.commands.credit_note",
    "billing_oss.server.commands.payment",
    "billing_oss.server.commands.aging",
    "billing_oss.server.commands.dunning",
    "billing_oss.server.commands.statement",
    "billing_oss.server.commands.ingest",
    "billing_oss.server.commands.catalog",
    "billing_oss.server.commands.suspense",
    "billing_oss.server.commands.audit",
    "billing_oss.server.commands.rerate",
    "billing_oss.server.commands.files",
    "billing_oss.server.commands.rate",
    "billing_oss.server.commands.decode",
    "billing_oss.server.commands.settle",
    "billing_oss.server.commands.report",
    "billing_oss.server.commands.ledger",
    "billing_oss.server.commands.provisioning",
    "billing_oss.server.commands.webhook",
    "billing_oss.server.commands.assure",
    "billing_oss.server.commands.simulate",
    "billing_oss.server.commands.archive",
)
