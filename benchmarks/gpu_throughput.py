"""GPU training throughput of the worker per precision, vs a plain fp32 loop and the data rate.

On a CUDA machine, in one run, for one network (default ``rtdetr``) at the shipped train
template's model (``references/spec_template_train.yaml`` of the skill: ResNet-50 for RT-DETR,
``TAO_WORKER_BACKBONE_SCALE=full``), square synthetic images of ``--size`` px (640) from the
network task's synthetic writer, and each batch size of ``--batch`` (16 and 64):

- ``worker``: images/s of ``python -m tao_sdk.worker <net> train`` (in-process) for each
  ``train.precision`` (fp32 with TF32, bf16, fp16), median of the warm epochs (from
  ``time_per_epoch``; no validation, no checkpoint inside the measured epochs);
- ``plain_fp32``: a hand-written fp32 loop over the same model and data (the baseline;
  :func:`benchmarks.worker_throughput.plain_loop`);
- ``data_only``: the task's data pipeline alone (decode, augment, collate) with the template's
  ``dataset.workers`` loader processes, no model; on CUDA the loader hands over uint8 batches
  that the worker normalises on the GPU (``Collator.defer_normalize``), as in training;
- ratios ``worker / plain_fp32`` per precision and ``data_only / worker``.

Without CUDA it prints that it needs a GPU and exits 0 (with ``--json``, it writes
``{"cuda": false, ...}``)::

    python benchmarks/gpu_throughput.py --json gpu.json
    python benchmarks/gpu_throughput.py --batch 16 --precision bf16 --epochs 3 --images 256
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import worker_throughput as W  # noqa: E402


def template_spec(network: str, data: dict, results_dir: str, size: int, batch: int,
                  epochs: int, tiny_model: bool = False) -> dict[str, Any]:
    """The skill's shipped train template with the synthetic data, ``batch``, ``size`` px and
    no validation / checkpoint before the end (``tiny_model``: the plugin's tiny model
    instead of the template's, for the CPU check)."""
    from tao_sdk.bank import SkillBank
    from tao_sdk.worker import spec as S

    plugin = W._plugin(network)
    spec = copy.deepcopy(SkillBank().get(network).template("train"))
    tiny = plugin.task.tiny_spec(plugin, data, results_dir, size, epochs)
    # The data sources, input size and class count of the synthetic data; the model is the
    # template's.
    spec["results_dir"] = results_dir
    spec["dataset"]["train_data_sources"] = tiny["dataset"]["train_data_sources"]
    spec["dataset"]["val_data_sources"] = None
    spec["dataset"]["num_classes"] = tiny["dataset"]["num_classes"]
    S.set_value(spec, plugin.task.batch_size_key, batch)
    for key, value in plugin.tiny_overrides(size).items():
        if tiny_model or key.startswith("dataset.augmentation."):
            S.set_value(spec, key, value)
    spec["train"].update(num_epochs=epochs, checkpoint_interval=epochs + 1,
                         validation_interval=epochs + 1, seed=W._SEED)
    spec["train"]["pretrained_model_path"] = None
    spec["model"]["pretrained_backbone_path"] = None
    return spec


def data_rate(network: str, spec: dict[str, Any], epochs: int) -> float:
    """Images/s of the task's data pipeline alone with the spec's loader workers."""
    import torch

    from tao_sdk.worker import spec as S

    plugin = W._plugin(network)
    arch = plugin.build_arch(spec)
    samples, _val = plugin.task.load_train(spec, arch)
    ds, coll = plugin.task.train_dataset(plugin, spec, arch, samples, W._SEED)
    if torch.cuda.is_available() and hasattr(coll, "defer_normalize"):
        coll.defer_normalize = True  # as the worker's CUDA train loader: normalised on the GPU
    workers = int(spec["dataset"].get("workers") or 0)
    loader = torch.utils.data.DataLoader(ds, batch_size=S.get(spec, plugin.task.batch_size_key),
                                         shuffle=True, collate_fn=coll, num_workers=workers,
                                         persistent_workers=bool(workers), pin_memory=True,
                                         prefetch_factor=4 if workers else None)
    rates = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        n = 0
        for batch in loader:
            n += batch["pixel_values"].shape[0]
        if epoch:  # the first epoch starts the workers
            rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates) if rates else float("nan")


