"""Run the benchmarks: ``python -m benchmarks`` (all, full), ``python -m benchmarks --smoke`` (CI),
``python -m benchmarks automl`` (one benchmark by short name: sdk_latency, worker_throughput, automl,
gpu_throughput, dataset_validate; gpu_throughput says it needs CUDA and exits 0 without a GPU)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

MODULES = ["benchmarks.sdk_latency", "benchmarks.worker_throughput", "benchmarks.automl_regret",
           "benchmarks.gpu_throughput", "benchmarks.dataset_validate"]
#: short names accepted as ``python -m benchmarks NAME`` / ``--only NAME``
ALIASES = {"automl": "benchmarks.automl_regret", "sdk_latency": "benchmarks.sdk_latency",
           "worker_throughput": "benchmarks.worker_throughput",
           "gpu_throughput": "benchmarks.gpu_throughput", "dataset_validate": "benchmarks.dataset_validate"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="quick run (CI): few repetitions")
    parser.add_argument("name", nargs="?", help=f"run one benchmark: {', '.join(ALIASES)}")
    parser.add_argument("--only", help="run one benchmark module (e.g. sdk_latency)")
    args = parser.parse_args(argv)
    only = args.name or args.only
    if only and not any(name.endswith(only) for name in MODULES) and only not in ALIASES:
        parser.error(f"unknown benchmark {only!r}; choose one of {', '.join(ALIASES)}")
    failed = 0
    for name in MODULES:
        if only and ALIASES.get(only, "") != name and not name.endswith(only):
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
