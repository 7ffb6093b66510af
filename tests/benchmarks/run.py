#!/usr/bin/env python3
"""Run every benchmark in tests/benchmarks/ (files named bench_*.py, each with `main(argv) -> int`).

Exit status: non-zero if any benchmark reports disagreeing values (speed targets are only printed).
"""

import importlib.util
import sys
from pathlib import Path


def main() -> int:
    status = 0
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"== {path.stem}", flush=True)
        status |= int(module.main([]) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
