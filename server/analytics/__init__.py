"""Analytics (DESIGN.md §10): reports from the charge rollups, anomaly flags and forecasts.
Reads billing data, never writes it; every figure states how it was computed."""
