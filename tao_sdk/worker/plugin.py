"""The network seam of the worker: what the engine asks of a network.

A network is one module ``tao_sdk/worker/networks/<name>.py`` defining ``PLUGIN``, an
instance of a :class:`NetworkPlugin` subclass, registered by one line in
:data:`tao_sdk.worker.registry.REGISTRY`. The engine (:mod:`tao_sdk.worker.engine`) calls only
the hooks below; what the networks of a task share (datasets, collate, metrics, inference
outputs, synthetic demo data) lives in the plugin's :attr:`NetworkPlugin.task`
(:class:`tao_sdk.worker.tasks.Task`).

Hooks the engine calls, by action:

- every action: :meth:`NetworkPlugin.unhonoured` (spec fields reported as not honoured),
  :meth:`NetworkPlugin.describe` (the model line of ``status.json``);
- train: :meth:`build_arch` -> :meth:`build_model`, :attr:`backbone_prefix` /
  :meth:`is_backbone_param` (pretrained backbone, ``model.train_backbone``),
  :meth:`param_groups` (optimizer groups), :meth:`forward` + :meth:`loss` per step,
  :meth:`ddp_find_unused_parameters`, :meth:`arch_diff` (resume), :meth:`checkpoint_name` /
  :attr:`latest_link` (results contract); data and validation through ``task``;
- evaluate / inference: :meth:`checkpoint_arch` (the checkpoint's architecture + the spec's
  post-processing), :meth:`postprocess_arch` (TensorRT jobs), then ``task.evaluate`` /
  ``task.inference``; a TensorRT engine is checked against :attr:`trt_outputs`;
- export: :meth:`onnx_export` (an :class:`OnnxExport`: wrapper module, example inputs,
  input / output names, dynamic axes, metadata, description) and
  :meth:`OnnxExport.check` (parity with onnxruntime).

``build_arch`` returns a plain dict (saved in every checkpoint as ``arch``) with at least
``network``, ``num_classes`` and ``backbone_desc``; evaluate / inference / export rebuild the
model from the checkpoint's ``arch`` with :meth:`build_model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from tao_sdk.worker import spec as S

if TYPE_CHECKING:  # pragma: no cover
    from tao_sdk.worker.tasks import Task

__all__ = ["NetworkPlugin", "OnnxExport", "COMMON_UNHONOURED", "backbone_scale", "spec_int",
           "spec_float", "to_device"]

# Fields whose value no worker network honours, with the values that ask for nothing (reported
# only when the spec asks for something else). Keys absent from the spec are skipped.
COMMON_UNHONOURED: dict[str, tuple] = {
    # wandb.* is honoured (tao_sdk.worker.tracking).
    # train.num_gpus / num_nodes / gpu_ids are honoured (tao_sdk.worker.distributed).
    "train.checkpointer.enable_topk": (False,),
    "train.freeze": ([],),
    "train.is_dry_run": (False,),
    "train.distributed_strategy": ("ddp",),
    "train.optim.monitor_name": ("val_loss",),
    "evaluate.trt_engine": (),
    "inference.trt_engine": (),
    "evaluate.num_gpus": (1,),
    "inference.num_gpus": (1,),
    "export.serialize_nvdsinfer": (False,),
    "export.format": ("onnx",),
    "model.dilation": (False,),
}


@dataclass
class OnnxExport:
    """What the export driver writes to ONNX and how it checks the file.

    Attributes:
        module: the ``torch.nn.Module`` exported (a wrapper around the model, eval mode).
        example_inputs: tuple of example tensors (one per input name).
        input_names / output_names: ONNX graph names.
        dynamic_axes: ``{name: {axis: label}}`` or ``None`` for fixed shapes.
        metadata: ``metadata_props`` stored in the file (``tao_worker.*``).
        info: extra entries of ``export_info.json`` (input shape, preprocessing, outputs).
        checker: ``checker(onnx_path, task_dir) -> dict`` comparing onnxruntime with PyTorch;
            the dict has ``max_abs_diff`` (what must be below the tolerance),
            ``checked_batch`` and optional notes (``note`` is appended to the status line).
        describe: short text of the input for the SUCCESS message (``"640x640"``).
    """

    module: Any
    example_inputs: tuple
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]] | None
    metadata: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    checker: Callable[[Any, Any], dict[str, Any]] | None = None
    describe: str = ""

    def check(self, onnx_path, task_dir) -> dict[str, Any]:
        """Run the parity check (see ``checker``)."""
        if self.checker is None:
            raise NotImplementedError("the plugin gave no ONNX parity check")
        return self.checker(onnx_path, task_dir)


class NetworkPlugin:
    """Base class of a network plugin (see the module docstring for when each hook runs).

    Class attributes a plugin sets:
        name: TAO network name (``python -m tao_sdk.worker <name> ...``).
        display: human name.
        task: the :class:`tao_sdk.worker.tasks.Task` instance of the network's task.
        checkpoint_prefix: prefix of ``<prefix>model_latest.pth`` (``rtdetr_``, ``dd_``...).
        step_in_checkpoint_name: ``model_epoch_XXX_step_YYYYY.pth`` (else
            ``model_epoch_XXX.pth``).
        launch: ``"torchrun"`` / ``"spawn"`` to override the skill's ``launch`` facts;
            ``None`` (default): from ``skill_info.yaml``.
        backbone_prefix: attribute path of the backbone module (for
            ``model.pretrained_backbone_path``), ``""`` when the network has none.
        pretrained_model_key / pretrained_backbone_key: the spec fields of the whole-model
            and backbone weights a train job starts from (TAO's names for the network:
            ``train.pretrained_model_path`` / ``model.pretrained_backbone_path`` by default).
        unhonoured_table: network-specific additions to :data:`COMMON_UNHONOURED`.
        silent_fields: fields never reported (they cannot change results here).
        trt_outputs: output names a TensorRT engine of this network must have.
        channels_last: the model has a convolutional backbone (channels-last on CUDA; see
            :mod:`tao_sdk.worker.engine.precision`).
        demo_metric: the KPI and direction the demo compares (default: the skill's metric).
    """

    name: str = ""
    display: str = ""
    task: "Task"
    checkpoint_prefix: str = ""
    step_in_checkpoint_name: bool = True
    launch: str | None = None
    backbone_prefix: str = "model.backbone"
    pretrained_model_key: str = "train.pretrained_model_path"
    pretrained_backbone_key: str = "model.pretrained_backbone_path"
    #: TAO checkpoint keys <-> this model's (a :class:`tao_sdk.worker.weights.keymap.KeyMap`;
    #: ``None``: the network reads and writes only the worker's own keys).
    tao_keys: Any = None
    #: NVIDIA's published research checkpoint keys -> this model's (a ``KeyMap``; ``None``: none
    #: is read), tried on bare state dicts by :func:`tao_sdk.worker.weights.read_state_dict`.
    research_keys: Any = None
    #: A state-dict key whose first dimension is the class count (class-head reporting).
    class_count_key: str | None = None
    unhonoured_table: dict[str, tuple] = {}
    silent_fields: frozenset[str] = frozenset()
    trt_outputs: tuple[str, ...] = ()
    #: Convolutional backbone: weights and inputs in channels-last memory format on CUDA.
    channels_last: bool = False
    #: ``(KPI, "max" | "min")`` that ``tao-skills demo`` compares for the untrained and the
    #: trained model; ``None``: the skill's monitoring metric.
    demo_metric: tuple[str, str] | None = None

    # ------------------------------------------------------------------ results contract

    @property
    def latest_link(self) -> str:
        """File name of the latest-checkpoint link (``<prefix>model_latest.pth``)."""
        return f"{self.checkpoint_prefix}model_latest.pth"

    def checkpoint_name(self, epoch: int, step: int, ema: bool = False) -> str:
        """TAO checkpoint file name for ``epoch`` (0-based) and global ``step``:
        ``model_epoch_005.pth`` or ``model_epoch_005_step_01200.pth`` (``-EMA`` for EMA
        weights)."""
        name = f"model_epoch_{epoch:03d}"
        if self.step_in_checkpoint_name:
            name += f"_step_{step:05d}"
        return name + ("-EMA" if ema else "") + ".pth"

    # ------------------------------------------------------------------ model

    def build_arch(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec's ``model`` / ``dataset`` sections -> the architecture record (a plain,
        ``torch.save``-able dict with ``network``, ``num_classes``, ``backbone_desc`` and
        whatever :meth:`build_model` needs). Raises :class:`SpecError` naming the key."""
        raise NotImplementedError

    def build_model(self, arch: dict[str, Any]):
        """A randomly initialised ``torch.nn.Module`` for ``arch``."""
        raise NotImplementedError

    def postprocess_arch(self, spec: dict[str, Any]) -> dict[str, Any]:
        """What running an exported engine needs from the spec (no model is built)."""
        raise NotImplementedError

    def checkpoint_arch(self, ckpt_arch: dict[str, Any], spec_arch: dict[str, Any] | None
                        ) -> dict[str, Any]:
        """The architecture an evaluate / inference / export job rebuilds: the checkpoint's,
        with the spec's post-processing settings applied (default: the checkpoint's as is)."""
        return dict(ckpt_arch)

    def arch_diff(self, ckpt_arch: dict[str, Any], spec_arch: dict[str, Any]) -> list[str]:
        """Human list of architecture differences (``model.num_queries (checkpoint 20, spec
        300)``); empty when the spec builds the checkpoint's model."""
        return []

    def describe(self, arch: dict[str, Any]) -> str:
        """The model part of the start line of ``status.json``."""
        return (f"model: {self.display}, backbone {arch.get('backbone_desc', '-')}, "
                f"{arch.get('num_classes')} classes")

    def is_backbone_param(self, name: str) -> bool:
        """True for a parameter of the backbone (own learning rate, ``train_backbone``)."""
        return bool(self.backbone_prefix) and ".backbone." in f".{name}"

    def param_groups(self, model, spec: dict[str, Any], lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups: ``train.optim.lr`` for the network, ``lr_backbone`` for
        the backbone (default ``lr / 10``)."""
        lr_backbone = float(S.get(spec, "train.optim.lr_backbone", lr * 0.1))
        rest, backbone = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (backbone if self.is_backbone_param(name) else rest).append(p)
        groups = [{"params": rest, "lr": lr}]
        if backbone:
            groups.append({"params": backbone, "lr": lr_backbone})
        return groups

    def lr_factor(self, spec: dict[str, Any], steps_per_epoch: int):
        """A ``step -> learning-rate multiplier`` function for the network's own
        ``train.optim`` schedule keys, or ``None`` for the engine's schedule (``warmup_steps``,
        ``MultiStep`` / ``StepLR`` over ``lr_steps`` / ``lr_step_size``)."""
        return None

    def ddp_find_unused_parameters(self, arch: dict[str, Any]) -> bool:
        """Whether DistributedDataParallel must look for parameters unused in a step."""
        return False

    # ------------------------------------------------------------------ step

    def forward(self, model, batch: dict[str, Any], device, with_labels: bool):
        """Run ``model`` on a collated ``batch`` (moved to ``device``, with
        :func:`to_device`); return its output. The engine runs it under the job's autocast."""
        raise NotImplementedError

    def loss(self, output, arch: dict[str, Any]):
        """The scalar training loss of a :meth:`forward` output (a tensor)."""
        return output.loss

    # ------------------------------------------------------------------ export

    def check_export(self, spec: dict[str, Any]) -> None:
        """The ``export`` section's checks that need no model (torch-free): the plan runs them
        (:func:`tao_sdk.worker.registry.preflight`) and :meth:`onnx_export` runs the same ones,
        so a dry run refuses an export spec with the job's message. Default: none."""

    def onnx_export(self, model, arch: dict[str, Any], spec: dict[str, Any]) -> OnnxExport:
        """What to export (validates the spec's ``export`` section)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ demo / tests / bench

    def tiny_overrides(self, size: int) -> dict[str, Any]:
        """Dotted spec overrides of a small model at ``size`` px that learns the task's
        synthetic data in a few CPU minutes (demo, benchmarks, tests)."""
        raise NotImplementedError

    def demo_plan(self, quick: bool) -> dict[str, Any]:
        """``epochs``, ``n_train``, ``n_val``, ``size`` of ``tao-skills demo`` (``--quick``:
        under 5 minutes on 2 CPU cores in total), and optionally ``overrides``: dotted spec
        overrides of that plan's train job on top of :meth:`demo_train_overrides` (e.g. a
        schedule fit to the plan's few steps; the untrained baseline gets them too)."""
        return ({"epochs": 8, "n_train": 24, "n_val": 8, "size": 128} if quick
                else {"epochs": 40, "n_train": 64, "n_val": 16, "size": 128})

    def demo_train_overrides(self, epochs: int, size: int) -> dict[str, Any]:
        """Spec overrides of the demo's train job: the tiny model, the task's synthetic data
        settings, ``epochs`` with about four validations and checkpoints."""
        return {
            **self.task.demo_overrides("train", size), **self.tiny_overrides(size),
            "dataset.batch_size": 4, "dataset.workers": 1,
            "train.num_epochs": epochs, "train.checkpoint_interval": max(1, epochs // 4),
            "train.validation_interval": max(1, epochs // 4),
            "train.optim.lr": 5e-4, "wandb.enable": False,
        }

    def demo_untrained_overrides(self) -> dict[str, Any]:
        """Overrides turning the demo train job into the untrained baseline: one epoch at a
        learning rate of 1e-12 (weights effectively unchanged; the worker rejects 0)."""
        return {"train.num_epochs": 1, "train.checkpoint_interval": 1,
                "train.validation_interval": 1, "train.optim.lr": 1e-12}

    def demo_distill(self, size: int) -> dict[str, Any] | None:
        """The demo's distillation setup, or ``None`` when the network offers none:
        ``{"student": dotted overrides of a smaller student, "bindings": distill.bindings,
        "epochs": the students' epochs}`` (bound outputs of equal shape in student and teacher;
        ``epochs``: both students', capped at the teacher's; default the teacher's; optional
        ``n_val``: val images of the demo run, so that the students' difference is not noise)."""
        return None

    # ------------------------------------------------------------------ reporting

    def unhonoured(self, action: str, spec: dict[str, Any]) -> list[str]:
        """``dotted=value`` for each spec field set to a value this implementation ignores.

        Only the sections used by ``action`` are looked at (``model``/``dataset`` always,
        plus ``train`` (and ``wandb``, honoured: :mod:`tao_sdk.worker.tracking`) for train,
        ``evaluate`` for evaluate...). Unset
        (``None``/empty) fields are skipped.
        """
        sections = {"model", "dataset", action}
        if action == "train":
            sections.add("wandb")
        table = {**COMMON_UNHONOURED, **self.unhonoured_table}
        out = []
        for key, inactive in table.items():
            if key in self.silent_fields or key.split(".")[0] not in sections:
                continue
            value = S.get(spec, key)
            if value is None or value == "" or value == [] or value in inactive:
                continue
            out.append(f"{key}={value}")
        return out


def backbone_scale() -> str:
    """``full`` (default) or ``tiny``, from env ``TAO_WORKER_BACKBONE_SCALE``: ``tiny`` asks
    a plugin for its smallest backbone of the named family (one narrow block per stage) for
    CPU smoke runs and demos; the scale used is recorded in the checkpoint's ``arch``."""
    import os

    from tao_sdk.worker.errors import SpecError

    value = os.environ.get("TAO_WORKER_BACKBONE_SCALE", "full").strip().lower() or "full"
    if value not in ("full", "tiny"):
        raise SpecError(
            f"environment TAO_WORKER_BACKBONE_SCALE={value!r} is not supported: use 'full' "
            "(the real backbone) or 'tiny' (one narrow block per stage, for CPU smoke runs)"
        )
    return value


def spec_int(spec: dict[str, Any], key: str, default: int) -> int:
    """``spec[key]`` as an int (``3.0`` and ``"3"`` read as 3; ``3.7`` is an error, never truncated):
    :class:`SpecError` naming the key otherwise (:func:`tao_sdk.dotted.as_int`)."""
    from tao_sdk.dotted import as_int
    from tao_sdk.worker.errors import SpecError

    return as_int(S.get(spec, key, default), key, error=SpecError)


def spec_float(spec: dict[str, Any], key: str, default: float) -> float:
    """``spec[key]`` as a float; :class:`SpecError` naming the key otherwise."""
    from tao_sdk.worker.errors import SpecError

    value = S.get(spec, key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{key}={value!r} must be a number") from None


def to_device(tensor, device, channels_last: bool = False):
    """``tensor`` on ``device`` (non-blocking from pinned memory); 4-D image batches in
    channels-last memory format on CUDA when ``channels_last``."""
    import torch

    if channels_last and device.type == "cuda" and tensor.dim() == 4:
        return tensor.to(device, non_blocking=True, memory_format=torch.channels_last)
    return tensor.to(device, non_blocking=True)
