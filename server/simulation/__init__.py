"""Pricing simulation (DESIGN.md §8): real usage re-rated and re-priced under a candidate
catalog, compared with the catalog in force, without writing anything but its result.

- ``engine.simulate(conn, Request, Settings)``: one read-only snapshot, usage by binary COPY
  rated by the native kernel under both catalogs, every account cycle priced by the bill
  run's own computation (``billing.drafting.compute_all``).
- ``report.build(outcome)``: the comparison (totals, segments, distribution, shock,
  coverage gaps, baseline check, manifest) as JSON-able data.
- ``service.run`` (CLI) and ``service.Simulations`` (HTTP jobs) store the result row.
"""
