"""The object-detection task: COCO data, box metrics (COCO mAP), detection outputs.

Shared by the DETR-family plugins. What a detection plugin adds (besides the
:class:`~tao_sdk.worker.plugin.NetworkPlugin` hooks): ``resize_policy(spec, eval_override)``
(a :class:`~tao_sdk.worker.tasks.detection.data.ResizePolicy`), ``flip_prob(spec)``,
``distortion_prob(spec)``; its ``arch`` carries ``mean``, ``std`` (input normalisation) and
``num_select`` (detections kept per image); its ``forward`` returns an object with ``logits``
(``[B, Q, C]``), ``pred_boxes`` (``[B, Q, 4]`` normalised cx, cy, w, h) and ``loss``.

Data: ``{image_dir: images.tar.gz or folder, json_file: annotations.json}`` sources
(``dataset.train_data_sources`` (list), ``val_data_sources`` and ``test_data_sources`` (one
or a list)); inference reads ``dataset.infer_data_sources.image_dir`` (list) and ``classmap``.
KPIs: ``val_mAP`` / ``val_mAP50`` / ``val_loss`` (train), ``test_mAP`` / ``test_mAP50``
(evaluate). Inference writes ``detections.json``, KITTI ``labels/`` and
``images_annotated/``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tao_sdk.worker import distributed as D
from tao_sdk.worker import spec as S
from tao_sdk.worker.engine import runtime as R
from tao_sdk.worker.errors import DatasetError, SpecError
from tao_sdk.worker.staging import list_images
from tao_sdk.worker.tasks.detection.coco import CocoData, load_coco, read_label_map
from tao_sdk.worker.tasks import Task

__all__ = ["DetectionTask", "TASK"]



def _sources(value: Any, key: str) -> list[dict]:
    """Normalise a data-sources value (one mapping or a list of them) to a list."""
    if value is None or value == "" or value == []:
        return []
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict) or not item.get("image_dir") or not item.get("json_file"):
            raise SpecError(
                f"{key} entries need image_dir and json_file (dataset images.tar.gz and "
                f"annotations.json URIs); got {item!r}"
            )
    return items


def load_sources(spec: dict, key: str, num_classes: int, ctx=None) -> list[CocoData]:
    """Load / validate each (staged) ``{image_dir, json_file}`` source of ``spec[key]``; with
    a job context, every dropped / clipped box is reported (log and ``status.json``)."""
    from tao_sdk.worker.staging import fetch_file, stage_image_dir

    sources = _sources(S.get(spec, key), key)
    remap = bool(S.get(spec, "dataset.remap_mscoco_category", False))
    out = []
    for i, src in enumerate(sources):
        what = f"{key}[{i}]" if len(sources) > 1 or key.endswith("train_data_sources") else key
        json_path = fetch_file(str(src["json_file"]), f"{what}.json_file")
        image_dir = stage_image_dir(str(src["image_dir"]), f"{what}.image_dir")
        data = load_coco(json_path, image_dir, num_classes, remap=remap, what=what)
        if ctx is not None:
            ctx.log.info("%s: %d images, %d boxes (%s)", what, len(data.images),
                         sum(len(im.boxes) for im in data.images), src["json_file"])
            summary = data.issues_summary(what)
            if summary:  # every dropped / clipped box is reported, in status.json too
                ctx.log.warning("%s", summary)
                ctx.status.write("RUNNING", summary, verbosity="WARNING")
        out.append(data)
    return out


class DetectionTask(Task):
    """Object detection on COCO-format data (see the module docstring)."""

    name = "detection"
    preview_dir = "images_annotated"
    synthetic_keys = ("dataset.num_classes",)

    # ------------------------------------------------------------------ train

    no_val_note = "no dataset.val_data_sources: val_mAP / val_mAP50 are not computed"

    def load_train(self, spec: dict, arch: dict, ctx=None) -> tuple[list, list[CocoData]]:
        """``(train images, validation sources)`` of a (staged) spec; records the training
        classes in ``arch["class_names"]`` (kept in the checkpoints: evaluate / inference
        name and check classes the same way)."""
        if not _sources(S.get(spec, "dataset.train_data_sources"), "dataset.train_data_sources"):
            raise SpecError("dataset.train_data_sources is empty: set it to a list of "
                            "{image_dir: <images.tar.gz>, json_file: <annotations.json>}")
        num_classes = arch["num_classes"]
        train = load_sources(spec, "dataset.train_data_sources", num_classes, ctx)
        val = load_sources(spec, "dataset.val_data_sources", num_classes, ctx)
        arch["class_names"] = {lab: name for d in train for lab, name in d.class_names().items()}
        images = [im for d in train for im in d.images]
        if not images:
            raise DatasetError("dataset.train_data_sources hold no images; check "
                               "annotations.json")
        return images, val

    def train_dataset(self, plugin, spec: dict, arch: dict, samples: list, seed: int):
        """``(dataset, collate)`` of the training images (the plugin's augmentation)."""
        from tao_sdk.worker.tasks.detection.data import Collator, DetectionDataset

        ds = DetectionDataset(samples, train=True, hflip_prob=plugin.flip_prob(spec),
                              distortion_prob=plugin.distortion_prob(spec), seed=seed)
        coll = Collator(plugin.resize_policy(spec), arch["mean"], arch["std"], train=True,
                        seed=seed)
        return ds, coll

    def validate(self, ctx, plugin, model, arch, val, batch_size) -> dict[str, Any]:
        """``val_mAP``, ``val_mAP50``, ``val_loss`` (rank 0; ``{}`` elsewhere)."""
        metrics, val_loss, _r, _m = self.eval_sets(ctx, plugin, model, arch, val,
                                                   plugin.resize_policy(ctx.spec), batch_size,
                                                   with_loss=True)
        kpi: dict[str, Any] = {}
        if metrics is not None:
            kpi.update({"val_mAP": metrics["mAP"], "val_mAP50": metrics["mAP50"]})
        if val_loss is not None:
            kpi["val_loss"] = val_loss
        return kpi

    def eval_data(self, ctx, arch, key):
        """The COCO sources of ``ctx.spec[key]`` (``None`` when unset)."""
        return load_sources(ctx.spec, key, arch["num_classes"], ctx) or None

    def batches(self, ctx, plugin, arch, data, batch_size):
        """Eval-preprocessed batches of every image of ``data``."""
        from tao_sdk.worker.tasks.detection.data import Collator, DetectionDataset

        images = [im for d in data for im in d.images]
        coll = Collator(plugin.resize_policy(ctx.spec), arch["mean"], arch["std"], train=False)
        return R.loader(DetectionDataset(images, train=False), coll, batch_size, False, 0, 0)

    def eval_sets(self, ctx, plugin, model, arch, datas: list[CocoData], policy,
                  batch_size: int, with_loss: bool, conf_threshold: float = 0.0):
        """COCO-evaluate ``model`` on ``datas`` (merged); return
        ``(metrics, mean_loss, results, merged)``.

        In a distributed job each rank predicts its slice of the images (``images[rank::world]``,
        no image twice) and rank 0 gathers the detections and losses and computes the metrics;
        the other ranks get ``(None, None, [], merged)``.
        """
        from tao_sdk.worker.tasks.detection.data import Collator, DetectionDataset
        from tao_sdk.worker.tasks.detection.metrics import coco_map, merge_coco, predict

        dist = D.state()
        merged, maps = merge_coco([d.raw for d in datas])
        results_all = []
        losses = []
        for data, id_map in zip(datas, maps):
            images = data.images[dist.rank::dist.world_size] if dist.world_size > 1 \
                else data.images
            results, loss = [], None
            if images:
                ds = DetectionDataset(images, train=False)
                coll = Collator(policy, arch["mean"], arch["std"], train=False)
                loader = R.loader(ds, coll, batch_size, False, 0, 0)
                results, loss = predict(plugin, model, loader, arch, R.device(),
                                        with_loss=with_loss)
            for meta, s, lab, b in results:
                keep = s >= conf_threshold
                results_all.append(({**meta, "image_id": id_map[meta["image_id"]]}, s[keep],
                                    lab[keep], b[keep]))
            if loss is not None:
                losses.append((loss, len(images)))
        if dist.world_size > 1:
            gathered = D.gather_to_main((results_all, losses))
            if gathered is None:
                return None, None, [], merged
            results_all = [r for part, _ in gathered for r in part]
            losses = [x for _, part in gathered for x in part]
        label_to_cat: dict[int, int] = {}
        for d in datas:
            label_to_cat.update(d.label_to_category)
        class_ids = S.get(ctx.spec, "dataset.eval_class_ids") or None
        metrics = coco_map(merged, results_all, label_to_cat, class_ids=class_ids)
        mean_loss = (sum(v * n for v, n in losses) / max(1, sum(n for _, n in losses))
                     if losses else None)
        return metrics, mean_loss, results_all, merged

    # ------------------------------------------------------------------ evaluate / inference

    @staticmethod
    def _size(spec: dict, section: str, fixed: tuple[int, int] | None):
        if fixed is not None:
            return fixed
        h = S.get(spec, f"{section}.input_height")
        w = S.get(spec, f"{section}.input_width")
        return (int(h), int(w)) if h and w else None

    def evaluate(self, ctx, plugin, model, arch, input_size) -> str:
        """COCO-evaluate on ``dataset.test_data_sources``; KPIs test_mAP / test_mAP50."""
        if not _sources(S.get(ctx.spec, "dataset.test_data_sources"),
                        "dataset.test_data_sources"):
            raise SpecError("dataset.test_data_sources is not set: set it to {image_dir: "
                            "<images.tar.gz>, json_file: <annotations.json>}")
        datas = load_sources(ctx.spec, "dataset.test_data_sources", arch["num_classes"], ctx)
        for data in datas:  # the model's class i must be the evaluation set's class i
            data.check_classes(arch.get("class_names"), "dataset.test_data_sources")
        policy = plugin.resize_policy(ctx.spec, self._size(ctx.spec, "evaluate", input_size))
        conf = float(S.get(ctx.spec, "evaluate.conf_threshold", 0.0))
        t0 = time.monotonic()
        batch = min(R.batch_size(ctx.spec, "evaluate.batch_size"),
                    getattr(model, "max_batch", 1 << 30))
        metrics, _loss, _res, merged = self.eval_sets(ctx, plugin, model, arch, datas, policy,
                                                      batch, with_loss=False,
                                                      conf_threshold=conf)
        names = {c["id"]: str(c.get("name", c["id"])) for c in merged.get("categories", [])}
        per_class = {names.get(cid, str(cid)): ap for cid, ap in metrics["per_class"].items()}
        R.write_json(ctx.task_dir / "results.json", {
            "test_mAP": metrics["mAP"], "test_mAP50": metrics["mAP50"],
            "test_mAP75": metrics["mAP75"], "per_class_AP": per_class,
            "images": len(merged["images"]), "seconds": time.monotonic() - t0,
        })
        if metrics.get("pr"):  # PR curves for `tao-skills plot` (tao_sdk.plots)
            R.write_json(ctx.task_dir / "pr_curves.json", {
                "iou": 0.5, "recall": metrics["pr"]["recall"],
                "precision": {names.get(cid, str(cid)): curve
                              for cid, curve in metrics["pr"]["precision"].items()}})
        ctx.status.running("Evaluation metrics generated.",
                           kpi={"test_mAP": metrics["mAP"], "test_mAP50": metrics["mAP50"]},
                           categorical={"test_AP_per_class": per_class} if per_class else None)
        return (f"Evaluation finished successfully: test_mAP={metrics['mAP']:.4f}, "
                f"test_mAP50={metrics['mAP50']:.4f} on {len(merged['images'])} images.")

    def _infer_inputs(self, ctx, arch) -> tuple[list[tuple[Path, Path]], dict[int, str]]:
        """``([(image path, output relative path)], class names)`` of the inference data."""
        from tao_sdk.worker.staging import fetch_file, stage_image_dir

        src = S.get(ctx.spec, "dataset.infer_data_sources")
        if not isinstance(src, dict) or not src.get("image_dir"):
            raise SpecError("dataset.infer_data_sources.image_dir is not set: set it to a list "
                            "of image folders / images.tar.gz URIs")
        dirs = src["image_dir"] if isinstance(src["image_dir"], list) else [src["image_dir"]]
        classmap = S.require(ctx.spec, "dataset.infer_data_sources.classmap",
                             "the label_map.txt of the dataset (one class name per line)")
        names = read_label_map(fetch_file(str(classmap), "dataset.infer_data_sources.classmap"),
                               arch["num_classes"], "dataset.infer_data_sources.classmap",
                               trained=arch.get("class_names"))
        paths: list[tuple[Path, Path]] = []
        multi = len(dirs) > 1
        for i, d in enumerate(dirs):
            folder = stage_image_dir(str(d), f"dataset.infer_data_sources.image_dir[{i}]")
            found = list_images(folder)
            if not found:
                raise DatasetError(f"dataset.infer_data_sources.image_dir[{i}]: no images "
                                   f"(jpg, png...) in {d}")
            # With several folders, outputs go to <index>/<relative path> so names cannot clash.
            paths += [(p, Path(str(i)) / p.relative_to(folder) if multi
                       else p.relative_to(folder)) for p in found]
        return paths, names

    def inference(self, ctx, plugin, model, arch, input_size) -> str:
        """Detect objects in ``dataset.infer_data_sources.image_dir``; write detections.json,
        KITTI labels and images with drawn boxes named from the classmap."""
        from tao_sdk.worker.tasks.detection.data import Collator, ImageListDataset
        from tao_sdk.worker.tasks.detection.metrics import predict
        from tao_sdk.worker.tasks.detection.outputs import write_detections

        paths, names = self._infer_inputs(ctx, arch)
        policy = plugin.resize_policy(ctx.spec, self._size(ctx.spec, "inference", input_size))
        coll = Collator(policy, arch["mean"], arch["std"], train=False)
        batch = min(R.batch_size(ctx.spec, "inference.batch_size"),
                    getattr(model, "max_batch", 1 << 30))
        loader = R.loader(ImageListDataset([p for p, _ in paths]), coll, batch, False, 0, 0)
        t0 = time.monotonic()
        results, _ = predict(plugin, model, loader, arch, R.device())
        conf = float(S.get(ctx.spec, "inference.conf_threshold", 0.5))
        width = int(S.get(ctx.spec, "inference.outline_width", 3))
        count = write_detections(ctx.task_dir, results, [rel for _, rel in paths], names, conf,
                                 width)
        ctx.upload_now()
        return (f"Inference finished successfully: {count} detections (score >= {conf}) in "
                f"{len(paths)} images ({time.monotonic() - t0:.1f} s); see detections.json and "
                "images_annotated/.")

    def trt_model(self, runner):
        """A detector-like callable over a TensorRT engine with outputs ``pred_logits`` /
        ``pred_boxes``."""
        from tao_sdk.worker.tasks.detection.outputs import TrtDetector

        return TrtDetector(runner)

    # ------------------------------------------------------------------ demo / tests

    def write_synthetic(self, root, n_train, n_val, size, seed=0, classes=None):
        """Coloured shapes on textured backgrounds (COCO layout; see
        :mod:`~tao_sdk.worker.tasks.detection.synthetic`)."""
        from tao_sdk.worker.tasks.detection.synthetic import DEFAULT_CLASSES, make_coco_dataset

        return make_coco_dataset(root, n_train=n_train, n_val=n_val,
                                 classes=classes or DEFAULT_CLASSES, size=size, seed=seed)

    def demo_datasets(self, roots):
        """Train on ``train`` (validate on ``val``), evaluate / infer on ``val``, calibrate on
        ``train``."""
        return {
            "train": {"train_datasets": [roots["train"]], "eval_dataset": roots["val"],
                      "inference_dataset": roots["val"]},
            "evaluate": {"eval_dataset": roots["val"]},
            "export": {"train_datasets": [roots["train"]]},  # some skills' export tables ask
            "inference": {"inference_dataset": roots["val"]},
            "gen_trt_engine": {"calibration_dataset": roots["train"]},
        }

    def demo_overrides(self, action, size):
        """The synthetic classes (+ background id 0) for every model action; export /
        inference at the demo's image size; inference keeps scores >= 0.3."""
        from tao_sdk.worker.tasks.detection.synthetic import DEFAULT_CLASSES

        if action == "gen_trt_engine":
            return {}
        out: dict[str, Any] = {"dataset.num_classes": len(DEFAULT_CLASSES) + 1}
        if action == "export":
            out.update({"export.input_height": size, "export.input_width": size})
        if action == "inference":
            out.update({"inference.input_height": size, "inference.input_width": size,
                        "inference.conf_threshold": 0.3})
        return out

    def tiny_spec(self, plugin, data, results_dir, size, epochs):
        """Train / evaluate / inference / export sections over the synthetic splits (the
        checkpoints of evaluate / inference / export are left for the caller to set), then
        the plugin's ``tiny_overrides``."""
        from tao_sdk.worker.tasks.detection.synthetic import DEFAULT_CLASSES

        train, val = data["train"], data["val"]
        src = {"image_dir": str(val["images"]), "json_file": str(val["annotations"])}
        spec: dict[str, Any] = {
            "results_dir": results_dir,
            "encryption_key": "tlt_encode",
            "dataset": {
                "train_data_sources": [{"image_dir": str(train["images"]),
                                        "json_file": str(train["annotations"])}],
                "val_data_sources": [dict(src)], "test_data_sources": dict(src),
                "infer_data_sources": {"image_dir": [str(val["images"])],
                                       "classmap": str(val["label_map"])},
                "num_classes": len(DEFAULT_CLASSES) + 1, "batch_size": 4, "workers": 0,
            },
            "train": {"num_epochs": epochs, "checkpoint_interval": 1, "validation_interval": 1,
                      "optim": {"lr": 5e-4, "lr_backbone": 5e-4}, "enable_ema": False},
            "inference": {"conf_threshold": 0.0},
            "export": {"onnx_file": f"{results_dir}/export/model.onnx",
                       "input_height": size, "input_width": size, "opset_version": 17},
        }
        return self.finish_tiny_spec(plugin, spec, size)


#: The detection task instance the detection plugins share.
TASK = DetectionTask()
