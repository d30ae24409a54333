#!/usr/bin/env python3
"""Maintainer tool: the same trained checkpoint through TAO's evaluate pipeline and the worker's.

For a checkpoint the worker trained (its train job's ``spec.yaml`` beside it gives the model and
augmentation sections both sides use), on a COCO split laid out as the worker's datasets
(``images.tar.gz``, ``annotations.json``, ``label_map.txt``):

- TAO 7.3.0's own evaluate action, on CPU: its ``ODDataModule`` (``setup("test")``: its dataset
  and eval transforms), its Lightning module's ``load_from_checkpoint`` (strict) and
  ``trainer.test`` (its ``PostProcess``: top-k over queries x classes, label = class index,
  boxes in pixels; its ``CocoEvaluator``); the detections it hands the evaluator are recorded;
- the worker's ``evaluate`` job (``test_mAP`` / ``test_mAP50``) and ``inference`` job
  (``inference.conf_threshold`` 0: every one of the ``model.num_select`` detections per image,
  ``detections.json``) on the same checkpoint and split, through the SDK;

then compares mAP / mAP50 and, per image, TAO's detections with the worker's (each TAO
detection paired with the worker's of the same label and highest IoU): largest box difference
in pixels, largest score difference, the share of ranks whose labels agree. The record is
written to ``tools/manifests/predictions.json`` and its table into ``tools/manifests/README.md``
(its own section, after the manifest table that :func:`tao_manifests.write_index` writes).

OneFormer (``--network oneformer``, semantic segmentation; a worker split folder with
``images.tar.gz``, ``images_panoptic.tar.gz``, ``annotations.json``, ``label_map.json``):
TAO's evaluate script's path (``SemSegmDataModule`` test loader, ``load_from_checkpoint``
strict, ``trainer.test``: ``batch_semantic_inference``, bilinear to the input size, argmax,
``total_intersect_over_union`` / ``summarize_semantic_iou``) at ``dataset.image_size`` =
``test_min_size`` = the train crop, against the worker's evaluate job (mIoU / ACC_all) and
inference job (``labels/`` PNGs): per-pixel label-map agreement (:func:`seg_measure`).

``--network depth_net`` (FastFoundationStereo) needs neither: the skill template's full-size
bp2 model with seeded random weights, saved as the worker saves checkpoints, on synthetic pairs
of a size that is not a multiple of 32; TAO's stereo data module, ``load_from_checkpoint`` and
``trainer.test`` (its ``InputPadder`` and ``StereoDepthEvaluator``) vs the worker's evaluate
KPIs and inference PFM files (:func:`stereo_measure`).

Run in the maintainer venv of :mod:`tools.tao_manifests` (same shims)::

    PYTHONPATH=$PWD /work/wt/taovenv/venv/bin/python tools/tao_predictions.py \\
        --tao-src /work/wt/taovenv/src --network rtdetr \\
        --checkpoint <results>/<job>/train/model_epoch_009.pth --dataset <demo>/val
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tao_manifests as TM  # noqa: E402 - the sibling tool's shims and network table

OUT = TM.OUT / "predictions.json"
#: network -> TAO's data module "module:Class" (evaluate's ``ODDataModule``)
DATA_MODULES = {
    "rtdetr": "nvidia_tao_pytorch.cv.rtdetr.dataloader.pl_od_data_module:ODDataModule",
    "deformable_detr": "nvidia_tao_pytorch.cv.deformable_detr.dataloader.pl_od_data_module:"
                       "ODDataModule",
}
#: network -> extra keyword of TAO's ``load_from_checkpoint`` in its evaluate script
_LOAD_KWARGS = {"rtdetr": {"export": False}}


def _class(path: str):
    module, cls = path.split(":")
    return getattr(importlib.import_module(module), cls)


def train_spec(checkpoint: Path) -> dict:
    """The train job's resolved ``spec.yaml`` (two folders above ``<job>/train/<file>.pth``)."""
    import yaml

    path = checkpoint.resolve().parents[1] / "spec.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def tao_config(network: str, spec: dict, images: Path, json_file: Path, checkpoint: Path):
    """TAO Core's experiment config: the train spec's model / augmentation / class count, the
    split as ``test_data_sources``, evaluate on CPU with ``conf_threshold`` 0."""
    from omegaconf import OmegaConf

    core = importlib.import_module(f"nvidia_tao_core.config.{network}.default_config")
    fields = {
        "model": spec["model"],
        "dataset": {"num_classes": spec["dataset"]["num_classes"],
                    "augmentation": spec["dataset"]["augmentation"],
                    "test_data_sources": {"image_dir": str(images), "json_file": str(json_file)},
                    "batch_size": 4, "workers": 0},
        "evaluate": {"checkpoint": str(checkpoint), "conf_threshold": 0.0},
    }
    return OmegaConf.merge(OmegaConf.structured(core.ExperimentConfig), fields)


