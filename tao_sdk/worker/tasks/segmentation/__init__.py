"""Semantic segmentation task: what every segmentation network of the worker shares.

Data (the layout of the ``tao-train-oneformer`` skill's tables):

- ``dataset.<split>.images``: ``images.tar.gz`` (or a folder) with the RGB images.
- ``dataset.<split>.annotations``: ``annotations.json`` in COCO panoptic format: ``images``
  (``id``, ``file_name``, ``width``, ``height``), ``annotations`` (one per image: ``image_id``,
  ``file_name`` of its panoptic PNG, ``segments_info`` = list of ``{id, category_id, iscrowd,
  area, bbox}``) and ``categories``.
- ``dataset.<split>.panoptic``: ``images_panoptic.tar.gz`` (or a folder) with the panoptic
  PNGs: RGB images whose pixel value ``R + 256*G + 256*256*B`` is a segment ``id`` of
  ``segments_info``; 0 = unlabelled (ignored).
- ``dataset.label_map``: ``label_map.json``, a JSON list of categories ``{"id": int, "name":
  str, "isthing": 0|1, "color": [r, g, b]}`` (the COCO panoptic ``categories`` entries). With
  ``dataset.contiguous_id: true`` class index *i* is the *i*-th entry of the list; with
  ``false`` the class index is the ``id`` itself (ids must then be below
  ``model.sem_seg_head.num_classes``).

A semantic-only dataset is the same format with one segment per class present in an image,
every category ``isthing: 0``. The semantic target of an image is its panoptic PNG with every
segment replaced by its category's class index; unlabelled pixels (id 0) and segments of
categories missing from the label map are set to ``ignore_value`` (255) and count neither in
the loss nor in the metrics. ``label_map_panoptic.json`` (what the skill's inference table
names for ``coco_panoptic`` datasets) has the same layout as ``label_map.json``.

Metrics (:class:`ConfusionMatrix`): per-class IoU, mean IoU over the classes that occur in the
ground truth or the prediction (``mIoU``, TAO's ``summarize_semantic_iou``) and pixel accuracy
(``ACC_all``), in percent (TAO's evaluate reports the same figures as fractions). Inference outputs (:func:`write_prediction`): raw label PNGs (class index per pixel),
colour mask PNGs (label map colours) and overlays of the mask on the image.

:func:`make_segmentation_dataset` writes a synthetic dataset in exactly this layout (shapes with
masks) for the demo and the tests.
"""

from __future__ import annotations

from typing import Any

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import DatasetError, SpecError
from tao_sdk.worker.tasks import Task
from tao_sdk.worker.tasks.segmentation.labels import (Category, IGNORE_VALUE, LabelMap, palette,
                                                      read_label_map)  # noqa: F401
from tao_sdk.worker.tasks.segmentation.data import (SegSample, SegmentationDataset, collate,
                                                    load_panoptic, mask_targets, semantic_target)  # noqa: F401
from tao_sdk.worker.tasks.segmentation.geometry import EvalGeometry, test_size_overrides
from tao_sdk.worker.tasks.segmentation.metrics import ConfusionMatrix  # noqa: F401
from tao_sdk.worker.tasks.segmentation.outputs import write_prediction  # noqa: F401
from tao_sdk.worker.tasks.segmentation.synthetic import (SYNTHETIC_CLASSES,
                                                         make_segmentation_dataset, panoptic_png,
                                                         segment_info)  # noqa: F401

__all__ = [
    "IGNORE_VALUE",
    "Category",
    "LabelMap",
    "SegSample",
    "read_label_map",
    "load_panoptic",
    "semantic_target",
    "SegmentationDataset",
    "collate",
    "mask_targets",
    "ConfusionMatrix",
    "palette",
    "panoptic_png",
    "segment_info",
    "write_prediction",
    "make_segmentation_dataset",
    "SegmentationTask",
    "TASK",
]


# --------------------------------------------------------------------------- the task

def _split_keys(split: str) -> tuple[tuple[str, str], ...]:
    """The staged keys (:meth:`Task.staged_keys`) of one COCO panoptic split ``dataset.<split>``."""
    key = f"dataset.{split}"
    return ((f"{key}.images", "dirs"), (f"{key}.annotations", "file"), (f"{key}.panoptic", "dirs"))


