"""The network registry of the worker: network name -> plugin module and the actions it runs.

Registering a network is one line in :data:`REGISTRY` plus its module
``tao_sdk/worker/networks/<name>.py``, which defines ``PLUGIN`` (a
:class:`tao_sdk.worker.plugin.NetworkPlugin`). This module is import-cheap (no torch, no plugin
module import): :data:`tao_sdk.worker.NETWORKS` and :func:`tao_sdk.worker.supports` read the
table only; :func:`get` imports the plugin module when a job needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from tao_sdk.worker.plugin import NetworkPlugin

__all__ = ["ACTIONS", "EXTRA_ACTIONS", "REGISTRY", "names", "actions", "supports", "get",
           "launch_method", "preflight"]

#: The actions every registered network runs through the engine.
ACTIONS = ("train", "evaluate", "inference", "export", "gen_trt_engine")
#: Engine actions a network runs only when registered with them: ``quantize`` needs the task's
#: ``eval_data`` / ``batches`` hooks, ``distill`` a skill that offers it (bindable modules).
EXTRA_ACTIONS = ("distill", "quantize")

#: action -> torch-free ``module:function(spec)`` that refuses at plan time what the worker
#: cannot run here (unknown criterion, a quantization mode whose library is missing...).
_PREFLIGHT = {
    "distill": "tao_sdk.worker.distillation:preflight",
    "quantize": "tao_sdk.worker.quantization:preflight",
}

#: Actions that build the network from the spec's ``model`` section (the backbone must be
#: one the worker builds as TAO does: :mod:`tao_sdk.worker.networks.backbones`).
_BACKBONE_ACTIONS = ("train", "distill")

#: network name -> (plugin module, actions it runs[, model types it builds]). One entry per
#: network.
REGISTRY: dict[str, tuple] = {
    "rtdetr": ("tao_sdk.worker.networks.rtdetr", (*ACTIONS, "distill", "quantize")),
    "deformable_detr": ("tao_sdk.worker.networks.deformable_detr", (*ACTIONS, "quantize")),
    "oneformer": ("tao_sdk.worker.networks.oneformer", ACTIONS),
    # FoundationStereo (with its DepthAnything V2 ViT) runs in the TAO container only
    "depth_net": ("tao_sdk.worker.networks.depth_net", ACTIONS, ("FastFoundationStereo",)),
}


def names() -> tuple[str, ...]:
    """The registered network names, in registration order."""
    return tuple(REGISTRY)


def actions(network: str) -> tuple[str, ...]:
    """The actions the worker runs for ``network`` (``()`` when unknown); the model type is
    checked by the plugin when it builds the model from the spec."""
    entry = REGISTRY.get(network)
    return tuple(entry[1]) if entry is not None else ()


def supports(network: str, action: str, model_type: str | None = None) -> bool:
    """True when the worker runs ``action`` for ``network`` (no import beyond this table); the
    SDK asks it at plan time which backend can run a job (:mod:`tao_sdk.backends`).

    An entry may name, third, the ``model.model_type`` values its plugin builds (``depth_net``
    is shared by TAO's stereo and mono models; the worker runs the stereo ones): then only a
    skill pinning one of them (``model_type`` from its skill_info) is supported."""
    entry = REGISTRY.get(network)
    if entry is None or action not in entry[1]:
        return False
    return len(entry) < 3 or model_type in entry[2]


def preflight(network: str, action: str, spec: dict) -> None:
    """Refuse at plan time (no torch import) a ``spec`` of ``action`` that the worker cannot
    run here; raises :class:`tao_sdk.worker.errors.SpecError` naming the field and the fix, with
    the message the job would fail with. A ``model.backbone`` the worker does not build as TAO
    does is refused with the list it builds (train, distill); train also builds the
    architecture record from the spec (:meth:`NetworkPlugin.build_arch`: every model check the
    job makes before it trains, e.g. Deformable DETR ``model.dec_layers=1`` with
    ``with_box_refine``) and runs the train section's checks (:mod:`tao_sdk.worker.trainspec`:
    intervals, optimiser, schedule); export runs the plugin's :meth:`NetworkPlugin.check_export`;
    distill / quantize run their own checks. Other actions read the
    checkpoint's architecture: nothing to check yet."""
    model = spec.get("model") if isinstance(spec.get("model"), dict) else {}
    if not supports(network, action, model.get("model_type")):  # depth_net: the stereo models
        return
    if action in _BACKBONE_ACTIONS:
        from tao_sdk.worker.networks.backbones import check_backbone

        check_backbone(network, spec)
    if action in _ARCH_ACTIONS:
        from tao_sdk.worker import trainspec

        get(network).build_arch(spec)
        trainspec.preflight(spec, get(network))
    if action == "export":
        get(network).check_export(spec)
    target = _PREFLIGHT.get(action)
    if target is not None:
        module, func = target.split(":")
        getattr(importlib.import_module(module), func)(spec)


#: Actions whose job builds its model from the spec (the plan builds the same ``arch`` record).
_ARCH_ACTIONS = ("train",)


def get(network: str) -> "NetworkPlugin":
    """The plugin of ``network`` (imports its module). Raises :class:`KeyError` with the
    registered names when ``network`` is unknown."""
    entry = REGISTRY.get(network)
    if entry is None:
        raise KeyError(f"unknown network {network!r}: this worker runs {', '.join(REGISTRY)}")
    module = importlib.import_module(entry[0])
    return module.PLUGIN


#: skill_info ``launch.method`` -> the worker's launcher.
_LAUNCHERS = {"torchrun": "torchrun", "lightning": "spawn", "spawn": "spawn"}


def launch_method(network: str) -> str:
    """How a multi-process train job of ``network`` is launched: ``"torchrun"`` or
    ``"spawn"``. The plugin's ``launch`` when it sets one, else the skill's
    ``references/skill_info.yaml`` ``launch.method`` (``torchrun`` / ``lightning``)."""
    from tao_sdk.worker.errors import WorkerError

    plugin = get(network)
    if plugin.launch:
        return plugin.launch
    from tao_sdk.bank import SkillBank

    try:
        info = SkillBank().get(network).info
    except Exception as exc:  # noqa: BLE001 - missing bank / skill: say what to fix
        raise WorkerError(
            f"cannot tell how to launch a multi-process {network} train job: the skill bank "
            f"has no skill for it ({exc}); set TAO_SKILLS_DIR to the bank, or set `launch` in "
            f"the {network} plugin"
        ) from None
    method = str((info.get("launch") or {}).get("method") or "")
    if method not in _LAUNCHERS:
        raise WorkerError(
            f"skill_info.yaml of {network} has launch.method={method!r}; the worker launches "
            f"{', '.join(sorted(_LAUNCHERS))}: regenerate the bank (tools/gen_schemas.py)"
        )
    return _LAUNCHERS[method]
