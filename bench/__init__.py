"""Benchmarks of kubectl-teleport: figures printed for docs/benchmarks.md, not timed tests.

Run from the repository root with the venv that install.sh made: `.dev/venv/bin/python -m bench.run` and
`.dev/venv/bin/python -m bench.soak`.
"""