def tao_evaluate(network: str, cfg, checkpoint: Path) -> dict:
    """TAO's evaluate action on CPU: ``{"mAP", "mAP50", "images": {image id: [[score, label,
    x0, y0, x1, y1], ...]}}`` (the detections TAO's module hands its COCO evaluator)."""
    from pytorch_lightning import Trainer

    from nvidia_tao_pytorch.cv.deformable_detr.utils import coco_eval

    seen: dict[int, list] = {}
    update = coco_eval.CocoEvaluator.update

    def record(self, predictions):
        for image_id, p in predictions.items():
            seen[int(image_id)] = [[float(s), int(lab), *map(float, b)] for s, lab, b in
                                   zip(p["scores"], p["labels"], p["boxes"])]
        return update(self, predictions)

    coco_eval.CocoEvaluator.update = record
    dm = _class(DATA_MODULES[network])(cfg.dataset, subtask_config=cfg.evaluate)
    dm.setup(stage="test")
    model = _class(TM.NETWORKS[network][1]).load_from_checkpoint(
        str(checkpoint), map_location="cpu", strict=True, experiment_spec=cfg,
        **_LOAD_KWARGS.get(network, {}))
    Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
            default_root_dir=tempfile.mkdtemp()).test(model, datamodule=dm, verbose=False)
    coco_eval.CocoEvaluator.update = update
    stats = model.test_coco_evaluator.coco_eval["bbox"].stats
    return {"mAP": float(stats[0]), "mAP50": float(stats[1]), "images": seen}


def _worker_jobs(network: str, ws, runs, base: dict) -> dict:
    """Run the worker's jobs ``(action, datasets, spec overrides)`` one after the other
    (SDK, local platform; ``base`` overrides each), ``{action: finished job}``; a failed job
    ends the tool with its result."""
    from tao_sdk.jobs import create_job, wait_for_job

    jobs = {}
    for action, data, extra in runs:
        job = create_job(network, action, datasets=data, spec_overrides={**base, **extra},
                         workspace=ws, automl_policy="off")
        jobs[action] = wait_for_job(job.id, poll_interval=1.0, workspace=ws)
        if jobs[action].status.value != "SUCCESS":
            raise SystemExit(f"worker {action} job {job.id}: {jobs[action].result}")
    return jobs

def worker_evaluate(network: str, spec: dict, dataset: Path, checkpoint: Path, ws) -> dict:
    """The worker's evaluate and inference jobs (SDK, local platform): ``{"mAP", "mAP50",
    "images": {file name: [[score, label, x0, y0, x1, y1], ...]}}``."""
    aug = {f"dataset.augmentation.{k}": v for k, v in spec["dataset"]["augmentation"].items()}
    base = {"dataset.num_classes": spec["dataset"]["num_classes"],
            "model.num_select": spec["model"]["num_select"], **aug}  # TAO's side: the spec's
    # inference at evaluate's size: RT-DETR's eval_spatial_size, else (Deformable DETR) none,
    # i.e. its evaluate resize (the inference templates name 640 x 640)
    size = spec["dataset"]["augmentation"].get("eval_spatial_size") or [None, None]
    infer = {"inference.input_height": size[0], "inference.input_width": size[1]}
    jobs = _worker_jobs(network, ws, (
            ("evaluate", {"eval_dataset": str(dataset)}, {"evaluate.checkpoint": str(checkpoint)}),
            ("inference", {"inference_dataset": str(dataset)},
             {"inference.checkpoint": str(checkpoint), "inference.conf_threshold": 0.0, **infer})),
        base)
    kpis = jobs["evaluate"].kpis
    found = next(p for p in jobs["inference"].artifacts() if p.endswith("detections.json"))
    images = {}
    for rec in json.loads(Path(found).read_text(encoding="utf-8"))["images"]:
        images[rec["file_name"]] = [[d["score"], d["category_id"], d["bbox"][0], d["bbox"][1],
                                     d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]]
                                    for d in rec["detections"]]
    return {"mAP": float(kpis["test_mAP"]), "mAP50": float(kpis["test_mAP50"]),
            "images": images}


#: network -> (TAO's transforms module, augmentation of the preprocessing check)
_PREPROCESS = {
    "rtdetr": ("nvidia_tao_pytorch.cv.rtdetr.dataloader.transforms",
               {"eval_spatial_size": [96, 128]}),
    "deformable_detr": ("nvidia_tao_pytorch.cv.deformable_detr.dataloader.transforms",
                        {"test_random_resize": 96, "random_resize_max_size": 160}),
}


