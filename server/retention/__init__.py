"""Years of data (DESIGN.md §7): month partitions created ahead, old months archived to
files and dropped once nothing needs them, subscriber numbers pseudonymised after a period.

- ``housekeeping``: what ``serve`` does every ``retention.interval_s`` (one process a tick).
- ``archive``: plan, export, verify and restore months of usage and charges.
- ``pseudonyms``: the keyed hash that replaces calling/called/imsi/msisdn.
"""
