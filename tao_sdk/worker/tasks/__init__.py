"""Tasks: what the networks of one task share (data, collate, metrics, inference outputs, demo).

One sub-package per task: :mod:`~tao_sdk.worker.tasks.detection` today; segmentation and
stereo depth go next to it (``tasks/segmentation``, ``tasks/stereo``), each defining a
:class:`Task` subclass that its networks' plugins point at (``NetworkPlugin.task``).

The engine calls, per action:

- every action: :meth:`Task.staged_keys` (what to stage; the engine's one staging step,
  :func:`tao_sdk.worker.staging.stage_spec`, fetches those and the model files);
- train: :meth:`Task.train_data` (once, after staging) -> :class:`TrainData` (dataset,
  collate, validation data, notes); :meth:`Task.validate` every ``validation_interval`` epochs
  -> KPIs (``val_*``);
- evaluate / inference: :meth:`Task.evaluate` / :meth:`Task.inference` with the loaded model
  (a torch module, or :meth:`Task.trt_model` around a TensorRT engine);
- quantize: :meth:`Task.eval_data` (validation / calibration data), :meth:`Task.batches`
  (calibration forward passes) and :meth:`Task.validate` (KPIs before / after);

and the tools outside the worker call:

- ``tao-skills demo`` (:mod:`tao_sdk.demo`): :meth:`Task.write_synthetic` (a train and a val
  split in the layout of a real dataset), :meth:`Task.demo_datasets` (dataset roots per
  action), :meth:`Task.demo_overrides` (spec overrides of evaluate / export / inference);
- tests and benchmarks: :meth:`Task.tiny_spec` (a complete small spec over synthetic data,
  with the plugin's ``tiny_overrides``), :meth:`Task.load_train` / :meth:`Task.train_dataset`
  (the same data pipeline as the worker, without a job).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Task", "TrainData"]


@dataclass
class TrainData:
    """The training data of a train job.

    Attributes:
        dataset: map-style dataset of training samples (optional ``rng`` attribute: reseeded
            per loader worker).
        collate: the DataLoader ``collate_fn`` (optional ``rng`` attribute, likewise).
        val: the task's validation data (passed back to :meth:`Task.validate`), ``None``
            when the spec has none (no validation KPIs).
        notes: lines for the start line of ``status.json``.
    """

    dataset: Any
    collate: Any
    val: Any = None
    notes: list[str] = field(default_factory=list)


class Task:
    """Base class of a task (see the module docstring for when each hook runs)."""

    #: Task name (``detection``, ``segmentation``, ``stereo``).
    name: str = ""
    #: Folder of the inference results holding viewable images (the demo tiles them).
    preview_dir: str = ""

    #: Spec keys of the per-process training batch size, the training loader's workers and
    #: the validation data (the engine and the benchmarks read them through these names).
    batch_size_key: str = "dataset.batch_size"
    workers_key: str = "dataset.workers"
    val_data_key: str = "dataset.val_data_sources"

    #: ``dataset_format`` of the synthetic demo data when the skill's data sources need one.
    demo_format: str | None = None
    #: Keys of :meth:`demo_overrides` that describe the synthetic data (class count, label
    #: ids), not the model or the schedule: the tiny preset (``tools/gen_presets.py``) leaves
    #: them out, since they belong to the user's dataset.
    synthetic_keys: tuple[str, ...] = ()

    #: Start-line note when the spec has no validation data.
    no_val_note: str = "no validation data: validation KPIs are not computed"

    #: Per action: the data keys :meth:`staged_keys` names by default, the COCO data-source
    #: layout (``dataset.<split>_data_sources``: image_dir / json_file / classmap entries).
    source_keys: dict[str, tuple[tuple[str, str], ...]] = {
        "train": (("dataset.train_data_sources", "sources"), ("dataset.val_data_sources", "sources")),
        "distill": (("dataset.train_data_sources", "sources"), ("dataset.val_data_sources", "sources")),
        "quantize": (("dataset.val_data_sources", "sources"), ("dataset.quant_calibration_data_sources", "sources")),
        "evaluate": (("dataset.test_data_sources", "sources"),),
        "inference": (("dataset.infer_data_sources", "sources"),),
    }

    def staged_keys(self, action: str) -> list[tuple[str, str]]:
        """What the job stages before ``action`` runs, besides the model files every task reads:
        ``(spec key, kind)`` pairs for :func:`tao_sdk.worker.staging.stage_spec` (kinds ``file``,
        ``dirs``, ``sources``), :attr:`source_keys` unless the task lays its data out otherwise."""
        return list(self.source_keys.get(action, ()))

    def load_train(self, spec: dict, arch: dict[str, Any], ctx=None) -> tuple[list, Any]:
        """``(training samples, validation data or empty)`` of a staged (local) spec; ``ctx``
        (the job context, ``None`` outside a job) for log / status lines about the data. May
        record data facts in ``arch`` (saved in the checkpoints)."""
        raise NotImplementedError

    def train_dataset(self, plugin, spec: dict, arch: dict[str, Any], samples: list,
                      seed: int) -> tuple[Any, Any]:
        """``(dataset, collate)`` over the training samples, with the plugin's augmentation
        seeded by ``seed``."""
        raise NotImplementedError

    def train_data(self, ctx, plugin, arch: dict[str, Any], seed: int) -> TrainData:
        """Load the (already staged) training / validation data of ``ctx.spec``
        (:meth:`load_train` + :meth:`train_dataset`)."""
        samples, val = self.load_train(ctx.spec, arch, ctx)
        ds, coll = self.train_dataset(plugin, ctx.spec, arch, samples, seed)
        return TrainData(ds, coll, val or None, [] if val else [self.no_val_note])

    def validate(self, ctx, plugin, model, arch: dict[str, Any], val: Any,
                 batch_size: int) -> dict[str, Any]:
        """Validation KPIs of ``model`` on ``val`` (``{}`` on ranks other than 0)."""
        raise NotImplementedError

    def eval_data(self, ctx, arch: dict[str, Any], key: str) -> Any:
        """The (staged) data of ``ctx.spec[key]`` in the form :meth:`validate` and
        :meth:`batches` take (quantize: ``dataset.val_data_sources`` and
        ``dataset.quant_calibration_data_sources``); ``None`` when the key is unset."""
        raise self._no_quantize()

    def batches(self, ctx, plugin, arch: dict[str, Any], data: Any, batch_size: int):
        """Collated batches of ``data`` (from :meth:`eval_data`) with evaluation preprocessing,
        ready for ``plugin.forward`` (calibration of a quantized model)."""
        raise self._no_quantize()

    def _no_quantize(self):
        from tao_sdk.worker.errors import WorkerError

        return WorkerError(f"quantize is not available for the {self.name} task in this worker "
                           "(its task has no eval_data / batches hooks); run quantize in the "
                           "TAO container (TAO_SKILLS_ENTRYPOINT)")

    def evaluate(self, ctx, plugin, model, arch: dict[str, Any],
                 input_size: tuple[int, int] | None) -> str:
        """Evaluate ``model`` on the spec's test data; write KPIs and results; return the
        SUCCESS message. ``input_size`` is fixed by a TensorRT engine (else ``None``)."""
        raise NotImplementedError

    def inference(self, ctx, plugin, model, arch: dict[str, Any],
                  input_size: tuple[int, int] | None) -> str:
        """Run ``model`` on the spec's inference data; write the outputs; return the SUCCESS
        message."""
        raise NotImplementedError

    def trt_model(self, runner):
        """Wrap a :class:`tao_sdk.worker.trt.TrtRunner` so that the plugin's ``forward`` can
        call it like the PyTorch model."""
        raise NotImplementedError(f"TensorRT evaluate / inference is not available for the "
                                  f"{self.name} task")

    # ------------------------------------------------------------------ demo / tests

    def write_synthetic(self, root: Path, n_train: int, n_val: int, size: int,
                        seed: int = 0) -> dict[str, dict[str, Path]]:
        """Write ``root/train`` and ``root/val`` synthetic splits; return their paths."""
        raise NotImplementedError

    def demo_datasets(self, roots: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Dataset roots per action for ``create_job(datasets=...)``: keys ``train``,
        ``evaluate``, ``export``, ``inference``, ``gen_trt_engine``."""
        raise NotImplementedError

    def demo_overrides(self, action: str, size: int) -> dict[str, Any]:
        """Spec overrides of the demo's ``action`` job (train, evaluate, export, inference)
        that the synthetic data asks for (class count, input size...)."""
        return {}

    def tiny_spec(self, plugin, data: dict[str, dict[str, Path]], results_dir: str, size: int,
                  epochs: int) -> dict[str, Any]:
        """A complete small spec for ``plugin`` over ``data`` (from :meth:`write_synthetic`)."""
        raise NotImplementedError

    @staticmethod
    def finish_tiny_spec(plugin, spec: dict[str, Any], size: int) -> dict[str, Any]:
        """What every task's :meth:`tiny_spec` ends with: the gen_trt_engine section reading
        ``<results_dir>/export/model.onnx``, wandb off, then the plugin's ``tiny_overrides``."""
        from tao_sdk.worker import spec as S

        results_dir = spec["results_dir"]
        spec["gen_trt_engine"] = {"onnx_file": f"{results_dir}/export/model.onnx",
                                  "trt_engine": f"{results_dir}/gen_trt_engine/model.engine"}
        spec["wandb"] = {"enable": False}
        for key, value in plugin.tiny_overrides(size).items():
            S.set_value(spec, key, value)
        return spec