def worker_rate(network: str, spec: dict[str, Any], precision: str, workdir: Path) -> float:
    """Median warm-epoch images/s of the worker at ``precision``."""
    from tao_sdk.worker import spec as S
    spec = copy.deepcopy(spec)
    spec["train"]["precision"] = precision
    batch = S.get(spec, W._plugin(network).task.batch_size_key)
    w = W.worker_loop(network, spec, workdir, f"gpu-{precision}-{batch}")
    warm = w["epoch_s"][1:] or w["epoch_s"]
    return len_images(spec) / statistics.median(warm)


def len_images(spec: dict[str, Any]) -> int:
    """Number of training images of the spec (its first source's annotations)."""
    src = spec["dataset"]["train_data_sources"][0]
    return len(json.loads(Path(src["json_file"]).read_text())["images"])


def run(network: str, batches: list[int], precisions: list[str], size: int, images: int,
        epochs: int, workdir: Path, device: str = "cuda", tiny_model: bool = False
        ) -> list[dict[str, Any]]:
    """One result dict per batch size (see the module docstring)."""
    import torch

    plugin = W._plugin(network)
    data = plugin.task.write_synthetic(workdir / "data", images, 2, size)
    out = []
    for batch in batches:
        spec = template_spec(network, data, str(workdir / "unused"), size, batch, epochs,
                             tiny_model)
        plain = W.plain_loop(network, spec, epochs, device=device,
                             workers=int(spec["dataset"].get("workers") or 0))
        plain_ips = images / statistics.median(plain["epoch_s"][1:] or plain["epoch_s"])
        row: dict[str, Any] = {
            "network": network, "batch_size": batch,
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else "none (CPU check)",
            "image_size": size, "images": images, "epochs": epochs,
            "backbone": spec["model"].get("backbone"), "workers": spec["dataset"].get("workers"),
            "plain_fp32_images_per_s": round(plain_ips, 2),
            "data_only_images_per_s": round(data_rate(network, spec, epochs), 2),
            "worker_images_per_s": {},
        }
        for precision in precisions:
            row["worker_images_per_s"][precision] = round(worker_rate(network, spec, precision,
                                                                      workdir), 2)
        row["speedup_vs_plain_fp32"] = {p: round(v / plain_ips, 3)
                                        for p, v in row["worker_images_per_s"].items()}
        best = max(row["worker_images_per_s"].values())
        row["data_only_vs_best_worker"] = round(row["data_only_images_per_s"] / best, 3)
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (exit 0 without CUDA, saying so)."""
    from tao_sdk.worker import NETWORKS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", choices=NETWORKS, default="rtdetr")
    p.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16", "fp16"],
                   choices=["fp32", "bf16", "fp16"])
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--images", type=int, default=256, help="synthetic training images")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is warm-up)")
    p.add_argument("--smoke", action="store_true",
                   help="quick check: batch 16, fp32 + bf16, 32 images of 320 px, 2 epochs")
    p.add_argument("--cpu-check", action="store_true",
                   help="without CUDA: run the whole script on the CPU at a tiny scale "
                        "(fp32 + bf16, the plugin's tiny model, 8 images of 128 px) to check it "
                        "works; the figures mean nothing")
    p.add_argument("--json", type=Path, help="write the results to this file")
    args = p.parse_args(argv)
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda and args.cpu_check:
        os.environ["TAO_WORKER_BACKBONE_SCALE"] = "tiny"
        with tempfile.TemporaryDirectory(prefix="tao-gpu-bench-") as tmp:
            os.environ.setdefault("TAO_WORKER_CACHE", str(Path(tmp) / "cache"))
            rows = run(args.network, [4], ["fp32", "bf16"], 128, 8, 2, Path(tmp), device="cpu",
                       tiny_model=True)
        if args.json:
            args.json.write_text(json.dumps({"cuda": False, "cpu_check": rows}, indent=2))
        return 0
    if not cuda:
        msg = "gpu_throughput: no CUDA device here; run it on a machine with an NVIDIA GPU"
        print(msg)
        if args.json:
            args.json.write_text(json.dumps({"cuda": False, "message": msg}, indent=2))
        return 0
    if args.smoke:
        args.batch, args.precision, args.images, args.size, args.epochs = [16], ["fp32", "bf16"], \
            32, 320, 2
    os.environ["TAO_WORKER_BACKBONE_SCALE"] = "full"
    with tempfile.TemporaryDirectory(prefix="tao-gpu-bench-") as tmp:
        os.environ.setdefault("TAO_WORKER_CACHE", str(Path(tmp) / "cache"))
        rows = run(args.network, args.batch, args.precision, args.size, args.images,
                   args.epochs, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps({"cuda": True, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
