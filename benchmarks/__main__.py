"""Run every benchmark: ``python -m benchmarks`` (full) or ``python -m benchmarks --smoke`` (CI)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

MODULES = ["benchmarks.sdk_latency", "benchmarks.worker_throughput", "benchmarks.automl_regret"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="quick run (CI): few repetitions")
    parser.add_argument("--only", help="run one benchmark module (e.g. sdk_latency)")
    args = parser.parse_args(argv)
    failed = 0
    for name in MODULES:
        if args.only and not name.endswith(args.only):
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        print(f"== {name}{' (smoke)' if args.smoke else ''}", flush=True)
        t0 = time.perf_counter()
        rc = module.main(["--smoke"] if args.smoke else [])
        print(f"== {name}: exit {rc} in {time.perf_counter() - t0:.1f} s", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
