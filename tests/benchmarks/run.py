#!/usr/bin/env python3
"""Run every benchmark in tests/benchmarks/ (files named bench_*.py, each with a `main()`)."""

import importlib.util
import sys
from pathlib import Path


def main() -> int:
    benches = sorted(Path(__file__).parent.glob("bench_*.py"))
    if not benches:
        print("no benchmarks yet (tests/benchmarks/bench_*.py)")
        return 0
    for path in benches:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"== {path.stem}")
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