def preprocess_check(network: str) -> dict:
    """TAO's eval transforms and the worker's collator on one random 200x150 (landscape) and
    150x200 (portrait) image (the demo's square images make resize and padding no-ops):
    input shapes and the largest pixel difference."""
    import numpy as np
    import torch
    from omegaconf import OmegaConf
    from PIL import Image

    from tao_sdk.worker.registry import get
    from tao_sdk.worker.tasks.detection.data import Collator

    module, aug = _PREPROCESS[network]
    core = importlib.import_module(f"nvidia_tao_core.config.{network}.default_config")
    cfg = OmegaConf.merge(OmegaConf.structured(core.ExperimentConfig),
                          {"dataset": {"augmentation": aug}})
    transforms = importlib.import_module(module).build_transforms(
        cfg.dataset.augmentation, subtask_config=cfg.evaluate, dataset_mode="eval")
    plugin, spec = get(network), {"dataset": {"augmentation": dict(aug)}}
    out = {}
    for w, h in ((200, 150), (150, 200)):
        img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8))
        target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                  "size": torch.tensor([h, w]), "orig_size": torch.tensor([h, w]),
                  "area": torch.zeros(0), "iscrowd": torch.zeros(0)}
        tao = transforms(img, target)
        tao = tao[0] if isinstance(tao, tuple) else tao
        ours = Collator(plugin.resize_policy(spec), *plugin.mean_std(spec),
                        train=False)([(img, {}, {})])["pixel_values"][0]
        same = tuple(tao.shape) == tuple(ours.shape)
        out[f"{w}x{h}"] = {"tao": list(tao.shape), "worker": list(ours.shape),
                           "max_abs": float((tao - ours).abs().max()) if same else None}
    return {"augmentation": aug, **out}


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare_images(tao: dict, ours: dict, min_score: float) -> dict:
    """Per image, TAO's detections with score >= ``min_score`` each paired with the unpaired
    worker detection of the same label and highest IoU: largest box / score difference, the
    share paired, the share of ranks (both sorted by score) whose labels agree."""
    box = score = 0.0
    paired = total = same_rank = ranks = 0
    for name, t_dets in tao.items():
        o_dets = sorted(ours[name], key=lambda d: -d[0])
        t_dets = sorted(t_dets, key=lambda d: -d[0])
        ranks += min(len(t_dets), len(o_dets))
        same_rank += sum(t[1] == o[1] for t, o in zip(t_dets, o_dets))
        free = list(o_dets)
        for t in (d for d in t_dets if d[0] >= min_score):
            total += 1
            cands = [o for o in free if o[1] == t[1]]
            if not cands:
                continue
            best = max(cands, key=lambda o: _iou(t[2:], o[2:]))
            free.remove(best)
            paired += 1
            box = max(box, max(abs(a - b) for a, b in zip(t[2:], best[2:])))
            score = max(score, abs(t[0] - best[0]))
    return {"min_score": min_score, "detections": total, "paired": paired,
            "box_max_abs_px": round(box, 4), "score_max_abs": round(score, 6),
            "rank_label_agreement": round(same_rank / max(1, ranks), 4)}


def _worker_side(python: str, network: str, dataset: Path, checkpoint: Path, tmp: Path) -> dict:
    """:func:`worker_evaluate` run by ``python`` (the worker's venv: TAO's packages beside
    transformers break its RT-DETR import), through this file's ``--worker-only``."""
    import subprocess

    out = tmp / "worker.json"
    subprocess.run([python, __file__, "--network", network, "--checkpoint", str(checkpoint),
                    "--dataset", str(dataset), "--worker-only", str(out)], check=True)
    return json.loads(out.read_text(encoding="utf-8"))


def measure(network: str, checkpoint: Path, dataset: Path, worker_python: str) -> dict:
    """Both sides on ``dataset`` (a split folder), compared (see the module docstring)."""
    spec = train_spec(checkpoint)
    tmp = Path(tempfile.mkdtemp(prefix="tao_predictions_"))
    images = tmp / "images"
    with tarfile.open(dataset / "images.tar.gz") as tar:
        tar.extractall(images, filter="data")
    json_file = dataset / "annotations.json"
    cfg = tao_config(network, spec, images, json_file, checkpoint)
    cwd = os.getcwd()
    os.chdir(tmp)  # TAO's status logger writes status.json into the working directory
    try:
        tao = tao_evaluate(network, cfg, checkpoint)
    finally:
        os.chdir(cwd)
    ours = _worker_side(worker_python, network, dataset, checkpoint, tmp)
    names = {im["id"]: im["file_name"]
             for im in json.loads(json_file.read_text(encoding="utf-8"))["images"]}
    tao_by_name = {names[i]: dets for i, dets in tao["images"].items()}
    (tmp / "tao.json").write_text(json.dumps(tao_by_name), encoding="utf-8")
    print(f"raw detections: {tmp}/tao.json, {tmp}/worker.json", file=sys.stderr)
    return {"network": network, "backbone": spec["model"]["backbone"],
            "checkpoint": checkpoint.name, "images": len(tao_by_name),
            "input": spec["dataset"]["augmentation"].get("eval_spatial_size")
            or spec["dataset"]["augmentation"].get("test_random_resize"),
            "num_select": spec["model"]["num_select"],
            "tao": {"mAP": round(tao["mAP"], 6), "mAP50": round(tao["mAP50"], 6)},
            "worker": {"mAP": round(ours["mAP"], 6), "mAP50": round(ours["mAP50"], 6)},
            "per_image": [compare_images(tao_by_name, ours["images"], s) for s in (0.0, 0.3)]}


# --------------------------------------------------------------------------- OneFormer
# (semantic segmentation: label maps instead of detections; its own measure / table)

#: the evaluate resolution both sides get: TAO's ``dataset.image_size`` / ``test_min_size``
#: / ``test_max_size`` at the train crop, so TAO's resize + pad are no-ops on the square
#: demo images and both sides see the pixels the checkpoint was trained at
SEG_DATA_MODULE = "nvidia_tao_pytorch.cv.oneformer.dataloader.pl_data_module:SemSegmDataModule"


