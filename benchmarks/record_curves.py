"""Record real learning curves of the demo's tiny RT-DETR over a grid of searched hyperparameters.

    python -m benchmarks.record_curves                 # record (resumes: configs already in the table are kept)
    python -m benchmarks.record_curves --epochs 12 --out benchmarks/data/rtdetr_curves.json

Every grid point is one real train job of the tiny RT-DETR from ``tao-skills demo``
(:func:`tao_sdk.demo.demo_overrides`, ``TAO_WORKER_BACKBONE_SCALE=tiny``) on the synthetic shapes
dataset, run through the public SDK on the local platform with validation after every epoch. The
per-epoch ``val_mAP50`` curve (and the seconds per epoch) is appended to the JSON table after each
configuration, so an interrupted recording continues where it stopped. The learning rate is
constant (no decay milestone inside the run), so continuing a checkpoint for more epochs trains
exactly like a longer run: the replay in :mod:`benchmarks.tabular` relies on that.

The table is replayed as a tabular objective (HPOBench / YAHPO style) by
:mod:`benchmarks.tabular`; regenerate it only when the worker's model or the grid changes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tao_sdk.dotted import get_path  # noqa: E402  (after the sys.path line)

DEFAULT_OUT = ROOT / "benchmarks" / "data" / "rtdetr_curves.json"

#: The searched hyperparameters and their grid levels (dotted spec paths of the RT-DETR train schema).
GRID: dict[str, list[Any]] = {
    "train.optim.lr": [1e-4, 3e-4, 1e-3, 3e-3],
    "train.optim.lr_backbone": [1e-5, 1e-4, 1e-3],
    "dataset.batch_size": [4, 8],
}
#: Metrics recorded per epoch (the table's objective is chosen at replay time).
METRICS = ("val_loss", "val_mAP50")


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid levels, as ``{dotted path: value}`` dicts."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def record_one(params: dict[str, Any], epochs: int, data: dict[str, str], size: int,
               workspace: Any) -> dict[str, Any]:
    """Train one configuration for ``epochs`` epochs.

    Returns ``{"params", "status", "curves": {metric: [value per epoch]}, "seconds_per_epoch"}``.
    """
    from tao_sdk.demo import demo_overrides
    from tao_sdk.jobs import create_job, wait_for_job

    overrides = {**demo_overrides(epochs), **params, "train.checkpoint_interval": epochs,
                 "train.validation_interval": 1, "train.optim.lr_steps": [10 * epochs],
                 "dataset.augmentation.multi_scales": [size],
                 "dataset.augmentation.train_spatial_size": [size, size],
                 "dataset.augmentation.eval_spatial_size": [size, size]}
    datasets = {"train_datasets": [data["train"]], "eval_dataset": data["val"]}
    t0 = time.monotonic()
    job = create_job("rtdetr", "train", datasets=datasets, spec_overrides=overrides, automl_policy="off",
                     workspace=workspace)
    job = wait_for_job(job.id, poll_interval=1.0, workspace=workspace)
    return {**curves_of(job, params, epochs), "seconds_per_epoch": round((time.monotonic() - t0) / epochs, 3)}


def curves_of(job: Any, params: dict[str, Any], epochs: int) -> dict[str, Any]:
    """The table point of a finished train job: per-epoch value of every metric in :data:`METRICS`."""
    from tao_sdk.results import metric_by_epoch

    history = job.progress.history if job.progress else []
    curves = {}
    for metric in METRICS:
        # validation runs every epoch: a repeated value is a real measurement, keep every epoch
        by_epoch = metric_by_epoch(history, metric, collapse_repeats=False)
        curves[metric] = [float(by_epoch[e]) for e in sorted(by_epoch)]
    ok = job.status.value == "SUCCESS" and all(len(c) == epochs for c in curves.values())
    point = {"params": params, "job_id": job.id, "status": "SUCCESS" if ok else job.status.value, "curves": curves}
    if not ok:
        point["error"] = (job.result or {}).get("message") or f"only {min(map(len, curves.values()))} epochs"
    return point


def reparse(table: dict[str, Any], workspace: Any) -> None:
    """Re-read every point's curves from the train jobs recorded in ``workspace`` (no training)."""
    from tao_sdk.jobs import get_job, list_jobs

    by_key = {}
    for job in list_jobs(workspace=workspace):
        if (job.action == "train" and job.status.value == "SUCCESS"
                and get_path(job.spec, "train.num_epochs") == table["epochs"]):
            params = {n: get_path(job.spec, n) for n in GRID}
            by_key[_key(params)] = job
    for point in table["points"]:
        job = by_key.get(_key(point["params"]))
        if job is not None:
            point.update(curves_of(get_job(job.id, workspace=workspace), point["params"], table["epochs"]))


def _dataset(workspace: Any, n_train: int, n_val: int, size: int) -> dict[str, str]:
    from tao_sdk.demo import CLASSES
    from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset

    root = Path(workspace.datasets_uri(f"curves-shapes-{n_train}-{n_val}-{size}"))
    if not (root / ".complete").exists():
        make_coco_dataset(root, n_train=n_train, n_val=n_val, classes=CLASSES, size=size, seed=0)
        (root / ".complete").write_text("ok\n")
    return {"train": str(root / "train"), "val": str(root / "val")}


def _write(out: Path, table: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    """Record (or complete) the curve table; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=18)
    ap.add_argument("--n-train", type=int, default=24)
    ap.add_argument("--n-val", type=int, default=8)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "tao_curves_ws")
    ap.add_argument("--reparse", action="store_true",
                    help="only re-read the curves of the table's points from the jobs in --workspace")
    args = ap.parse_args(argv)
    os.environ.setdefault("TAO_WORKER_BACKBONE_SCALE", "tiny")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")   # one trainer thread: cores are shared, threads only contend
    from tao_sdk.workspace import Workspace

    workspace = Workspace(args.workspace)
    data = _dataset(workspace, args.n_train, args.n_val, args.size)
    setup = {"model": "rtdetr tiny (tao_sdk.demo.demo_overrides, TAO_WORKER_BACKBONE_SCALE=tiny)",
             "dataset": f"synthetic shapes ({args.n_train} train / {args.n_val} val images, {args.size} px)",
             "epochs": args.epochs, "grid": GRID, "metrics": list(METRICS)}
    table = json.loads(args.out.read_text()) if args.out.exists() else {}
    if {k: table.get(k) for k in setup} != setup:
        table = {**setup, "points": []}
    if args.reparse:
        reparse(table, workspace)
        _write(args.out, table)
        print(f"re-read {len(table['points'])} point(s) into {args.out}")
        return 0
    done = {_key(p["params"]) for p in table["points"]}
    todo = [p for p in grid_points(GRID) if _key(p) not in done]
    print(f"{len(done)} configuration(s) recorded, {len(todo)} to go ({args.epochs} epochs each)", flush=True)
    for i, params in enumerate(todo):
        point = record_one(params, args.epochs, data, args.size, workspace)
        table["points"].append(point)
        _write(args.out, table)
        print(f"[{i + 1}/{len(todo)}] {params}: {point['status']} "
              + ", ".join(f"{m} {c[0]:.3g}->{c[-1]:.3g}" for m, c in point["curves"].items() if c)
              + f" ({point['seconds_per_epoch']:.1f} s/epoch)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
