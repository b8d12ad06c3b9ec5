"""Run every benchmark in bench/ (`python3 dev.py bench [ARGS]`), one process each, in name order.

Extra arguments go to every benchmark, e.g. `python3 dev.py bench --codes 500` for a quick run.
Each benchmark is a script here with a main(); it prints its report and writes bench/results/<name>.json.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"run.py", "__init__.py", "common.py", "bare_redirect.py"}


def main() -> int:
    scripts = sorted(p for p in BENCH.glob("*.py") if p.name not in NOT_BENCHMARKS)
    failed = []
    for script in scripts:
        print(f"=== {script.stem} ===", flush=True)
        # A process of its own: each benchmark starts and stops its own servers and pools.
        if subprocess.run([sys.executable, str(script), *sys.argv[1:]]).returncode != 0:
            failed.append(script.stem)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
