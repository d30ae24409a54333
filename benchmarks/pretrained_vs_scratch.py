"""Pretrained weights against training from scratch on the demo's synthetic data (issue 17).

    python -m benchmarks.pretrained_vs_scratch                      # RT-DETR, prints the curves
    python -m benchmarks.pretrained_vs_scratch --pretrain-epochs 12 --epochs 2 --out curves.json

Through the public SDK on the local platform (``TAO_WORKER_BACKBONE_SCALE=tiny``, the demo's
model): the network's ``--quick`` demo train job runs for :data:`PLAN` ``pretrain_epochs``; its
latest checkpoint is checked for TAO's Lightning layout (:func:`tao_layout_problems`) and
rewritten with TAO's keys only (:func:`tao_only_checkpoint`: what TAO's own trainer writes, the
worker's ``arch`` and other extras dropped); then two train jobs with the same seed, data and
``epochs`` run side by side, one with ``pretrained_model=<that file>`` (what ``--pretrained-model``
sets: ``train.pretrained_model_path``), one from scratch, validating every epoch. The result holds
both validation curves, the pretrained job's load report (job result and status.json line) and the
wall times. ``tests/test_pretrained_beats_scratch.py`` runs the same flow as a slow test.
``--network`` takes any detection network with a TAO key table; only RT-DETR has been measured
(``benchmarks/data/pretrained_vs_scratch_rtdetr.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The demo data and epochs: pre-training as the ``--quick`` demo trains (its images, size and
#: schedule) for ``pretrain_epochs``, then ``epochs`` for the pretrained and the scratch job.
PLAN: dict[str, Any] = {"pretrain_epochs": 20, "epochs": 5, "seed": 1234}
#: The top-level keys of TAO's Lightning training checkpoint (what its trainer writes).
TAO_CHECKPOINT_KEYS = ("epoch", "global_step", "pytorch-lightning_version", "state_dict",
                       "optimizer_states", "lr_schedulers", "hyper_parameters", "tao_model")


def tao_layout_problems(network: str, path: str | os.PathLike[str]) -> list[str]:
    """What keeps the checkpoint at ``path`` from being TAO's Lightning layout for ``network``:
    a missing top-level key of :data:`TAO_CHECKPOINT_KEYS`, another ``tao_model``, or a
    ``state_dict`` key outside TAO's prefix or not covered by the network's TAO key table
    (empty: TAO's layout)."""
    from tao_sdk.worker import registry
    from tao_sdk.worker.weights.files import read_weights_file

    plugin = registry.get(network)
    ckpt = read_weights_file(path, "checkpoint")
    problems = [f"no {k!r}" for k in TAO_CHECKPOINT_KEYS if k not in ckpt]
    if ckpt.get("tao_model") != plugin.name:
        problems.append(f"tao_model={ckpt.get('tao_model')!r}, not {plugin.name!r}")
    keys = plugin.tao_keys
    for key in ckpt.get("state_dict", {}):
        if key.endswith("num_batches_tracked"):
            continue
        if keys is None or keys.worker_keys(key) is None:
            problems.append(f"state_dict key {key!r} is not one of TAO's {plugin.name} keys")
    return problems


def tao_only_checkpoint(path: str | os.PathLike[str], dest: Path) -> Path:
    """``path`` rewritten at ``dest`` with only :data:`TAO_CHECKPOINT_KEYS` (no ``arch``, no
    ``format``: as TAO's trainer writes it); returns ``dest``."""
    import torch

    from tao_sdk.worker.weights.files import read_weights_file

    ckpt = read_weights_file(path, "checkpoint")
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: ckpt[k] for k in TAO_CHECKPOINT_KEYS if k in ckpt}, dest)
    return dest


