"""Settlement with carriers (DESIGN.md §11): partners, outbound TAP3 files of the usage of
their subscribers visiting us, inbound RAP returns and acknowledgements, inbound TAP
validation, and settlement reports. All SQL is in ``repo``.
"""