def _stage_split(spec: dict[str, Any], split: str, required: bool):
    """``(annotations.json, image folder, panoptic folder)`` of ``dataset.<split>`` staged
    locally, or ``None`` when the split is not set and not ``required``."""
    from tao_sdk.worker.staging import fetch_file, stage_image_dir

    key = f"dataset.{split}"
    values = {f: S.get(spec, f"{key}.{f}") for f in ("images", "annotations", "panoptic")}
    if not any(values.values()) and not required:
        return None
    missing = [f for f, v in values.items() if v in (None, "", "???")]
    if missing:
        raise SpecError(
            f"{', '.join(f'{key}.{m}' for m in missing)} not set: a segmentation split needs "
            f"{key}.images (images.tar.gz), {key}.annotations (COCO panoptic annotations.json) "
            f"and {key}.panoptic (images_panoptic.tar.gz)")
    return (fetch_file(str(values["annotations"]), f"{key}.annotations"),
            stage_image_dir(str(values["images"]), f"{key}.images"),
            stage_image_dir(str(values["panoptic"]), f"{key}.panoptic"))


def _label_map(spec: dict[str, Any], arch: dict[str, Any]) -> LabelMap:
    """The staged ``dataset.label_map`` for a model of ``arch['num_classes']`` classes."""
    from tao_sdk.worker.staging import fetch_file

    uri = S.require(spec, "dataset.label_map", "the label_map.json of the dataset (a JSON list "
                    "of {id, name, isthing, color})")
    return read_label_map(fetch_file(str(uri), "dataset.label_map"), int(arch["num_classes"]),
                          bool(S.get(spec, "dataset.contiguous_id", True)))


def _samples(spec: dict[str, Any], split: str, lm: LabelMap, required: bool):
    staged = _stage_split(spec, split, required)
    return None if staged is None else load_panoptic(*staged, lm, split)


def _ignore(spec: dict[str, Any]) -> int:
    return int(S.get(spec, "model.sem_seg_head.ignore_value", IGNORE_VALUE))


def _batch(spec: dict[str, Any], key: str, fallback: str) -> int:
    """``spec[key]`` as a batch size (``-1``/unset: ``spec[fallback]``, else 1)."""
    value = S.get(spec, key, -1)
    if value in (None, -1):
        value = S.get(spec, fallback, 1)
    if int(value) < 1:
        raise SpecError(f"{key}={value} must be >= 1 (or -1 for {fallback})")
    return int(value)


def check_size(value: Any, key: str) -> tuple[int, int]:
    """A ``[H, W]`` (or single int) size spec value at ``key``, each side a multiple of 32
    (the backbone stride / size divisibility); :class:`SpecError` naming the key otherwise."""
    hw = [int(value), int(value)] if isinstance(value, (int, float)) else [int(v) for v in value]
    if len(hw) != 2 or min(hw) < 32 or any(v % 32 for v in hw):
        raise SpecError(f"{key}={value!r}: give [height, width], each a multiple of 32 (the "
                        "size divisibility), e.g. [512, 512]")
    return hw[0], hw[1]


def predict(plugin, model, loader, device):
    """Yield ``(batch, predicted class maps at the original sizes)`` for each batch."""
    import torch

    with torch.no_grad():
        for batch in loader:
            logits, masks = plugin.forward(model, batch, device, with_labels=False)
            yield batch, plugin.predict_labels(logits, masks, batch["orig_size"])


def _tao_inference(plugin, model, loader, geometry):
    """Yield ``(batch, class maps at the inference.image_size image)``: TAO's inference
    (:meth:`inference_labels`: padded input, cropped to the test-resized image, resized to
    ``inference.image_size``)."""
    import torch

    from tao_sdk.worker.engine import runtime as R

    crop, padded_hw = geometry.sizes()
    w, h = geometry.image_size
    with torch.no_grad():
        for batch in loader:
            logits, masks = plugin.forward(model, batch, R.device(), with_labels=False)
            yield batch, plugin.inference_labels(logits, masks, padded_hw, crop, (h, w))


