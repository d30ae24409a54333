"""Weights files of every layout the worker reads, turned into the worker model's state dict.

Layouts (see ``references/results-contract.md``):

- ``worker``: a checkpoint of this worker (``format`` = :data:`CHECKPOINT_FORMAT`, with its
  ``arch`` record); its ``state_dict`` is in TAO's keys when ``state_dict_layout`` is
  ``"tao"`` (what the worker writes now), else in the worker's own keys (older files,
  quantized checkpoints).
- ``tao``: TAO's Lightning checkpoint (``state_dict`` with TAO's prefixes, ``tao_model``,
  ``pytorch-lightning_version``; the ``-EMA`` files too), converted with the network's key
  table (:attr:`NetworkPlugin.tao_keys`).
- ``state-dict``: a bare state dict (or ``{"state_dict" | "model": ...}``): TAO's inner
  modules' keys, a TAO backbone PTM (``conv1.weight``, ``layer1...``, optionally under
  ``model.`` / ``backbone.`` / ``module.``), a Hugging Face / worker state dict, or NVIDIA's
  research checkpoint of the network where the plugin has a rename table for it
  (:attr:`research_keys`: FastFoundationStereo's ``model_best_bp2*.pth``, a state dict or a
  whole pickled model, read without importing its classes). Evaluate / inference / export
  read such a file as layout ``research`` (:func:`checkpoint_state`), as TAO's own scripts do.

An encrypted TAO checkpoint (``state_dict_encrypted``) is refused: NVIDIA's decryption is
not public.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from tao_sdk.worker.errors import WorkerError
from tao_sdk.worker.weights.files import hf_renamed, module_state_dict, read_weights_file
from tao_sdk.worker.weights.keymap import NBT

__all__ = ["CHECKPOINT_FORMAT", "COUNTER", "LoadReport", "checkpoint_state", "file_state_dict",
           "load_weights", "read_state_dict", "refuse_encrypted", "tao_state"]

#: Tag stored in every checkpoint this worker writes.
CHECKPOINT_FORMAT = "tao-skill-bank-worker/1"
#: Prefixes PTMs put before TAO's backbone keys (stripped when looking for a backbone).
_PTM_PREFIXES = ("module.", "model.", "backbone.")
COUNTER = "BatchNorm counter"


@dataclass
class LoadReport:
    """What a weights load did: tensors loaded, skipped (by reason) and left initial."""

    source: str
    layout: str
    loaded: int
    total: int
    skipped: dict[str, list[str]] = field(default_factory=dict)
    initial: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the class heads did not load because the file has another class count
    class_heads_differ: bool = False

    def message(self) -> str:
        """One line for the job log / status.json."""
        skipped = {r: k for r, k in self.skipped.items() if r != COUNTER}
        parts = [f"loaded {self.loaded} of {self.total} tensors from {self.source} "
                 f"({self.layout} layout)"]
        if skipped:
            parts.append("skipped " + ", ".join(f"{len(k)} ({r}, e.g. {k[0]})"
                                                for r, k in skipped.items()))
        if self.initial:
            parts.append(f"{len(self.initial)} left at their initial values "
                         f"(e.g. {self.initial[0]})")
        return "; ".join(parts + self.notes)

    def as_dict(self) -> dict[str, Any]:
        """Counts for status.json / the job result (key names only as examples)."""
        return {"source": self.source, "layout": self.layout, "loaded": self.loaded,
                "total": self.total,
                "skipped": {r: len(k) for r, k in self.skipped.items()},
                "initial": len(self.initial), "notes": list(self.notes)}


def refuse_encrypted(data: Any, path, what: str) -> None:
    """Raise when ``data`` is an encrypted TAO checkpoint."""
    if isinstance(data, dict) and data.get("state_dict_encrypted"):
        raise WorkerError(
            f"{what}: {path} is an encrypted TAO checkpoint (state_dict_encrypted); NVIDIA's "
            "decryption is not public, so the worker cannot read it. Load it in the TAO "
            "release that wrote it and save it without encryption_key, or use an "
            "unencrypted checkpoint")


def file_state_dict(data: Any, path, what: str) -> tuple[str, dict[str, Any]]:
    """``(layout, state dict)`` of a file's content (see the module docstring)."""
    refuse_encrypted(data, path, what)
    pickled = module_state_dict(data)
    if pickled is not None:  # a whole pickled model (research ``*_serialize.pth``)
        return "state-dict", pickled
    if not isinstance(data, dict):
        raise WorkerError(f"{what}: {path} holds no state dict")
    if data.get("format") == CHECKPOINT_FORMAT:
        return ("tao" if data.get("state_dict_layout") == "tao" else "worker",
                data["state_dict"])
    for key in ("state_dict", "model"):
        if isinstance(data.get(key), dict):
            tao = "tao_model" in data or "pytorch-lightning_version" in data
            return ("tao" if tao else "state-dict"), data[key]
    return "state-dict", data


