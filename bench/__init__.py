"""cxpulse benchmarks: budgets measured side by side with the tools people already trust.

"Light on the desk" and "fast at the collector" are claims until a figure backs them, so each
module here produces figures (value, budget, peer value) for one claim, and ``bench.run`` prints
them as one table and writes the same as JSON. Budgets live here, in the benchmark output, and
never in timed unit tests, which would fail at random on a loaded CI machine.

    .venv/bin/python -m bench.run --quick --json bench.json   # CI smoke, under 3 minutes
    .venv/bin/python -m bench.run --json bench.json           # the full run for docs/benchmarks.md

Modules: ``report`` (figures, table, JSON), ``procstat`` (RSS and CPU of a process tree),
``footprint`` (the agent in a namespace path beside blackbox_exporter and ping), ``ingest``
with ``loadgen`` and ``ceiling`` (collector ingest against a bare executemany), ``profile``
(py-spy hot spots). The benchmark is not part of the installed package: run it from a clone.
"""
