"""SDK latency: time to resolve + validate a full spec (warm) and to submit a local job.

Targets (issue: SDK): spec resolution < 20 ms warm, local submit < 300 ms.
Run: python -m benchmarks.sdk_latency [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tao_sdk import SkillBank, Workspace, build_spec, cancel_job, create_job

DATASETS = {"train_datasets": ["s3://bucket/data/train"], "eval_dataset": "s3://bucket/data/eval"}
OVERRIDES = {"train.num_epochs": 10, "dataset.num_classes": 4, "train.optim.lr": 2e-4}


def _timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(smoke: bool = False) -> dict[str, float]:
    """Measure and return the numbers (milliseconds)."""
    bank = SkillBank()
    n = 5 if smoke else 50
    results: dict[str, float] = {}
    for name in ("rtdetr", "deformable_detr", "oneformer", "depth_net"):
        skill = bank.get(name)
        fmt = "GenericDataset" if name == "depth_net" else None
        datasets = DATASETS if name != "oneformer" else {**DATASETS}
        build_spec(skill, "train", {} if name != "rtdetr" else OVERRIDES, datasets, dataset_format=fmt)  # warm up
        times = _timed(lambda: build_spec(skill, "train", {} if name != "rtdetr" else OVERRIDES, datasets,
                                          dataset_format=fmt), n)
        results[f"spec_resolve_validate_ms[{name}]"] = statistics.median(times)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        import os

        os.environ["TAO_SKILLS_ENTRYPOINT"] = f"{sys.executable} -c pass"
        jobs = []

        def submit() -> None:
            # placeholder dataset URIs: plan-time dataset validation is measured by benchmarks.dataset_validate
            jobs.append(create_job(bank.get("rtdetr"), "train", datasets=DATASETS, spec_overrides=OVERRIDES,
                                   automl_policy="off", validate_datasets=False, workspace=ws, bank=bank))

        submit()  # warm up (creates the job store)
        times = _timed(submit, 3 if smoke else 20)
        results["local_submit_ms"] = statistics.median(times)
        results["local_submit_max_ms"] = max(times)
        for job in jobs:
            cancel_job(job.id, workspace=ws)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    res = run(args.smoke)
    for key, value in res.items():
        print(f"{key:45s} {value:8.2f}")
    spec_ok = max(v for k, v in res.items() if k.startswith("spec_")) < 20
    submit_ok = res["local_submit_ms"] < 300
    print(f"targets: spec < 20 ms warm: {'met' if spec_ok else 'MISSED'}; local submit < 300 ms: "
          f"{'met' if submit_ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