def _seg_split(dataset: Path, tmp: Path) -> dict:
    """TAO's ``dataset.test`` section of a worker split folder (tarballs unpacked)."""
    out = {"annotations": str(dataset / "annotations.json"), "batch_size": 2,
           "num_workers": 0}
    for key, tarball in (("images", "images.tar.gz"), ("panoptic", "images_panoptic.tar.gz")):
        with tarfile.open(dataset / tarball) as tar:
            tar.extractall(tmp / key, filter="data")
        out[key] = str(tmp / key)
    return out


def seg_test_sizes(spec: dict) -> dict:
    """The evaluate resolution both sides get (see :data:`SEG_DATA_MODULE`), as dotted spec
    keys: ``dataset.image_size`` = ``test_min_size`` = the train crop, ``test_max_size`` twice
    that (the worker's evaluate follows TAO's test geometry from these fields)."""
    crop = int(spec["dataset"]["augmentation"]["train_crop_size"][0])
    return {"dataset.image_size": crop, "dataset.augmentation.test_min_size": crop,
            "dataset.augmentation.test_max_size": 2 * crop}


def seg_tao_config(spec: dict, dataset: Path, checkpoint: Path, tmp: Path):
    """TAO's OneFormer experiment config (its evaluate script's schema): the train spec's
    model and dataset settings, the split as ``dataset.test``, evaluate task semantic, the
    evaluate resolution at the train crop (see :data:`SEG_DATA_MODULE`)."""
    from omegaconf import OmegaConf

    core = importlib.import_module("nvidia_tao_pytorch.config.oneformer.default_config")
    data = {k: v for k, v in spec["dataset"].items() if k not in ("train", "val", "test")}
    sizes = seg_test_sizes(spec)
    data["augmentation"] = {**data["augmentation"],
                            "test_min_size": sizes["dataset.augmentation.test_min_size"],
                            "test_max_size": sizes["dataset.augmentation.test_max_size"]}
    data.update({"image_size": sizes["dataset.image_size"],
                 "label_map": str(dataset / "label_map.json"),
                 "test": _seg_split(dataset, tmp)})
    fields = {"model": spec["model"], "dataset": data,
              "evaluate": {"checkpoint": str(checkpoint), "task": "semantic"}}
    return OmegaConf.merge(OmegaConf.structured(core.ExperimentConfig), fields)


def _panopticapi() -> None:
    """``panopticapi.utils.rgb2id`` (COCO's panoptic id of an RGB PNG: R + 256 G + 65536 B),
    the one name TAO's OneFormer data loader imports from cocodataset/panopticapi (a GitHub
    package, not on PyPI), when it is not installed."""
    import types

    import numpy as np

    try:
        import panopticapi.utils  # noqa: F401
        return
    except ImportError:
        pass

    def rgb2id(color):
        if isinstance(color, np.ndarray) and color.ndim == 3:
            color = color.astype(np.int32)
            return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]
        return int(color[0] + 256 * color[1] + 256 * 256 * color[2])

    pkg, utils = types.ModuleType("panopticapi"), types.ModuleType("panopticapi.utils")
    utils.rgb2id, pkg.utils = rgb2id, utils
    sys.modules.update({"panopticapi": pkg, "panopticapi.utils": utils})


def seg_tao_evaluate(cfg, checkpoint: Path) -> dict:
    """TAO's evaluate on CPU (its data module, ``load_from_checkpoint``, ``trainer.test``):
    ``{"mIoU", "ACC_all", "images": {file name: label map}}`` (the maps TAO's module hands
    its IoU statistics; mIoU / ACC_all in percent, TAO reports fractions)."""
    from pytorch_lightning import Trainer

    _panopticapi()
    import nvidia_tao_pytorch.cv.oneformer.model.pl_oneformer as PL

    maps: list = []
    names: list = []
    stats = PL.total_intersect_over_union

    def record(pred, *args, **kwargs):
        maps.extend(p.copy() for p in pred)
        return stats(pred, *args, **kwargs)

    PL.total_intersect_over_union = record
    dm = _class(SEG_DATA_MODULE)(cfg)
    dm.setup("fit")
    model = PL.OneformerPlModule.load_from_checkpoint(str(checkpoint), map_location="cpu",
                                                      strict=True, cfg=cfg)
    step = model._eval_step

    def named(batch):
        names.extend(batch["file_names"])
        return step(batch)

    model._eval_step = named
    got = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                  default_root_dir=tempfile.mkdtemp()).test(model, datamodule=dm,
                                                            verbose=False)[0]
    PL.total_intersect_over_union = stats
    return {"mIoU": 100 * float(got["test_mIoU"]), "ACC_all": 100 * float(got["test_all_acc"]),
            "images": dict(zip(names, maps))}