def _overrides(plugin, demo: dict, epochs: int, seed: int, every: int) -> dict[str, Any]:
    """The ``--quick`` demo's train overrides for ``epochs`` (its lr milestone at the same
    fraction of the run), validation and checkpoints every ``every`` epochs."""
    over = {**plugin.demo_train_overrides(epochs, demo["size"]), **demo.get("overrides", {}),
            "train.seed": seed, "train.validation_interval": every,
            "train.checkpoint_interval": epochs}
    steps = over.get("train.optim.lr_steps")
    if steps:
        over["train.optim.lr_steps"] = [max(1, s * epochs // demo["epochs"]) for s in steps]
    return over


def _curve(job) -> list[float]:
    """The job's ``val_mAP50`` per validation (epoch order)."""
    from tao_sdk.results import metric_by_epoch

    return [round(float(v), 4) for _e, v in
            sorted(metric_by_epoch(job.progress.history, "val_mAP50").items())]


def _status_load_line(job) -> dict[str, Any]:
    lines = (Path(job.results_uri) / "train" / "status.json").read_text().splitlines()
    return next(x for x in map(json.loads, lines)
                if x.get("weights", {}).get("spec_field") == "train.pretrained_model_path")


def compare(network: str, workspace, scratch_dir: Path, plan: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """Pre-train, check and rewrite the checkpoint, then the pretrained and the scratch job (see
    the module docstring); returns ``checkpoint``, ``pretrain`` / ``pretrained`` / ``scratch``
    (``curve``, ``final`` val_mAP50, ``seconds``), ``load`` (the job result's report),
    ``status_load_line`` and ``plan``. Raises ``RuntimeError`` when a job fails."""
    from tao_sdk import create_job, wait_for_job
    from tao_sdk.demo import make_demo_dataset
    from tao_sdk.worker import registry

    plan = {**PLAN, **(plan or {})}
    plugin = registry.get(network)
    demo = plugin.demo_plan(True)
    roots = make_demo_dataset(workspace, plugin, demo["n_train"], demo["n_val"], demo["size"])
    kw = dict(datasets=plugin.task.demo_datasets(roots)["train"], automl_policy="off",
              workspace=workspace)

    def run(epochs: int, every: int, **extra: Any) -> tuple[Any, float]:
        t0 = time.monotonic()
        job = create_job(network, "train", spec_overrides=_overrides(
            plugin, demo, epochs, plan["seed"], every), **kw, **extra)
        return job, t0

    def finish(started: tuple[Any, float]) -> tuple[Any, dict[str, Any]]:
        job = wait_for_job(started[0].id, timeout=900, poll_interval=0.5, workspace=workspace)
        if job.status.value != "SUCCESS":
            raise RuntimeError(f"{network} train job {job.id} ended {job.status.value}: "
                               f"{job.result.get('message')}")
        curve = _curve(job)
        return job, {"curve": curve, "final": curve[-1],
                     "seconds": round(time.monotonic() - started[1], 1)}

    first, pretrain = finish(run(plan["pretrain_epochs"], plan["pretrain_epochs"]))
    latest = Path(first.results_uri) / "train" / plugin.latest_link
    checkpoint = tao_only_checkpoint(latest.resolve(), scratch_dir / "tao_layout.pth")
    both = [run(plan["epochs"], 1, pretrained_model=str(checkpoint)), run(plan["epochs"], 1)]
    (pre_job, pretrained), (_, scratch) = (finish(s) for s in both)
    load = next(r for r in pre_job.result["weights"]
                if r["spec_field"] == "train.pretrained_model_path")
    return {"network": network, "plan": plan, "checkpoint": str(checkpoint), "pretrain": pretrain,
            "pretrained": pretrained, "scratch": scratch, "load": load,
            "status_load_line": _status_load_line(pre_job)}


def main(argv: list[str] | None = None) -> int:
    """Run :func:`compare` for ``--network`` in a temporary workspace, print the curves (and
    write them to ``--out``)."""
    import tempfile

    from tao_sdk import Workspace

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="rtdetr")
    parser.add_argument("--pretrain-epochs", type=int, default=PLAN["pretrain_epochs"])
    parser.add_argument("--epochs", type=int, default=PLAN["epochs"])
    parser.add_argument("--seed", type=int, default=PLAN["seed"])
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TAO_WORKER_BACKBONE_SCALE", "tiny")
    plan = {"pretrain_epochs": args.pretrain_epochs, "epochs": args.epochs, "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        out = compare(args.network, Workspace(Path(tmp) / "ws"), Path(tmp), plan)
        problems = tao_layout_problems(args.network, out["checkpoint"])
    out["tao_layout_problems"] = problems
    for name in ("pretrain", "pretrained", "scratch"):
        r = out[name]
        print(f"{args.network} {name:10s} val_mAP50 {r['curve']}  ({r['seconds']} s)")
    load = out["load"]
    print(f"load: {load['loaded']} of {load['file_tensors']} tensors, skipped {load['skipped']}, "
          f"{load['left_at_init']} left at init; TAO layout problems: {problems or 'none'}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
