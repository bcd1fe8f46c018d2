"""The neutral core every other package imports and that imports none of them: the usage
record, the error and reason codes, money, and the contracts between protocol adapters and
the mediation pipeline (what an adapter hands over, what it gets back, the ports a pipeline
is assembled from)."""
