"""Writers of test files (3GPP 32.297/32.298, TAP 3.12) for the tests and perf/; not shipped."""
