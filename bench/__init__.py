"""framelake benchmarks: each ``bench_*.py`` module measures against a baseline run on the same
machine in the same run and reports ratios. Run them all with ``make bench``."""
