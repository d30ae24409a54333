"""Worker throughput and learning benchmark (CPU-friendly).

Trains the worker's networks on a synthetic shapes dataset at a tiny configuration and reports
seconds per epoch (warm epochs, excluding the first), steps per second, and the validation
mAP50 of the untrained model vs the trained one::

    python benchmarks/worker_throughput.py            # RT-DETR + Deformable DETR, 30 epochs
    python benchmarks/worker_throughput.py --smoke    # 2 epochs on 12 images (seconds)
    python benchmarks/worker_throughput.py --network rtdetr --epochs 40 --json out.json

Uses ``TAO_WORKER_BACKBONE_SCALE=tiny`` (one narrow ResNet block per stage).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def tiny_spec(network: str, ds: dict, results_dir: str, size: int, epochs: int) -> dict[str, Any]:
    """A tiny train spec for ``network`` on the synthetic dataset ``ds``."""
    train, val = ds["train"], ds["val"]
    val_src = {"image_dir": str(val["images"]), "json_file": str(val["annotations"])}
    spec: dict[str, Any] = {
        "results_dir": results_dir,
        "dataset": {
            "train_data_sources": [{"image_dir": str(train["images"]),
                                    "json_file": str(train["annotations"])}],
            "val_data_sources": val_src if network == "rtdetr" else [val_src],
            "num_classes": 3, "batch_size": 4, "workers": 0,
        },
        "model": {"backbone": "resnet_18", "num_queries": 20, "num_select": 20,
                  "hidden_dim": 64, "nheads": 4, "dim_feedforward": 128, "enc_layers": 1},
        "train": {"num_epochs": epochs, "checkpoint_interval": epochs,
                  "validation_interval": max(1, epochs // 4),
                  "optim": {"lr": 5e-4, "lr_backbone": 5e-4}},
        "wandb": {"enable": False},
    }
    if network == "rtdetr":
        spec["model"].update(dec_layers=1, feat_channels=[64, 64, 64], dn_number=10)
        spec["dataset"]["augmentation"] = {"multi_scales": [size],
                                           "train_spatial_size": [size, size],
                                           "eval_spatial_size": [size, size],
                                           "distortion_prob": 0.5}
    else:
        spec["model"].update(dec_layers=2, num_feature_levels=3, return_interm_indices=[2, 3, 4],
                             dropout_ratio=0.0)
        spec["dataset"]["augmentation"] = {"scales": [size], "test_random_resize": size,
                                           "random_resize_max_size": size}
    return spec


def untrained_map50(network: str, spec: dict[str, Any]) -> float:
    """val mAP50 of a freshly initialised model (same seed as training)."""
    import torch

    from tao_sdk.worker.actions import _policy
    from tao_sdk.worker.data import Collator, DetectionDataset
    from tao_sdk.worker.evaluation import coco_map, predict
    from tao_sdk.worker.models import build_arch, model_from_arch
    from tao_sdk.worker.staging import load_coco, stage_image_dir

    torch.manual_seed(1234)
    arch = build_arch(network, spec)
    model = model_from_arch(arch)
    src = spec["dataset"]["val_data_sources"]
    src = src[0] if isinstance(src, list) else src
    data = load_coco(Path(src["json_file"]), stage_image_dir(src["image_dir"], "val"),
                     arch["num_classes"])
    loader = torch.utils.data.DataLoader(
        DetectionDataset(data.images, train=False), batch_size=4,
        collate_fn=Collator(_policy(network, spec), arch["mean"], arch["std"], train=False))
    results, _ = predict(model, loader, arch, torch.device("cpu"),
                         pass_mask=network == "deformable_detr")
    return coco_map(data.raw, results, data.label_to_category)["mAP50"]


def run(network: str, epochs: int, n_train: int, n_val: int, size: int,
        workdir: Path) -> dict[str, Any]:
    """Train ``network`` for ``epochs``; return timing and accuracy figures."""
    from tao_sdk.worker.cli import main
    from tao_sdk.worker.synthetic import make_coco_dataset

    ds = make_coco_dataset(workdir / "data", n_train, n_val, size=size, seed=0)
    spec = tiny_spec(network, ds, str(workdir / f"results-{network}"), size, epochs)
    before = untrained_map50(network, copy.deepcopy(spec))
    spec_file = workdir / f"{network}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    t0 = time.monotonic()
    code = main([network, "train", "-e", str(spec_file)])
    wall = time.monotonic() - t0
    lines = [json.loads(x) for x in
             (workdir / f"results-{network}" / "train" / "status.json").read_text().splitlines()]
    from tao_sdk.results import parse_duration

    epochs_lines = [ln for ln in lines if "time_per_epoch" in ln]
    times = [parse_duration(ln["time_per_epoch"]) for ln in epochs_lines]
    warm = times[1:] or times
    steps_per_epoch = epochs_lines[0]["max_step"] // epochs if epochs_lines else 0
    per_epoch = sum(warm) / len(warm) if warm else float("nan")
    kpi = lines[-1].get("kpi", {})
    return {
        "network": network, "exit_code": code, "epochs": epochs, "train_images": n_train,
        "val_images": n_val, "image_size": size, "batch_size": 4,
        "steps_per_epoch": steps_per_epoch,
        "first_epoch_s": round(times[0], 3) if times else None,
        "seconds_per_epoch": round(per_epoch, 3),
        "steps_per_second": round(steps_per_epoch / per_epoch, 2) if per_epoch else None,
        "wall_s": round(wall, 1),
        "val_mAP50_untrained": round(before, 4),
        "val_mAP50_trained": round(float(kpi.get("val_mAP50", float("nan"))), 4),
        "val_mAP_trained": round(float(kpi.get("val_mAP", float("nan"))), 4),
        "cpu_threads": __import__("torch").get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints one JSON object per network."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", choices=["rtdetr", "deformable_detr", "all"], default="all")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--smoke", action="store_true", help="2 epochs, 12 images of 64 px")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    args = p.parse_args(argv)
    os.environ.setdefault("TAO_WORKER_BACKBONE_SCALE", "tiny")
    epochs, n_train, n_val, size = ((2, 12, 4, 64) if args.smoke else (args.epochs, 32, 8, 128))
    nets = ["rtdetr", "deformable_detr"] if args.network == "all" else [args.network]
    out = []
    with tempfile.TemporaryDirectory(prefix="tao-worker-bench-") as tmp:
        os.environ.setdefault("TAO_WORKER_CACHE", str(Path(tmp) / "cache"))
        for net in nets:
            res = run(net, epochs, n_train, n_val, size, Path(tmp))
            print(json.dumps(res), flush=True)
            out.append(res)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if all(r["exit_code"] == 0 for r in out) else 1


if __name__ == "__main__":
    sys.exit(main())
