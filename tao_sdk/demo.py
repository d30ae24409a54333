"""``tao-skills demo``: a synthetic COCO dataset -> RT-DETR train -> evaluate -> export -> inference.

Everything goes through the public SDK on the local platform, exactly as an agent would drive it:
the dataset is written into the workspace's storage root in the same layout as an S3 dataset
(``images.tar.gz``, ``annotations.json``, ``label_map.txt``), then jobs are created with
``create_job`` and followed with ``wait_for_job``. To show the model really learns, the same
model is also run for one epoch at a learning rate of 1e-12 (weights effectively unchanged; the
worker rejects lr=0) and both val_mAP50 values are printed. gen_trt_engine runs only where an NVIDIA GPU is present.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .errors import TaoSkillsError
from .jobs import Job, create_job, wait_for_job
from .results import format_progress
from .workspace import Workspace, default_workspace

#: Class names in the synthetic generator's shape order (rectangle -> square, ellipse -> disc).
CLASSES = ("square", "disc")
IMAGE_SIZE = 128


def demo_overrides(epochs: int) -> dict[str, Any]:
    """A small RT-DETR that trains on 2 CPU cores in about a minute (spec keys of the RT-DETR skill)."""
    return {
        "dataset.num_classes": len(CLASSES) + 1,
        "dataset.batch_size": 4,
        "dataset.workers": 1,
        "dataset.augmentation.multi_scales": [IMAGE_SIZE],
        "dataset.augmentation.train_spatial_size": [IMAGE_SIZE, IMAGE_SIZE],
        "dataset.augmentation.eval_spatial_size": [IMAGE_SIZE, IMAGE_SIZE],
        "dataset.augmentation.distortion_prob": 0.5,
        "model.backbone": "resnet_18",
        "model.num_queries": 20,
        "model.num_select": 20,
        "model.hidden_dim": 64,
        "model.nheads": 4,
        "model.dim_feedforward": 128,
        "model.enc_layers": 1,
        "model.dec_layers": 1,
        "model.feat_channels": [64, 64, 64],
        "model.dn_number": 10,
        "train.num_epochs": epochs,
        "train.checkpoint_interval": max(1, epochs // 4),
        "train.validation_interval": max(1, epochs // 4),
        "train.optim.lr": 5e-4,
        "train.optim.lr_backbone": 5e-4,
        "wandb.enable": False,
    }


def _say(message: str, json_mode: bool) -> None:
    print(message, file=sys.stderr if json_mode else sys.stdout, flush=True)


def _run(skill: str, action: str, json_mode: bool, **kwargs: Any) -> Job:
    job = create_job(skill, action, **kwargs)
    _say(f"{action}: {job.id} started", json_mode)
    shown: list[str] = []

    def progress(j: Job) -> None:
        line = format_progress(j.progress) if j.progress else j.status.value
        if not shown or shown[-1] != line:
            shown.append(line)
            _say("  " + line, json_mode)

    job = wait_for_job(job.id, poll_interval=0.5, workspace=kwargs.get("workspace"), on_progress=progress)
    if job.status.value != "SUCCESS":
        raise TaoSkillsError(f"demo {action} job {job.id} ended {job.status.value}: {job.result.get('message')}; "
                             f"see `tao-skills logs {job.id}`")
    return job


def _has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def make_demo_dataset(workspace: Workspace, n_train: int, n_val: int) -> dict[str, str]:
    """Write (once) the synthetic shapes dataset under the storage root; returns dataset roots."""
    from .worker.synthetic import make_coco_dataset

    root = Path(workspace.datasets_uri(f"demo-shapes-{n_train}-{n_val}"))
    marker = root / ".complete"
    if not marker.exists():
        if root.exists():
            shutil.rmtree(root)
        make_coco_dataset(root, n_train=n_train, n_val=n_val, classes=CLASSES, size=IMAGE_SIZE, seed=0)
        marker.write_text("ok\n")
    return {"train": str(root / "train"), "val": str(root / "val")}


def run_demo(json_mode: bool = False, quick: bool = False, workspace: Workspace | None = None) -> int:
    """Run the demo and print KPIs, artifact paths and a predictions PNG; returns the exit status."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        raise TaoSkillsError("the demo trains a real model and needs the worker: run `make demo`, or "
                             "`pip install torch==2.13.0 && pip install 'tao-skill-bank[worker]'`")
    os.environ.setdefault("TAO_WORKER_BACKBONE_SCALE", "tiny")  # one narrow ResNet block per stage
    workspace = workspace or default_workspace()
    started = time.monotonic()
    epochs, n_train, n_val = (8, 24, 8) if quick else (40, 64, 16)
    data = make_demo_dataset(workspace, n_train, n_val)
    _say(f"dataset: {n_train} train / {n_val} val synthetic images ({', '.join(CLASSES)}) in "
         f"{Path(data['train']).parent}", json_mode)
    datasets = {"train_datasets": [data["train"]], "eval_dataset": data["val"], "inference_dataset": data["val"]}
    overrides = demo_overrides(epochs)
    common = {"dataset.num_classes": overrides["dataset.num_classes"]}
    kw = dict(workspace=workspace, automl_policy="off")

    baseline = _run("rtdetr", "train", json_mode, datasets=datasets, **kw,
                    spec_overrides={**overrides, "train.num_epochs": 1, "train.checkpoint_interval": 1,
                                    "train.validation_interval": 1, "train.optim.lr": 1e-12,
                                    "train.optim.lr_backbone": 1e-12})
    train = _run("rtdetr", "train", json_mode, datasets=datasets, spec_overrides=overrides, **kw)
    evaluate = _run("rtdetr", "evaluate", json_mode, parent_job_id=train.id,
                    datasets={"eval_dataset": data["val"]}, spec_overrides=common, **kw)
    export = _run("rtdetr", "export", json_mode, parent_job_id=train.id,
                  spec_overrides={**common, "export.input_height": IMAGE_SIZE, "export.input_width": IMAGE_SIZE},
                  **kw)
    inference = _run("rtdetr", "inference", json_mode, parent_job_id=train.id,
                     datasets={"inference_dataset": data["val"]},
                     spec_overrides={**common, "inference.input_height": IMAGE_SIZE,
                                     "inference.input_width": IMAGE_SIZE, "inference.conf_threshold": 0.3}, **kw)
    engine = None
    if _has_gpu():
        engine = _run("rtdetr", "gen_trt_engine", json_mode, parent_job_id=export.id,
                      datasets={"calibration_dataset": data["train"]}, spec_overrides={}, **kw)
    else:
        _say("gen_trt_engine: skipped (TensorRT needs an NVIDIA GPU; none here)", json_mode)

    annotated = sorted(p for p in inference.artifacts() if "images_annotated" in p
                       and p.lower().endswith((".png", ".jpg", ".jpeg")))
    picture = contact_sheet(annotated[:8], workspace.root / "demo_predictions.png") if annotated else None
    summary = {
        "jobs": {"baseline_untrained": baseline.id, "train": train.id, "evaluate": evaluate.id,
                 "export": export.id, "inference": inference.id, "gen_trt_engine": engine.id if engine else None},
        "val_mAP50_untrained": _best(baseline, "val_mAP50"),
        "val_mAP50_trained": _best(train, "val_mAP50"),
        "train_kpis": train.kpis,
        "evaluate_kpis": evaluate.kpis,
        "export_kpis": export.kpis,
        "checkpoint": evaluate.result.get("parent_artifact"),
        "onnx": next((a for a in export.artifacts() if a.endswith(".onnx")), None),
        "predictions_png": str(picture) if picture else None,
        "seconds": round(time.monotonic() - started, 1),
    }
    if json_mode:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print("\nDemo finished in {seconds} s".format(**summary))
        print(f"  val_mAP50 untrained (same model, lr=1e-12): {summary['val_mAP50_untrained']:.3f}")
        print(f"  val_mAP50 trained ({epochs} epochs):        {summary['val_mAP50_trained']:.3f}")
        print("  evaluate: " + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(evaluate.kpis.items())
                                          if not isinstance(v, dict)))
        print(f"  best checkpoint: {summary['checkpoint']}")
        print(f"  ONNX model:      {summary['onnx']}")
        print(f"  predictions PNG: {summary['predictions_png']}")
        print(f"  jobs: `tao-skills jobs` (workspace {workspace.root})")
    return 0


def contact_sheet(images: list[str], out: Path, columns: int = 4) -> Path:
    """Tile the inference job's annotated images (predicted boxes drawn) into one PNG."""
    from PIL import Image

    tiles = [Image.open(p).convert("RGB") for p in images]
    w = max(t.width for t in tiles)
    h = max(t.height for t in tiles)
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (min(columns, len(tiles)) * w, rows * h), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * w, (i // columns) * h))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out


def _best(job: Job, metric: str) -> float:
    from .results import best_epoch

    best = best_epoch(job.progress.history, metric, "max") if job.progress else None
    return float(best[1]) if best else float(job.kpis.get(metric, 0.0))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
