"""Key tables between TAO's checkpoint layout and the worker's own model (no torch import
at module level).

A :class:`KeyMap` is an ordered list of rules. A :class:`Rule` renames one TAO tensor to one
worker tensor; its patterns hold ``{name}`` placeholders (one dotted segment) and ``{name*}``
(several segments); ``shift`` adds an integer to a placeholder going from TAO to the worker
(``{"s": -1}``: TAO's ``layer1`` is the worker's ``stages.0``). A :class:`Fused` rule splits
one TAO tensor into equal parts along dim 0 (``nn.MultiheadAttention``'s ``in_proj_weight``
-> ``q_proj`` / ``k_proj`` / ``v_proj``) and concatenates them back. The first rule whose
TAO pattern matches wins. ``tao_prefix`` / ``worker_prefix`` are prepended to every key on
their side (TAO's Lightning prefix ``model.model.``, transformers' ``model.``).

BatchNorm ``num_batches_tracked`` counters with no worker counterpart (transformers freezes
its backbone's BatchNorms) are dropped going in and, where TAO's network has them
(``bn_counters``), written as 0 going out, so TAO's strict ``load_from_checkpoint`` finds
every key it expects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fused", "KeyMap", "Rule", "NBT"]

#: BatchNorm's step counter buffer (a scalar; not a weight).
NBT = "num_batches_tracked"

_PLACEHOLDER = re.compile(r"\{(\w+)(\*?)\}")


def _compile(pattern: str) -> re.Pattern:
    """Regex of a rule pattern (``{x}`` one segment, ``{x*}`` several)."""
    out, pos = [], 0
    for m in _PLACEHOLDER.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^.]+'})")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out) + r"\Z")


def _fill(pattern: str, groups: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: groups[m.group(1)], pattern)


def _shifted(groups: dict[str, str], shift: dict[str, int], sign: int) -> dict[str, str]:
    out = dict(groups)
    for name, delta in shift.items():
        out[name] = str(int(out[name]) + sign * delta)
    return out


@dataclass(frozen=True)
class Rule:
    """One TAO tensor <-> one worker tensor (see the module docstring)."""

    tao: str
    ours: str
    shift: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tao_re", _compile(self.tao))
        object.__setattr__(self, "_ours_re", _compile(self.ours))

    def to_ours(self, key: str) -> list[str] | None:
        """The worker key(s) of TAO key ``key`` (``None`` when the rule does not apply)."""
        m = self._tao_re.match(key)
        return None if m is None else [_fill(self.ours, _shifted(m.groupdict(), self.shift, 1))]

    def to_tao(self, key: str) -> str | None:
        """The TAO key of worker key ``key`` (``None`` when the rule does not apply)."""
        m = self._ours_re.match(key)
        return None if m is None else _fill(self.tao, _shifted(m.groupdict(), self.shift, -1))


@dataclass(frozen=True)
class Fused(Rule):
    """One TAO tensor <-> several worker tensors, split / concatenated along dim 0;
    ``ours`` holds ``{part}``, filled with each of ``parts``."""

    parts: tuple[str, ...] = ("q", "k", "v")

    def to_ours(self, key: str) -> list[str] | None:
        """The worker keys of the parts of ``key``, in order."""
        m = self._tao_re.match(key)
        if m is None:
            return None
        groups = _shifted(m.groupdict(), self.shift, 1)
        return [_fill(self.ours, {**groups, "part": p}) for p in self.parts]

    def to_tao(self, key: str) -> str | None:
        """The TAO key of the fused tensor that worker key ``key`` is a part of."""
        m = self._ours_re.match(key)
        if m is None or m.group("part") not in self.parts:
            return None
        return _fill(self.tao, _shifted(m.groupdict(), self.shift, -1))


class KeyMap:
    """A network's TAO <-> worker key table (see the module docstring)."""

    def __init__(self, rules: list[Rule], tao_prefix: str, worker_prefix: str,
                 bn_counters: bool = True, tao_backbone: str = "backbone.",
                 aliases: tuple[tuple[str, str], ...] = ()) -> None:
        self.rules = list(rules)
        #: ``(regex, replacement)`` rewrites of an incoming key (below ``tao_prefix``) before the
        #: rules, every one applied: other names a file may give the same tensor (a research
        #: checkpoint's ``.bn.`` / ``.IN.`` for TAO's ``.norm.``); going out, keys are TAO's own
        self.aliases = tuple((re.compile(a), b) for a, b in aliases)
        self.tao_prefix = tao_prefix
        self.worker_prefix = worker_prefix
        #: where TAO's network holds its backbone (below ``tao_prefix``): a backbone PTM's
        #: keys are read as if they were there
        self.tao_backbone = tao_backbone
        #: whether TAO's BatchNorms carry ``num_batches_tracked`` (written as 0 going out;
        #: TAO's frozen BatchNorms drop the counter when loading, so writing one is safe)
        self.bn_counters = bn_counters

    def _rule_for_tao(self, key: str) -> tuple[Rule, list[str]] | None:
        for rule in self.rules:
            ours = rule.to_ours(key)
            if ours is not None:
                return rule, ours
        return None

    def worker_keys(self, tao_key: str) -> list[str] | None:
        """Worker key(s) of a full TAO key (``None``: no rule, or outside the TAO prefix)."""
        if not tao_key.startswith(self.tao_prefix):
            return None
        inner = tao_key[len(self.tao_prefix):]
        for pattern, repl in self.aliases:
            inner = pattern.sub(repl, inner)
        found = self._rule_for_tao(inner)
        return None if found is None else [self.worker_prefix + k for k in found[1]]

    def to_worker(self, tao_sd: dict[str, Any], own: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """Convert a TAO state dict into worker keys.

        ``own`` is the worker model's state dict (for shapes). Returns ``(state dict,
        skipped)`` where ``skipped`` maps a reason to the TAO keys it applies to (``no rule``,
        ``shape mismatch``, ``not in this model``, ``BatchNorm counter``)."""
        out: dict[str, Any] = {}
        skipped: dict[str, list[str]] = {}
        for key, value in tao_sd.items():
            names = self.worker_keys(key)
            reason = _convert_one(key, value, names, own, out)
            if reason:
                skipped.setdefault(reason, []).append(key)
        return out, skipped

    def to_tao(self, worker_sd: dict[str, Any]) -> dict[str, Any]:
        """Convert a worker state dict into TAO's keys (fused tensors concatenated, a zero
        ``num_batches_tracked`` beside every BatchNorm that lacks one). Raises ``KeyError``
        naming a worker key no rule covers."""
        import torch

        out: dict[str, Any] = {}
        parts: dict[str, dict[str, Any]] = {}
        for key, value in worker_sd.items():
            tao_key, rule = self._tao_of(key)
            if isinstance(rule, Fused):
                parts.setdefault(tao_key, {})[key] = value
            else:
                out[tao_key] = value
        for tao_key, got in parts.items():
            order = self.worker_keys(tao_key)
            out[tao_key] = torch.cat([got[k] for k in order], dim=0)
        for key in [k for k in out if k.endswith(".running_var") and self.bn_counters]:
            nbt = key[: -len("running_var")] + NBT
            out.setdefault(nbt, torch.zeros((), dtype=torch.long))
        return out

    def tao_key(self, worker_key: str) -> str | None:
        """The TAO key holding worker tensor ``worker_key`` (``None`` when no rule does)."""
        try:
            return self._tao_of(worker_key)[0]
        except KeyError:
            return None

    def _tao_of(self, key: str) -> tuple[str, Rule]:
        if key.startswith(self.worker_prefix):
            inner = key[len(self.worker_prefix):]
            for rule in self.rules:
                tao = rule.to_tao(inner)
                if tao is not None:
                    return self.tao_prefix + tao, rule
        raise KeyError(f"no TAO key for worker tensor {key!r}")


def _convert_one(key: str, value, names: list[str] | None, own: dict[str, Any],
                 out: dict[str, Any]) -> str | None:
    """Put TAO tensor ``key`` into ``out`` under ``names``; return why not, or ``None``."""
    if not hasattr(value, "shape"):
        return "not a tensor"
    if names is None:
        return "BatchNorm counter" if key.endswith(NBT) else "no rule"
    if any(n not in own for n in names):
        return "BatchNorm counter" if key.endswith(NBT) else "not in this model"
    chunks = value.chunk(len(names), dim=0) if len(names) > 1 else [value]
    if len(chunks) != len(names) or any(tuple(c.shape) != tuple(own[n].shape)
                                        for c, n in zip(chunks, names)):
        return "shape mismatch"
    for name, chunk in zip(names, chunks):
        out[name] = chunk
    return None