def seg_worker_evaluate(network: str, spec: dict, dataset: Path, checkpoint: Path, ws) -> dict:
    """The worker's evaluate and inference jobs (SDK, local platform): ``{"mIoU",
    "ACC_all", "images": {file name: label map as a nested list}}`` (inference's
    ``labels/`` PNGs, at the train crop as evaluate runs)."""
    import numpy as np
    from PIL import Image

    crop = spec["dataset"]["augmentation"]["train_crop_size"]
    base = {"model.sem_seg_head.num_classes": spec["model"]["sem_seg_head"]["num_classes"],
            "dataset.contiguous_id": spec["dataset"]["contiguous_id"], **seg_test_sizes(spec)}
    data = {"train_datasets": [str(dataset)], "eval_dataset": str(dataset)}  # the skill's
    # evaluate / inference templates name dataset.train too (TAO's config has one)
    jobs = _worker_jobs(network, ws, (
        ("evaluate", data, {"evaluate.checkpoint": str(checkpoint)}),
        ("inference", data, {"inference.checkpoint": str(checkpoint),
                             "inference.image_size": crop})), base)
    kpis = jobs["evaluate"].kpis
    labels = [Path(p) for p in jobs["inference"].artifacts() if "/labels/" in p]
    names = {Path(im["file_name"]).stem: im["file_name"] for im in json.loads(
        (dataset / "annotations.json").read_text(encoding="utf-8"))["images"]}
    return {"mIoU": float(kpis["mIoU"]), "ACC_all": float(kpis["ACC_all"]),
            "images": {names[p.stem]: np.asarray(Image.open(p)).tolist() for p in labels}}


def compare_label_maps(tao: dict, ours: dict) -> dict:
    """Per image TAO's label map against the worker's (same file name): images compared,
    the share of equal pixels over all of them and the lowest share of one image, in %."""
    import numpy as np

    same = total = 0
    low = 100.0
    for name, t in tao.items():
        o = np.asarray(ours[name])
        t = np.asarray(t)[:o.shape[0], :o.shape[1]]  # TAO's map: the padded input's size
        eq = int((t == o).sum())
        same, total = same + eq, total + o.size
        low = min(low, 100.0 * eq / o.size)
    return {"images": len(tao), "pixels_agree_pct": round(100.0 * same / max(1, total), 4),
            "lowest_image_pct": round(low, 4)}


def seg_measure(network: str, checkpoint: Path, dataset: Path, worker_python: str) -> dict:
    """Both sides on ``dataset`` (a worker segmentation split folder), compared."""
    spec = train_spec(checkpoint)
    tmp = Path(tempfile.mkdtemp(prefix="tao_predictions_"))
    cfg = seg_tao_config(spec, dataset, checkpoint, tmp)
    cwd = os.getcwd()
    os.chdir(tmp)  # TAO's status logger writes status.json into the working directory
    try:
        tao = seg_tao_evaluate(cfg, checkpoint)
    finally:
        os.chdir(cwd)
    ours = _worker_side(worker_python, network, dataset, checkpoint, tmp)
    return {"network": network, "backbone": _swin_name(spec), "checkpoint": checkpoint.name,
            "images": len(tao["images"]),
            "input": spec["dataset"]["augmentation"]["train_crop_size"],
            "tao": {k: round(tao[k], 4) for k in ("mIoU", "ACC_all")},
            "worker": {k: round(ours[k], 4) for k in ("mIoU", "ACC_all")},
            "label_maps": compare_label_maps(tao["images"], ours["images"])}


def _swin_name(spec: dict) -> str:
    swin = spec["model"]["backbone"]["swin"]
    return f"swin_d{swin['embed_dim']}_{'-'.join(map(str, swin['depths']))}"


#: network -> (measure, worker-side evaluate) of the segmentation networks
SEGMENTATION = {"oneformer": (seg_measure, seg_worker_evaluate)}


def _preprocess_cell(record: dict) -> str:
    pre = record.get("preprocess") or {}
    cells = [pre.get(k, {}).get("max_abs") for k in ("200x150", "150x200")]
    return " / ".join("-" if v is None else f"{v:.1e}" for v in cells)


