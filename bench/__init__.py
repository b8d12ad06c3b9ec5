"""Benchmarks: `python3 dev.py bench` runs every one of them (bench/run.py); results go to bench/results/."""