def _candidates(layout: str, sd: dict[str, Any], keymap, backbone: bool):
    """``(description, TAO-keyed dict | None for worker keys)`` readings of ``sd``."""
    if layout == "worker" or keymap is None:
        yield layout, None
        return
    if layout == "tao":
        yield layout, sd
        return
    yield "state-dict (worker keys)", None
    segs = keymap.tao_prefix.split(".")[:-1]
    for n in range(len(segs), -1, -1):  # TAO's inner module, ..., the Lightning module
        add = "".join(s + "." for s in segs[:n])
        yield (f"state-dict (TAO keys{' less ' + add if add else ''})",
               {add + k: v for k, v in sd.items()})
    if backbone:
        def bare(k: str) -> str:
            while k.startswith(_PTM_PREFIXES):
                k = k.split(".", 1)[1]
            return k
        yield "TAO backbone PTM", {f"{keymap.tao_prefix}{keymap.tao_backbone}{bare(k)}": v
                                   for k, v in sd.items()}


def _research_candidates(layout: str, sd: dict[str, Any], plugin):
    """``(description, research-keyed dict, key table)`` readings of a bare state dict as
    NVIDIA's published research checkpoint of the network (``plugin.research_keys``; with and
    without the ``model.`` / ``module.`` prefixes it may carry)."""
    table = getattr(plugin, "research_keys", None)
    if table is None or layout != "state-dict":
        return
    yield "research checkpoint", research_bare(sd), table


def research_bare(sd: dict[str, Any]) -> dict[str, Any]:
    """A research checkpoint's state dict without the ``model.`` / ``module.`` wrappers
    (Lightning, DDP) it may carry."""
    def bare(k: str) -> str:
        while k.startswith(("module.", "model.")):
            k = k.split(".", 1)[1]
        return k
    return {bare(k): v for k, v in sd.items()}