def _segmentation_rows(records: dict) -> list[str]:
    """The segmentation table of :func:`write_readme` (records with ``label_maps``)."""
    seg = [r for r in records.values() if "label_maps" in r]
    if not seg:
        return []
    rows = ["", "Segmentation (OneFormer, `evaluate.task: semantic`): TAO's data module "
            "(`COCOUnifiedDataset` test transforms), `load_from_checkpoint` (strict) and "
            "`trainer.test` (softmax over classes without the no-object class x sigmoid masks, "
            "bilinear to the input size, argmax; `total_intersect_over_union` + "
            "`summarize_semantic_iou`, reported as fractions, here in %) against the worker's "
            "evaluate job and its inference job's `labels/` PNGs; evaluate resolution: "
            "`dataset.image_size` = `test_min_size` = the train crop on both sides. Pixels "
            "agree: TAO's label maps against the worker's, over all pixels.", "",
            "| network | backbone | checkpoint | images | input | mIoU TAO | mIoU worker "
            "| ACC_all TAO | ACC_all worker | pixels agree % (all / lowest image) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in seg:
        lm = r["label_maps"]
        rows.append(f"| {r['network']} | {r['backbone']} | {r['checkpoint']} | {r['images']} | "
                    f"{r['input']} | {r['tao']['mIoU']:.4f} | {r['worker']['mIoU']:.4f} | "
                    f"{r['tao']['ACC_all']:.4f} | {r['worker']['ACC_all']:.4f} | "
                    f"{lm['pixels_agree_pct']:.3f} / {lm['lowest_image_pct']:.3f} |")
    return rows


def write_readme(records: dict) -> None:
    """Replace (or append) this tool's section of ``tools/manifests/README.md``."""
    head = "## Predictions: TAO's evaluate vs the worker's (trained checkpoint)"
    rows = [head, "",
            "Recorded by `tools/tao_predictions.py`: a checkpoint the worker trained on the demo "
            "data, TAO 7.3.0's own evaluate pipeline (its data module, `load_from_checkpoint`, "
            "`trainer.test`: PostProcess + CocoEvaluator, CPU) and the worker's evaluate / "
            "inference jobs on the same demo val split. Per image: TAO's detections (all "
            "`num_select`, or score >= 0.3) paired with the worker's of the same label; box "
            "difference in pixels (the worker's detections.json rounds boxes to 0.01 px and "
            "scores to 1e-4). Preprocess: TAO's eval transforms and the worker's collator on one "
            "random non-square image each way (the demo's square 128 px images make resize and "
            "padding no-ops), largest pixel difference.", "",
            "| network | backbone | images | input | mAP TAO | mAP worker | mAP50 TAO "
            "| mAP50 worker | box max px (all / >=0.3) | score max (all / >=0.3) "
            "| rank labels agree | preprocess max abs (200x150 / 150x200) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in records.values() if "per_image" in r and r.get("network") not in _MEASURES):
        a, b = r["per_image"]
        rows.append(f"| {r['network']} | {r['backbone']} | {r['images']} | {r['input']} | "
                    f"{r['tao']['mAP']:.4f} | {r['worker']['mAP']:.4f} | "
                    f"{r['tao']['mAP50']:.4f} | {r['worker']['mAP50']:.4f} | "
                    f"{a['box_max_abs_px']:.3f} / {b['box_max_abs_px']:.3f} | "
                    f"{a['score_max_abs']:.1e} / {b['score_max_abs']:.1e} | "
                    f"{a['rank_label_agreement']:.3f} | {_preprocess_cell(r)} |")
    rows += _segmentation_rows(records)
    path = TM.OUT / "README.md"
    text = path.read_text(encoding="utf-8")
    text = text.split("\n" + head)[0].rstrip("\n") + "\n\n"
    rows += write_stereo_readme(records)
    path.write_text(text + "\n".join(rows) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- FastFoundationStereo

#: the stereo pairs of ``--network depth_net`` (synthetic, :func:`make_stereo_dataset`): count,
#: height, width (not multiples of 32: TAO's padding and its undoing take part), seed
_STEREO_PAIRS = (4, 60, 120, 7)
_STEREO_SKILL = "tao-train-fast-foundation-stereo"


def stereo_checkpoint(tmp: Path) -> Path:
    """The skill template's full-size bp2 model built by the worker (seed 1), its weights
    perturbed by N(0, 0.02) and random BatchNorm statistics (as :func:`tao_manifests.parity`),
    saved as the worker saves checkpoints (TAO's layout + ``arch``)."""
    import torch

    from tao_sdk.worker.engine.checkpoint import CHECKPOINT_FORMAT, _lightning_keys
    from tao_sdk.worker.registry import get as plugin_for
    from tao_sdk.worker.weights import tao_state

    plugin = plugin_for("depth_net")
    torch.manual_seed(1)
    arch = plugin.build_arch(TM.template_spec(_STEREO_SKILL, "template"))
    model = plugin.build_model(arch).eval()
    TM.perturb(model)
    layout, state = tao_state(plugin, model.state_dict())
    path = tmp / "model_epoch_000.pth"
    torch.save({**_lightning_keys(plugin, 0, 0, layout, state), "format": CHECKPOINT_FORMAT,
                "arch": arch, "optimizer_states": [], "lr_schedulers": []}, path)
    return path


def stereo_pairs(tmp: Path) -> tuple[Path, Path]:
    """``(the worker's dataset folder, TAO's GenericDataset list)``: the synthetic pairs of
    :data:`_STEREO_PAIRS`, and the same files extracted with absolute paths for TAO."""
    from tao_sdk.worker.tasks.stereo import make_stereo_dataset

    n, h, w, seed = _STEREO_PAIRS
    root = make_stereo_dataset(tmp / "pairs", n, h, w, max_disparity=w / 5, seed=seed)
    files = tmp / "pairs_files"
    with tarfile.open(root / "images.tar.gz") as tar:
        tar.extractall(files, filter="data")
    lines = [" ".join(str(files / p) for p in line.split())
             for line in (root / "annotations.txt").read_text(encoding="utf-8").split("\n") if line]
    listing = tmp / "tao_annotations.txt"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root, listing


def stereo_tao_config(spec: dict, listing: Path, checkpoint: Path, results: Path):
    """TAO Core's depth_net experiment config: the template's model / dataset, the pairs as
    ``test_dataset`` (``GenericDataset``, batch 1: TAO's evaluator sums per-image EPE into a
    one-element state), evaluate on CPU."""
    from omegaconf import OmegaConf

    core = importlib.import_module("nvidia_tao_core.config.depth_net.default_config")
    test = {"data_sources": [{"data_file": str(listing), "dataset_name": "GenericDataset"}],
            "batch_size": 1, "workers": 0, "pin_memory": False}
    fields = {"results_dir": str(results), "model": spec["model"],
              "dataset": {"dataset_name": spec["dataset"]["dataset_name"],
                          "max_disparity": spec["dataset"]["max_disparity"],
                          "test_dataset": test},
              "evaluate": {"checkpoint": str(checkpoint)}}
    return OmegaConf.merge(OmegaConf.structured(core.ExperimentConfig), fields)


def stereo_tao_evaluate(cfg, checkpoint: Path) -> dict:
    """TAO's evaluate action on CPU (its stereo data module, ``load_from_checkpoint`` strict,
    ``trainer.test``; ``Tensor.cuda`` is the identity meanwhile: TAO's ``test_step`` moves the
    disparity to the GPU): ``{"metrics": its StereoDepthEvaluator's, "images": [disparity
    [H, W] handed to the evaluator, per pair in order]}``."""
    import torch
    from pytorch_lightning import Trainer

    from nvidia_tao_pytorch.cv.depth_net.evaluation import stereo_evaluator as SE

    seen: list = []
    update, cuda = SE.StereoDepthEvaluator.update, torch.Tensor.cuda

    def record(self, preds=None, target=None):
        seen.extend(p.detach().reshape(p.shape[-2:]).clone() for p in preds)
        return update(self, preds, target)

    SE.StereoDepthEvaluator.update, torch.Tensor.cuda = record, lambda self, *a, **k: self
    try:
        dm = _class("nvidia_tao_pytorch.cv.depth_net.dataloader.pl_stereo_data_module:"
                    "StereoDepthNetDataModule")(cfg.dataset)
        dm.setup(stage="test")
        model = _class(TM.NETWORKS["depth_net"][1]).load_from_checkpoint(
            str(checkpoint), map_location="cpu", strict=True, experiment_spec=cfg)
        Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                default_root_dir=tempfile.mkdtemp()).test(model, datamodule=dm, verbose=False)
        metrics = model.test_evaluator.compute()
    finally:
        SE.StereoDepthEvaluator.update, torch.Tensor.cuda = update, cuda
    return {"metrics": metrics, "images": seen}


def stereo_worker_evaluate(dataset: Path, checkpoint: Path, ws) -> dict:
    """The worker's evaluate and inference jobs (SDK, local platform) on the pairs:
    ``{"metrics": evaluate's KPIs, "images": {name: disparity as nested lists}}`` (inference's
    ``disparity_pfm/<name>.pfm``)."""
    from tao_sdk.jobs import create_job, wait_for_job
    from tao_sdk.worker.tasks.stereo import read_pfm

    jobs = {}
    for action, data, extra in (
            ("evaluate", {"eval_dataset": str(dataset)}, {"evaluate.checkpoint": str(checkpoint)}),
            ("inference", {"inference_dataset": str(dataset)},
             {"inference.checkpoint": str(checkpoint)})):
        job = create_job("depth_net", action, datasets=data, spec_overrides=extra,
                         dataset_format="GenericDataset",
                         workspace=ws, automl_policy="off")
        jobs[action] = wait_for_job(job.id, poll_interval=1.0, workspace=ws)
        if jobs[action].status.value != "SUCCESS":
            raise SystemExit(f"worker {action} job {job.id}: {jobs[action].result}")
    images = {Path(p).stem: read_pfm(Path(p)).tolist()
              for p in sorted(jobs["inference"].artifacts()) if p.endswith(".pfm")}
    return {"metrics": {k: float(v) for k, v in jobs["evaluate"].kpis.items()
                        if isinstance(v, (int, float))}, "images": images}


#: the metrics both sides report, as the table shows them
_STEREO_METRICS = ("epe", "d1", "bp1", "bp2", "bp3", "rmse")


def stereo_measure(network: str, checkpoint: Path | None, dataset: Path | None,
                   worker_python: str) -> dict:
    """FastFoundationStereo: the template's full-size bp2 model with seeded random weights
    (or ``checkpoint``, a worker checkpoint of the template's model), TAO's evaluate pipeline
    vs the worker's evaluate / inference jobs on the synthetic pairs of :data:`_STEREO_PAIRS`
    (``dataset`` is not used)."""
    import numpy as np

    tmp = Path(tempfile.mkdtemp(prefix="tao_predictions_ffs_"))
    checkpoint = checkpoint or stereo_checkpoint(tmp)
    root, listing = stereo_pairs(tmp)
    spec = TM.template_spec(_STEREO_SKILL, "template")
    cwd = os.getcwd()
    os.chdir(tmp)  # TAO's status logger writes status.json into the working directory
    try:
        tao = stereo_tao_evaluate(stereo_tao_config(spec, listing, checkpoint, tmp), checkpoint)
    finally:
        os.chdir(cwd)
    ours = _worker_side(worker_python, network, root, checkpoint, tmp)
    diffs = [float(np.abs(np.asarray(ours["images"][name]) - t.numpy()).max())
             for name, t in zip(sorted(ours["images"]), tao["images"])]
    scale = max(float(t.abs().max()) for t in tao["images"])
    n, h, w, _seed = _STEREO_PAIRS
    return {"network": network, "backbone": "bp2", "checkpoint": checkpoint.name,
            "images": n, "input": [h, w], "valid_iters": spec["model"]["valid_iters"],
            "tao": {k: round(float(tao["metrics"][k]), 6) for k in _STEREO_METRICS},
            "worker": {k: round(ours["metrics"][k], 6) for k in _STEREO_METRICS
                       if k in ours["metrics"]},
            "disparity_max_abs_px": round(max(diffs), 6), "disparity_max_px": round(scale, 4),
            "per_image_max_abs_px": [round(d, 6) for d in diffs]}


def write_stereo_readme(records: dict) -> list[str]:
    """The stereo table's lines (records of :data:`_MEASURES`' networks)."""
    rows = ["", "### Stereo (FastFoundationStereo)", "",
            "A full-size bp2 checkpoint (the template's model, seeded random weights) through "
            "TAO 7.3.0's evaluate pipeline (its stereo data module, `load_from_checkpoint` "
            "strict, `trainer.test`: InputPadder + StereoDepthEvaluator, CPU, batch 1) and the "
            "worker's evaluate / inference jobs on synthetic pairs whose size is not a multiple "
            "of 32. Metrics as each side reports them; disparity: largest per-pixel "
            "difference of the predictions (TAO's, handed to its evaluator; the worker's "
            "inference PFM files) over all pairs. TAO's `rmse` is the square root of its "
            "mean per-batch RMSE (its `compute` takes the root a second time: units px^0.5); "
            "the worker reports the RMSE over the valid pixels.", "",
            "| network | setting | pairs | input | valid_iters | "
            + " | ".join(f"{k} TAO | {k} worker" for k in _STEREO_METRICS)
            + " | disparity max abs px (of max px) |",
            "|" + "---|" * (6 + 2 * len(_STEREO_METRICS))]
    for r in records.values():
        if r.get("network") not in _MEASURES:
            continue
        cells = " | ".join(f"{r['tao'][k]:.4f} | {r['worker'].get(k, float('nan')):.4f}"
                           for k in _STEREO_METRICS)
        rows.append(f"| {r['network']} | {r['backbone']} | {r['images']} | "
                    f"{r['input'][0]}x{r['input'][1]} | {r['valid_iters']} | {cells} | "
                    f"{r['disparity_max_abs_px']:.2e} (of {r['disparity_max_px']:.2f}) |")
    return rows


#: network -> its own measurement (instead of :func:`measure`) and worker side
_MEASURES = {"depth_net": stereo_measure}
_WORKER_SIDES = {"depth_net": lambda args, ws: stereo_worker_evaluate(
    args.dataset, args.checkpoint, ws)}


def main(argv: list[str] | None = None) -> int:
    """CLI (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tao-src", type=Path, help="the unzipped nvidia_tao_pytorch / _core")
    ap.add_argument("--worker-python", default="/work/main/.venv/bin/python",
                    help="the worker venv's python (runs the worker's jobs)")
    ap.add_argument("--worker-only", type=Path,
                    help="internal: run only the worker's jobs, write their figures here")
    ap.add_argument("--network", choices=sorted({*DATA_MODULES, *SEGMENTATION, *_MEASURES}),
                    required=True)
    ap.add_argument("--checkpoint", type=Path,
                    help="a worker train job's model_epoch_XXX.pth")
    ap.add_argument("--dataset", type=Path,
                    help="a split folder: images.tar.gz, annotations.json, label_map.txt")
    ap.add_argument("--preprocess", action="store_true",
                    help="only the preprocessing check, added to the network's records")
    args = ap.parse_args(argv)
    if args.worker_only:
        from tao_sdk.workspace import Workspace

        ws = Workspace(args.worker_only.parent / "ws")
        if args.network in SEGMENTATION:
            got = SEGMENTATION[args.network][1](args.network, train_spec(args.checkpoint),
                                                args.dataset, args.checkpoint, ws)
        elif args.network in _WORKER_SIDES:
            got = _WORKER_SIDES[args.network](args, ws)
        else:
            got = worker_evaluate(args.network, train_spec(args.checkpoint), args.dataset,
                                  args.checkpoint, ws)
        args.worker_only.write_text(json.dumps(got), encoding="utf-8")
        return 0
    if args.tao_src is None:
        ap.error("--tao-src is required")
    TM.install_shims(args.tao_src)
    records = json.loads(OUT.read_text(encoding="utf-8")) if OUT.exists() else {}
    if args.preprocess:
        rec = {"network": args.network, "preprocess": preprocess_check(args.network)}
        for key in [k for k in records if k.startswith(args.network + "/")]:
            records[key]["preprocess"] = rec["preprocess"]
    else:
        run = (SEGMENTATION[args.network][0] if args.network in SEGMENTATION
               else _MEASURES.get(args.network, measure))
        rec = run(args.network, args.checkpoint, args.dataset, args.worker_python)
        old = records.get(f"{rec['network']}/{rec['backbone']}", {})
        rec.setdefault("preprocess", old.get("preprocess"))
        records[f"{rec['network']}/{rec['backbone']}"] = rec
    OUT.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    write_readme(records)
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
