"""What every typeset document shares, whatever its domain (invoices, statements, settlement
reports): ``typst_compiler``. It imports nothing of the project, so any package may use it."""