def _as_worker(sd: dict[str, Any], own: dict[str, Any], prefix: str
               ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Worker-keyed ``sd`` matched against ``own`` (shapes; within ``prefix``)."""
    out: dict[str, Any] = {}
    skipped: dict[str, list[str]] = {}
    for key, value in sd.items():
        if not hasattr(value, "shape"):
            continue
        name = key if key in own else (f"{prefix}.{key}" if prefix else key)
        if name not in own or (prefix and not name.startswith(prefix)):
            reason = COUNTER if key.endswith(NBT) else "not in this model"
        elif tuple(own[name].shape) != tuple(value.shape):
            reason = "shape mismatch"
        else:
            out[name] = value
            continue
        skipped.setdefault(reason, []).append(key)
    return out, skipped


def read_state_dict(path: str | os.PathLike[str], plugin, model, what: str, prefix: str = ""
                    ) -> tuple[dict[str, Any], LoadReport]:
    """Read any supported weights file into ``model``'s keys (nothing copied yet).

    ``prefix`` (``"model.backbone"``) restricts the load to that module (backbone PTMs).
    Returns ``(state dict in the worker's keys, report)``; the reading (layout and key
    convention) that matches the most tensors is used."""
    layout, sd = file_state_dict(read_weights_file(path, what), path, what)
    own = model.state_dict()
    if prefix:
        own = {k: v for k, v in own.items() if k.startswith(prefix)}
    keymap = getattr(plugin, "tao_keys", None)
    best = None
    for desc, tao_sd in _candidates(layout, sd, keymap, bool(prefix)):
        if tao_sd is None:
            got, skipped = _as_worker(hf_renamed(model, sd), own, prefix)
        else:
            got, skipped = keymap.to_worker(tao_sd, own)
        if best is None or len(got) > len(best[1]):
            best = (desc, got, skipped)
    for desc, research_sd, table in _research_candidates(layout, sd, plugin):
        got, skipped = table.to_worker(research_sd, own)
        if len(got) > len(best[1]):
            best = (desc, got, skipped)
    desc, got, skipped = best
    total = sum(1 for v in sd.values() if hasattr(v, "shape"))
    report = LoadReport(str(path), desc, len(got), total, skipped,
                        sorted(k for k in own if k not in got and not k.endswith(NBT)))
    note = _class_note(plugin, got, own, sd, keymap)
    if note:
        report.notes.append(note)
        report.class_heads_differ = True
    return got, report


def _class_note(plugin, got: dict, own: dict, sd: dict, keymap) -> str | None:
    """Say so when the class heads could not load because the class counts differ."""
    key = getattr(plugin, "class_count_key", None)
    if not key or key not in own or key in got:
        return None
    theirs = None
    tao_key = keymap.tao_key(key) if keymap is not None else None
    for cand in (key, tao_key):
        if cand and cand in sd and hasattr(sd[cand], "shape"):
            theirs = int(sd[cand].shape[0])
    if theirs is None or theirs == int(own[key].shape[0]):
        return None
    return (f"class heads reinitialised: the checkpoint has {theirs} classes, this model "
            f"{int(own[key].shape[0])} (dataset.num_classes)")


def load_weights(model, path, plugin, what: str, prefix: str = "") -> LoadReport:
    """Copy the matching tensors of the weights file at ``path`` into ``model``; return the
    report. Raises :class:`WorkerError` when nothing matches (wrong file for this network /
    backbone)."""
    import torch

    got, report = read_state_dict(path, plugin, model, what, prefix)
    if not got:
        raise WorkerError(
            f"{what}: no tensor of {path} matches this {'backbone' if prefix else 'model'} "
            f"({report.message()}); use weights of the same architecture (model.backbone, "
            "TAO_WORKER_BACKBONE_SCALE) or leave the field empty")
    own = model.state_dict()
    with torch.no_grad():
        for key, value in got.items():
            own[key].copy_(value)
    return report


def checkpoint_state(ckpt: dict, plugin, model, what: str, key: str = "state_dict"
                     ) -> dict[str, Any]:
    """``ckpt[key]`` in ``model``'s keys, for a strict load (evaluate / resume / teacher).
    Raises :class:`WorkerError` naming the TAO tensors that have no place in ``model``."""
    sd = ckpt[key]
    if ckpt.get("layout") == "research":
        return _research_state(sd, plugin, model, what)
    if ckpt.get("layout") != "tao":
        return sd
    keymap = getattr(plugin, "tao_keys", None)
    if keymap is None:
        raise WorkerError(f"{what}: the worker has no TAO key table for {plugin.name} yet; use "
                          "a checkpoint written by this worker")
    out, skipped = keymap.to_worker(sd, model.state_dict())
    bad = {r: k for r, k in skipped.items() if r != COUNTER}
    if bad:
        raise WorkerError(
            f"{what}: the TAO checkpoint does not fit the model the spec builds ("
            + "; ".join(f"{len(k)} {r}, e.g. {k[0]}" for r, k in bad.items())
            + "); set the spec's model section (model.backbone, sizes) and dataset.num_classes "
            "to those the checkpoint was trained with")
    return out


def _research_state(sd: dict[str, Any], plugin, model, what: str) -> dict[str, Any]:
    """A research checkpoint in ``model``'s keys for a strict load: every parameter from the
    file (:attr:`research_keys`), buffers it lacks (constants such as FastFoundationStereo's
    ``dx``) at the values the model builds. Raises :class:`WorkerError` naming what does not fit."""
    own = model.state_dict()
    out, skipped = plugin.research_keys.to_worker(research_bare(sd), own)
    bad = {r: k for r, k in skipped.items() if r != COUNTER}
    buffers = {name for name, _b in model.named_buffers()}
    missing = [k for k in own if k not in out and not (k in buffers or k.endswith(NBT))]
    if bad or missing:
        found = [f"{len(k)} {r}, e.g. {k[0]}" for r, k in bad.items()]
        found += [f"{len(missing)} missing, e.g. {missing[0]}"] if missing else []
        raise WorkerError(
            f"{what}: the research checkpoint does not fit the model the spec builds ("
            + "; ".join(found) + "); set the spec's model section to the settings the checkpoint "
            "was trained with (the skill's template holds bp2's)")
    return {**{k: v for k, v in own.items() if k not in out}, **out}


def tao_state(plugin, state_dict: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(layout, state dict)`` to write: TAO's keys when the network has a key table."""
    keymap = getattr(plugin, "tao_keys", None)
    if keymap is None:
        return "worker", state_dict
    return "tao", keymap.to_tao(state_dict)
