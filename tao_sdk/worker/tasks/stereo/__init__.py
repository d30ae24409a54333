"""Stereo depth (disparity) task: what stereo networks share.

Data layout (a dataset root, local folder or ``s3://`` prefix)::

    <root>/annotations.txt     one sample per line: <left> <right> [<disparity> [<occlusion>]]
    <root>/images.tar.gz       optional: the files the lines name, as archive members

Every path in ``annotations.txt`` is relative to the dataset root (the folder holding
``annotations.txt``), written with ``/``. When ``<root>/images.tar.gz`` exists it is extracted
once and a line ``left/0001.png right/0001.png disparity/0001.pfm`` reads the archive members
``left/0001.png``, ``right/0001.png`` and ``disparity/0001.pfm`` (member paths are exactly the
annotation paths; no extra top folder). Without the archive, the files are read next to
``annotations.txt`` (``<root>/left/0001.png``: loose files, or objects under the ``s3://``
prefix). An absolute local path is used as it is. Columns: 2 = left + right (inference, no
ground truth), 3 = + disparity, 4 = + occlusion mask.

Disparity files (in pixels of the left image's width, for the left image): ``.pfm`` (float;
``inf``/``nan``/``<= 0`` = no ground truth), ``.npy`` (float), 16-bit ``.png`` (value / 256, 0 =
no ground truth; ``Crestereo``: value / 32), and for ``FSD`` an 8-bit RGB ``.png``
(``(R*255*255 + G*255 + B) / 1000``). Occlusion masks: ``Middlebury`` evaluates pixels where the
mask is 255 (its ``mask0nocc.png``); for the other formats a non-zero mask pixel is occluded and
left out of the loss and the metrics.

Metrics (:class:`DisparityMetrics`, over the valid pixels, ground truth in
``(0, dataset.max_disparity)``; as TAO's ``StereoDepthEvaluator``, per image and averaged over
the images): ``epe`` (mean absolute error, px), ``bp1`` / ``bp2`` / ``bp3`` (fraction of pixels
with error > 1 / 2 / 3 px), ``d1`` (KITTI: error > 3 px and > 5% of the ground truth); ``rmse``
over every valid pixel of the set.

Inference outputs (:func:`write_prediction`), per left image ``<name>``:
``disparity_png/<name>.png`` (16-bit, disparity x 256, KITTI convention), ``disparity_pfm/<name>.pfm``
(float32), ``colorized/<name>.png`` (turbo-like colour map, near = warm) and with
``inference.save_raw_npy`` ``disparity_npy/<name>.npy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tao_sdk.datasets.stereo_formats import FORMATS
from tao_sdk.worker.errors import SpecError
from tao_sdk.worker.tasks import Task
from tao_sdk.worker.tasks.stereo.formats import (StereoSample, read_disparity, read_pfm, write_pfm)  # noqa: F401
from tao_sdk.worker.tasks.stereo.data import (StereoDataset, collate, read_annotations,
                                              stage_sources)  # noqa: F401
from tao_sdk.worker.tasks.stereo.metrics import DisparityMetrics, METRIC_KEYS  # noqa: F401
from tao_sdk.worker.tasks.stereo.outputs import colorize, write_prediction  # noqa: F401
from tao_sdk.worker.tasks.stereo.synthetic import _stereo_pair, make_stereo_dataset  # noqa: F401

__all__ = [
    "FORMATS",
    "StereoSample",
    "read_pfm",
    "write_pfm",
    "read_disparity",
    "read_annotations",
    "stage_sources",
    "StereoDataset",
    "collate",
    "DisparityMetrics",
    "colorize",
    "write_prediction",
    "make_stereo_dataset",
    "METRIC_KEYS",
    "StereoTask",
    "TASK",
]


# --------------------------------------------------------------------------- the task


def _split(spec: dict, split: str, key: str, default: Any = None) -> Any:
    """``dataset.<split>_dataset.<key>``."""
    from tao_sdk.worker import spec as S

    return S.get(spec, f"dataset.{split}_dataset.{key}", default)


def split_batch_size(spec: dict, split: str) -> int:
    """``dataset.<split>_dataset.batch_size`` (>= 1; default 1)."""
    value = _split(spec, split, "batch_size", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"dataset.{split}_dataset.batch_size={value!r} must be an integer >= 1")
    return int(value)


def _action_batch_size(spec: dict, action: str, split: str) -> int:
    """``<action>.batch_size`` when positive (``-1``: unset), else
    ``dataset.<split>_dataset.batch_size``."""
    from tao_sdk.worker import spec as S

    value = S.get(spec, f"{action}.batch_size", -1)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return split_batch_size(spec, split)


def _max_disparity(spec: dict) -> float:
    from tao_sdk.worker import spec as S

    value = S.get(spec, "dataset.max_disparity", 416)
    if not isinstance(value, (int, float)) or value <= 0:
        raise SpecError(f"dataset.max_disparity={value!r} must be a positive number of pixels")
    return float(value)


class StereoModelInput:
    """Adapts a TensorRT engine (inputs ``left_image``, ``right_image``; output
    ``disparity``) to the call of the PyTorch stereo model: ``model(left, right, iters)`` ->
    ``(None, [disparity])``; ``arch`` is ``None`` (the engine's input size is fixed)."""

    arch = None

    def __init__(self, runner) -> None:
        self.runner = runner
        self.max_batch = runner.max_batch
        self.input_hw = runner.input_hw

    def eval(self) -> "StereoModelInput":
        """No-op (API parity with torch modules)."""
        return self

    def to(self, _device) -> "StereoModelInput":
        """No-op (the engine lives on the GPU)."""
        return self

    def __call__(self, left, right, iters=None):
        """Run the engine on one batch."""
        out = self.runner.run([left, right])
        return None, [out["disparity"]]


class StereoTask(Task):
    """Stereo disparity on ``annotations.txt`` datasets (see the module docstring).

    What a stereo plugin adds: ``predict(model, left, right)`` (full-resolution disparity of
    normalised images of any size), ``forward`` returning ``{"init", "outputs", "gt",
    "valid"}`` and ``loss``; its ``arch`` carries ``mean`` / ``std`` and ``valid_iters``.
    KPIs: ``val_loss``, ``val_epe``, ``val_bp1/2/3``, ``val_d1`` (train), ``epe``, ``bp1``,
    ``bp2``, ``bp3``, ``d1``, ``rmse`` (evaluate).
    """

    name = "stereo"
    preview_dir = "colorized"
    batch_size_key = "dataset.train_dataset.batch_size"
    workers_key = "dataset.train_dataset.workers"
    val_data_key = "dataset.val_dataset.data_sources"
    #: Nothing is staged up front: a stereo source's ``annotations.txt`` names its files relative
    #: to the dataset root (``images.tar.gz`` beside it, or single files), so the loader stages
    #: them as it reads the list (:func:`~tao_sdk.worker.tasks.stereo.data.stage_sources`).
    source_keys: dict[str, tuple[tuple[str, str], ...]] = {}
    demo_format = "GenericDataset"

    # ------------------------------------------------------------------ train

    no_val_note = ("no dataset.val_dataset.data_sources: val_loss / val_epe are not computed")

    def load_train(self, spec, arch, ctx=None):
        """``(training pairs, validation StereoDataset or None)`` of a spec
        (``dataset.train_dataset`` / ``dataset.val_dataset`` data sources)."""
        from tao_sdk.worker import spec as S

        train = stage_sources(S.get(spec, "dataset.train_dataset.data_sources"),
                              "dataset.train_dataset.data_sources", need_gt=True)
        val = None
        if S.get(spec, "dataset.val_dataset.data_sources") not in (None, "", []):
            pairs = stage_sources(S.get(spec, "dataset.val_dataset.data_sources"),
                                  "dataset.val_dataset.data_sources", need_gt=True)
            val = StereoDataset(pairs, arch["mean"], arch["std"], _max_disparity(spec))
        if ctx is not None:
            ctx.log.info("stereo data: %d training pairs, %d validation pairs", len(train),
                         len(val) if val is not None else 0)
        return train, val

    def train_dataset(self, plugin, spec, arch, samples, seed):
        """``(StereoDataset, collate)`` of the training pairs with the train split's
        augmentation."""
        ds = StereoDataset(samples, arch["mean"], arch["std"], _max_disparity(spec), train=True,
                           aug=_split(spec, "train", "augmentation", {}) or {}, seed=seed)
        return ds, collate

    def _run(self, plugin, model, dataset, batch_size: int, size=None, with_loss=False,
             on_batch=None):
        """Predict every pair of ``dataset`` (this rank's share); return ``(metrics, loss sum,
        loss count)`` with ``on_batch(batch, disparity)`` called per batch. Without
        ``with_loss`` (evaluate / inference) the model is put in eval mode first, as TAO's
        Lightning test / predict loops do (BatchNorm running statistics, ``valid_iters``
        GRU iterations)."""
        import torch

        if not with_loss:
            model.eval()

        from tao_sdk.worker import distributed as D
        from tao_sdk.worker.engine import runtime as R

        dist = D.state()
        indices = list(range(dist.rank, len(dataset), dist.world_size))
        subset = torch.utils.data.Subset(dataset, indices)
        loader = R.loader(subset, collate, batch_size, False, 0, 0)
        device = R.device()
        metrics = DisparityMetrics()
        loss_sum, loss_n = 0.0, 0
        for batch in loader:
            with torch.no_grad():
                if with_loss:
                    out = plugin.forward(model, batch, device, with_labels=True)
                    loss_sum += float(plugin.loss(out, None)) * len(batch["name"])
                    loss_n += len(batch["name"])
                    disp = out["outputs"][-1].cpu()
                else:
                    disp = plugin.predict_batch(model, batch, device, size)
            if any(batch["has_gt"]):
                metrics.update(disp, batch["disparity"], batch["valid"])
            if on_batch is not None:
                on_batch(batch, disp)
        return metrics, loss_sum, loss_n

    def validate(self, ctx, plugin, model, arch, val, batch_size) -> dict[str, Any]:
        """``val_loss`` (the training loss at ``valid_iters``) and ``val_epe`` / ``val_bp1..3``
        / ``val_d1`` on rank 0 (the ranks split the pairs)."""
        from tao_sdk.worker import distributed as D

        batch = split_batch_size(ctx.spec, "val")
        metrics, loss_sum, loss_n = self._run(plugin, model, val, batch, with_loss=True)
        parts = (metrics.count, metrics.images, metrics.sums, loss_sum, loss_n)
        if D.state().world_size > 1:
            gathered = D.gather_to_main(parts)
            if gathered is None:
                return {}
            total = DisparityMetrics()
            loss_sum = loss_n = 0
            for count, images, sums, ls, ln in gathered:
                total.merge(count, images, sums)
                loss_sum += ls
                loss_n += ln
            metrics = total
        kpi: dict[str, Any] = {"val_loss": loss_sum / max(1, loss_n)}
        if metrics.count:
            kpi.update({f"val_{k}": v for k, v in metrics.result().items() if k != "rmse"})
        return kpi

    # ------------------------------------------------------------------ evaluate / inference

    def evaluate(self, ctx, plugin, model, arch, input_size) -> str:
        """EPE / bp1-3 / D1 / RMSE on ``dataset.test_dataset.data_sources`` (native resolution
        for a checkpoint; a TensorRT engine runs at its input size, disparity rescaled)."""
        import time

        from tao_sdk.worker import spec as S
        from tao_sdk.worker.engine import runtime as R

        pairs = stage_sources(S.get(ctx.spec, "dataset.test_dataset.data_sources"),
                              "dataset.test_dataset.data_sources", need_gt=True)
        ds = StereoDataset(pairs, arch["mean"], arch["std"], _max_disparity(ctx.spec))
        batch = min(_action_batch_size(ctx.spec, "evaluate", "test"),
                    getattr(model, "max_batch", 1 << 30))
        t0 = time.monotonic()
        metrics, _s, _n = self._run(plugin, model, ds, batch, size=input_size)
        result = metrics.result()
        R.write_json(ctx.task_dir / "results.json", {**result, "pairs": len(pairs),
                                                     "valid_pixels": metrics.count,
                                                     "seconds": time.monotonic() - t0})
        # the error histogram for `tao-skills plot` (tao_sdk.plots)
        R.write_json(ctx.task_dir / "error_histogram.json", metrics.histogram())
        ctx.status.running("Evaluation metrics generated.", kpi=result)
        return (f"Evaluation finished successfully: epe={result['epe']:.4f} px, "
                f"bp1={result['bp1']:.4f}, bp2={result['bp2']:.4f}, bp3={result['bp3']:.4f}, "
                f"d1={result['d1']:.4f} on {len(pairs)} pairs.")

    def inference(self, ctx, plugin, model, arch, input_size) -> str:
        """Disparity of every pair of ``dataset.infer_dataset.data_sources``: 16-bit PNG, PFM
        and colourised PNG (``.npy`` with ``inference.save_raw_npy``)."""
        import time

        from tao_sdk.worker import spec as S
        from tao_sdk.worker.engine import runtime as R

        key = "dataset.infer_dataset.data_sources"
        pairs = stage_sources(S.get(ctx.spec, key), key, need_gt=False)
        ds = StereoDataset(pairs, arch["mean"], arch["std"], _max_disparity(ctx.spec))
        batch = min(_action_batch_size(ctx.spec, "inference", "infer"),
                    getattr(model, "max_batch", 1 << 30))
        save_npy = bool(S.get(ctx.spec, "inference.save_raw_npy", False))
        written: list[str] = []

        def write(b, disp) -> None:
            """Write the predictions of one batch."""
            for i, name in enumerate(b["name"]):
                h, w = b["sizes"][i]
                write_prediction(ctx.task_dir, name, disp[i, 0, :h, :w].numpy(), save_npy)
                written.append(name)

        t0 = time.monotonic()
        self._run(plugin, model, ds, batch, size=input_size, on_batch=write)
        R.write_json(ctx.task_dir / "inference.json", {
            "pairs": written, "outputs": ["disparity_png/<name>.png (uint16, disparity x 256)",
                                          "disparity_pfm/<name>.pfm (float32)",
                                          "colorized/<name>.png"]
            + (["disparity_npy/<name>.npy"] if save_npy else [])})
        ctx.upload_now()
        return (f"Inference finished successfully: disparity of {len(written)} pairs "
                f"({time.monotonic() - t0:.1f} s) in disparity_png/ (16-bit, x256), "
                "disparity_pfm/ and colorized/.")

    def trt_model(self, runner):
        """The engine called like the PyTorch stereo model."""
        return StereoModelInput(runner)

    # ------------------------------------------------------------------ demo / tests

    def write_synthetic(self, root, n_train, n_val, size, seed=0):
        """Synthetic rectified pairs (textured slanted background + nearer objects) of
        ``size // 2`` x ``size`` pixels with disparity up to ``size / 5`` px: ``root/train`` and
        ``root/val`` in the ``annotations.txt`` + ``images.tar.gz`` layout."""
        out = {}
        for i, (split, n) in enumerate((("train", n_train), ("val", n_val))):
            folder = make_stereo_dataset(Path(root) / split, n, size // 2, size,
                                         max_disparity=size / 5, seed=seed + i)
            out[split] = {"root": folder, "annotations": folder / "annotations.txt",
                          "images": folder / "images.tar.gz"}
        return out

    def demo_datasets(self, roots):
        """Train on ``train`` (validate on ``val``), evaluate / infer on ``val``."""
        return {
            "train": {"train_datasets": [roots["train"]], "eval_dataset": roots["val"]},
            "evaluate": {"eval_dataset": roots["val"]},
            "inference": {"inference_dataset": roots["val"]},
            "gen_trt_engine": {},
        }

    def demo_overrides(self, action, size):
        """The demo's model block for every model action; export at the demo's pair size."""
        if action == "gen_trt_engine":
            return {}
        out: dict[str, Any] = {}
        if action == "export":
            out.update({"export.input_height": size // 2, "export.input_width": size,
                        "export.batch_size": 1})
        return out

    def tiny_spec(self, plugin, data, results_dir, size, epochs):
        """Train / evaluate / inference / export sections over the synthetic splits, then the
        plugin's ``tiny_overrides``."""

        def src(split):
            return [{"data_file": str(data[split]["annotations"]),
                     "dataset_name": "GenericDataset"}]

        no_aug = {k: 0.0 for k in ("spatial_aug_prob", "color_aug_prob", "eraser_aug_prob",
                                   "v_flip_prob", "yjitter_prob")}
        spec: dict[str, Any] = {
            "results_dir": results_dir,
            "encryption_key": "tlt_encode",
            "dataset": {
                "dataset_name": "StereoDataset", "max_disparity": 416,
                "train_dataset": {"data_sources": src("train"), "batch_size": 4, "workers": 0,
                                  "augmentation": {"crop_size": [size // 2, size], **no_aug}},
                "val_dataset": {"data_sources": src("val"), "batch_size": 4, "workers": 0},
                "test_dataset": {"data_sources": src("val"), "batch_size": 4, "workers": 0},
                "infer_dataset": {"data_sources": src("val"), "batch_size": 4, "workers": 0},
            },
            "model": {"model_type": "FastFoundationStereo"},
            "train": {"num_epochs": epochs, "checkpoint_interval": 1, "validation_interval": 1,
                      "optim": {"lr": 2e-3, "warmup_steps": 0, "lr_scheduler": "MultiStepLR"}},
            "export": {"onnx_file": f"{results_dir}/export/model.onnx",
                       "input_height": size // 2, "input_width": size, "opset_version": 17,
                       "valid_iters": 4},
        }
        return self.finish_tiny_spec(plugin, spec, size)


#: The stereo task instance the stereo plugins share.
TASK = StereoTask()
