"""The general-ledger export: the receivables ledger as balanced journal entries on a
configurable chart of accounts, written as CSV, JSON or the French FEC."""