class SegmentationTask(Task):
    """Semantic segmentation on COCO panoptic data (see the module docstring).

    A plugin of this task provides ``forward(model, batch, device, with_labels=False) ->
    (pred_logits, pred_masks)``, ``predict_labels(logits, masks, sizes)`` (evaluate) and
    ``inference_labels(logits, masks, padded, crop, size)`` (TAO's inference); its ``arch``
    has ``num_classes``, ``input_size``, ``pixel_mean``, ``pixel_std``.
    """

    name = "segmentation"
    preview_dir = "overlays"
    batch_size_key = "dataset.train.batch_size"
    workers_key = "dataset.train.num_workers"
    val_data_key = "dataset.val"
    #: Per action: the COCO panoptic splits it reads (``dataset.<split>.{images, annotations,
    #: panoptic}``) and the label map; inference reads ``inference.images_dir`` (else
    #: ``dataset.test.images``, which its loader stages when images_dir is unset).
    source_keys = {
        "train": (*_split_keys("train"), *_split_keys("val"), ("dataset.label_map", "file")),
        "evaluate": (*_split_keys("test"), ("dataset.label_map", "file")),
        "inference": (("inference.images_dir", "dirs"), ("dataset.label_map", "file")),
    }
    demo_format = "coco_panoptic"
    synthetic_keys = ("model.sem_seg_head.num_classes", "dataset.contiguous_id")

    # ------------------------------------------------------------------ train

    no_val_note = "no dataset.val.*: mIoU / ACC_all are not computed during training"

    def load_train(self, spec, arch, ctx=None):
        """``(train samples, (val samples, ignore value) or None)`` of a staged spec; the
        label map's names and colours go into ``arch``."""
        lm = _label_map(spec, arch)
        arch["class_names"], arch["colors"] = lm.names, lm.colors.tolist()
        train = _samples(spec, "train", lm, True)
        val = _samples(spec, "val", lm, False)
        if ctx is not None:
            ctx.log.info("train: %d images; val: %s images; %d classes", len(train),
                         len(val) if val else "no", lm.num_classes)
        return train, ((val, _ignore(spec)) if val else None)

    def train_dataset(self, plugin, spec, arch, samples, seed):
        """``(dataset, collate)`` of the training samples (random horizontal flip)."""
        return (SegmentationDataset(samples, arch["input_size"], arch["pixel_mean"],
                                    arch["pixel_std"], train=True, ignore_value=_ignore(spec),
                                    seed=seed), collate)

    def _confusion(self, plugin, model, arch, samples, size, batch_size, ignore,
                   geometry=None):
        """The confusion matrix of ``model`` on ``samples`` (this rank's share), summed on
        rank 0 (``None`` on the other ranks); ``geometry``: see :class:`SegmentationDataset`."""
        from tao_sdk.worker import distributed as D
        from tao_sdk.worker.engine import runtime as R

        dist = D.state()
        mine = samples[dist.rank::dist.world_size] if dist.world_size > 1 else samples
        cm = ConfusionMatrix(arch["num_classes"], ignore)
        model.eval()
        if mine:
            ds = SegmentationDataset(mine, size, arch["pixel_mean"], arch["pixel_std"],
                                     ignore_value=ignore, geometry=geometry)
            loader = R.loader(ds, collate, batch_size, False, 0, 0)
            for batch, preds in predict(plugin, model, loader, R.device()):
                for pred, target in zip(preds, batch["target"]):
                    cm.update(pred, target)
        parts = D.gather_to_main(cm.matrix)
        if parts is None:
            return None
        cm.matrix = sum(parts)
        return cm

    def validate(self, ctx, plugin, model, arch, val, batch_size) -> dict[str, Any]:
        """``mIoU`` and ``ACC_all`` on ``dataset.val`` (TAO's KPI names)."""
        samples, ignore = val
        cm = self._confusion(plugin, model, arch, samples, arch["input_size"], batch_size,
                             ignore)
        model.train()
        if cm is None:
            return {}
        m = cm.metrics()
        return {"mIoU": m["mIoU"], "ACC_all": m["ACC_all"]}

    # ------------------------------------------------------------------ evaluate / inference

    def evaluate(self, ctx, plugin, model, arch, input_size) -> str:
        """mIoU / ACC_all / per-class IoU on ``dataset.test.*``; ``results.json``.

        Without a fixed ``input_size`` (a TensorRT engine's) images and ground truth follow
        TAO's evaluation geometry (:class:`EvalGeometry`: ``dataset.image_size``, then
        ``dataset.augmentation.test_min_size`` / ``test_max_size``, padded to 32) and are
        scored at that size, as TAO's evaluate does.
        """
        import time

        from tao_sdk.worker.engine import runtime as R

        spec = ctx.spec
        lm = _label_map(spec, arch)
        samples = _samples(spec, "test", lm, True)
        ignore = int(arch.get("ignore_value", arch.get("head", {}).get("ignore_value",
                                                                         IGNORE_VALUE)))
        geometry = None if input_size else EvalGeometry.from_spec(spec)
        size = input_size or geometry.sizes()[1]
        batch = min(_batch(spec, "evaluate.batch_size", "dataset.test.batch_size"),
                    getattr(model, "max_batch", 1 << 30))
        t0 = time.monotonic()
        cm = self._confusion(plugin, model, arch, samples, size, batch, ignore, geometry)
        m = cm.metrics(lm.names)
        R.write_json(ctx.task_dir / "results.json", {
            "mIoU": m["mIoU"], "ACC_all": m["ACC_all"], "mACC": m["mACC"],
            "iou_per_class": m["iou_per_class"], "images": len(samples),
            "input_size": list(size), "seconds": time.monotonic() - t0})
        per_class = ({k: v for k, v in m["iou_per_class"].items() if v is not None}
                     if bool(S.get(spec, "evaluate.iou_per_class", True)) else None)
        ctx.status.running("Evaluation metrics generated.",
                           kpi={"mIoU": m["mIoU"], "ACC_all": m["ACC_all"]},
                           categorical={"IoU_per_class": per_class} if per_class else None)
        return (f"Evaluation finished successfully: mIoU={m['mIoU']:.2f}, "
                f"ACC_all={m['ACC_all']:.2f} on {len(samples)} images.")

    def inference(self, ctx, plugin, model, arch, input_size) -> str:
        """Segment ``inference.images_dir`` (else ``dataset.test.images``) as TAO's inference
        does (:meth:`EvalGeometry.for_inference`: each image resized to ``inference.image_size``
        ``[W, H]``, then the test resize and padding; predictions at the
        ``inference.image_size`` image); a TensorRT engine runs at its own size. Writes
        ``labels/`` (raw class PNGs), ``masks/`` (colour PNGs), ``overlays/``."""
        import time

        from tao_sdk.worker.engine import runtime as R
        from tao_sdk.worker.staging import list_images, stage_image_dir

        spec = ctx.spec
        mode = str(S.get(spec, "inference.mode", "semantic"))
        if mode != "semantic":
            raise SpecError(f"inference.mode={mode!r}: this worker runs semantic segmentation; "
                            "set inference.mode: semantic")
        lm = _label_map(spec, arch)
        key = ("inference.images_dir" if S.get(spec, "inference.images_dir") not in (None, "")
               else "dataset.test.images")
        uri = S.require(spec, key, "the images to segment (images.tar.gz or a folder)")
        paths = list_images(stage_image_dir(str(uri), key))
        if not paths:
            raise DatasetError(f"{key}: no images (jpg, png...) in {uri}")
        batch = min(_batch(spec, "inference.batch_size", "dataset.test.batch_size"),
                    getattr(model, "max_batch", 1 << 30))
        samples = [SegSample(p) for p in paths]
        t0 = time.monotonic()
        model.eval()
        if input_size:  # a TensorRT engine: its fixed input size
            ds = SegmentationDataset(samples, input_size, arch["pixel_mean"], arch["pixel_std"])
            results = predict(plugin, model, R.loader(ds, collate, batch, False, 0, 0), R.device())
            where = f"{input_size[0]}x{input_size[1]} (the engine's size)"
        else:
            geometry = EvalGeometry.for_inference(spec)
            ds = SegmentationDataset(samples, (0, 0), arch["pixel_mean"], arch["pixel_std"],
                                     geometry=geometry)
            results = _tao_inference(plugin, model, R.loader(ds, collate, batch, False, 0, 0),
                                     geometry)
            (h, w), (ph, pw) = geometry.sizes()
            where = (f"{h}x{w} (inference.image_size {geometry.image_size[0]}x"
                     f"{geometry.image_size[1]} W x H, then TAO's test resize; padded {ph}x{pw})")
        for b, preds in results:
            for path, pred in zip(b["path"], preds):
                write_prediction(ctx.task_dir, path, pred, lm.colors)
        ctx.upload_now()
        return (f"Inference finished successfully: {len(paths)} images segmented at {where} "
                f"({time.monotonic() - t0:.1f} s); see labels/, masks/ and overlays/.")

    def trt_model(self, runner):
        """A callable ``pixel_values -> (pred_logits, pred_masks)`` over a TensorRT engine."""
        return _trt_segmenter(runner)

    # ------------------------------------------------------------------ demo / tests

    def write_synthetic(self, root, n_train, n_val, size, seed=0):
        """Shapes with masks in COCO panoptic layout (:func:`make_segmentation_dataset`)."""
        return make_segmentation_dataset(root, n_train=n_train, n_val=n_val, size=size,
                                         seed=seed)

    def demo_datasets(self, roots):
        """Train on ``train`` (validate on ``val``); evaluate / infer on ``val``."""
        return {
            "train": {"train_datasets": [roots["train"]], "eval_dataset": roots["val"]},
            "evaluate": {"train_datasets": [roots["train"]], "eval_dataset": roots["val"]},
            "inference": {"train_datasets": [roots["train"]], "eval_dataset": roots["val"]},
            "gen_trt_engine": {},
        }

    def demo_overrides(self, action, size):
        """The synthetic classes; evaluate / export / inference at the demo's image size."""
        out: dict[str, Any] = {"model.sem_seg_head.num_classes": len(SYNTHETIC_CLASSES),
                               "dataset.contiguous_id": True}
        if action == "evaluate":
            out.update(test_size_overrides(size))
        if action == "export":
            out.update({"export.input_height": size, "export.input_width": size})
        if action == "inference":
            out.update({"inference.image_size": [size, size], **test_size_overrides(size)})
        return out

    def tiny_spec(self, plugin, data, results_dir, size, epochs):
        """Train / evaluate / inference / export sections over the synthetic splits."""
        train, val = data["train"], data["val"]

        def split(d):
            return {"images": str(d["images"]), "annotations": str(d["annotations"]),
                    "panoptic": str(d["panoptic"]), "batch_size": 4, "num_workers": 0}

        spec: dict[str, Any] = {
            "results_dir": results_dir, "encryption_key": "tlt_encode",
            "dataset": {"train": split(train), "val": split(val), "test": split(val),
                        "label_map": str(train["label_map"]), "contiguous_id": True,
                        "workers": 1},
            "model": {"sem_seg_head": {"num_classes": len(SYNTHETIC_CLASSES)}},
            "train": {"num_epochs": epochs, "checkpoint_interval": 1, "validation_interval": 1,
                      "optim": {"lr": 2e-3}},
            "inference": {"image_size": [size, size]},
            "export": {"onnx_file": f"{results_dir}/export/model.onnx",
                       "input_height": size, "input_width": size, "opset_version": 17},
            "gen_trt_engine": {"onnx_file": f"{results_dir}/export/model.onnx",
                               "trt_engine": f"{results_dir}/gen_trt_engine/model.engine",
                               "tensorrt": {"data_type": "fp32"}},
            "wandb": {"enable": False},
        }
        for key, value in plugin.tiny_overrides(size).items():
            S.set_value(spec, key, value)
        return spec


def _trt_segmenter(runner):
    """A TensorRT engine with outputs ``pred_logits`` / ``pred_masks`` used like the model:
    ``segmenter(pixel_values) -> (pred_logits, pred_masks)`` (CPU tensors)."""
    from tao_sdk.worker.tasks.detection.outputs import TrtDetector

    class TrtSegmenter(TrtDetector):
        """The detection task's engine adapter with the segmentation outputs."""

        def __call__(self, pixel_values, pixel_mask=None, labels=None):
            out = self.runner.run([pixel_values])
            return out["pred_logits"], out["pred_masks"]

    return TrtSegmenter(runner)


#: The segmentation task instance its plugins share.
TASK = SegmentationTask()
