"""AutoML search space built from a packaged train schema.

>>> from tao_sdk.automl.space import SearchSpace
>>> space = SearchSpace.from_file("skills/tao-train-rtdetr/schemas/train.schema.json")
>>> [d.name for d in space.dims][:3]
['dataset.augmentation.distortion_prob', 'dataset.augmentation.iou_crop_prob', 'dataset.batch_size']
>>> params = space.sample(rng)              # {dotted path: value}, every constraint satisfied
>>> spec = apply_params(base_spec, params)  # nested train spec for one trial

Which fields are searched (the *default set*)
---------------------------------------------
``automl_default_parameters`` of the schema, minus

1. every path listed in ``automl_disabled_parameters``; a listed *collection* disables every
   field below it (``dataset.val_dataset.augmentation`` disables all its probabilities);
2. every field whose own node says ``automl_enabled: false``;
3. every field matched by :data:`NEVER_SEARCHED_RULES` (test-time augmentation, evaluation /
   inference / validation settings, data-loader workers, GPU / node placement, seeds, and the
   epoch / checkpoint / validation schedule that the AutoML controller sets per trial);
4. fields that cannot be searched (no numeric bounds and no enum, lists, free strings): these are
   reported in :attr:`SearchSpace.skipped` with the reason, never silently dropped.

How a field becomes a dimension
-------------------------------
* ``enum`` of ints / ``tao_value_type: ordered_int`` -> :class:`OrderedIntDim`;
  other enums -> :class:`CategoricalDim` (``option_weights`` = sampling prior); booleans ->
  :class:`BoolDim`.
* integers -> :class:`IntDim` (``math_cond "/ k"``: multiples of k), ``math_cond "^ k"`` ->
  :class:`OrderedIntDim` of the powers of k in range. Integer ranges with ``high/low >= 100``
  are searched on a log scale.
* floats -> :class:`FloatDim`. A strictly positive float (``minimum > 0`` or ``math_cond "> 0"``)
  whose default is small against its maximum (``default * 100 <= maximum``) or whose name is a
  learning rate / weight decay / epsilon is searched on a **log scale** over
  ``[default / 100, default * 100]`` clipped to the schema bounds (4 decades centred on the
  template default), as long as that spans at least 2 decades.
* A missing / infinite maximum (TAO writes ``tao_valid_max: "inf"``) is replaced, for fields of
  the default set only, by ``2 * default`` for integers and ``10 * default`` for linear floats.
  Fields added with ``include`` must have finite bounds in the schema or in ``overrides``.
* ``math_cond`` comparisons (``"> 0.0"``, ``">= 1"``, ``"< 50"``, ``"!= 0"``) tighten the
  bounds; ``"> depends_on"`` (and ``>=``, ``<``, ``<=``) make the field relative to the value
  sampled for its ``depends_on`` field; ``depends_on`` always orders sampling (topological).
* DETR-family rule: when a ``num_select`` field and a ``num_queries`` field exist,
  ``num_select <= num_queries`` and ``num_select < num_queries * num_classes`` (``num_classes``
  read from the base spec / template).

Relative constraints are honoured by construction: a dependent field is sampled (and decoded
from the unit cube) inside the range left by its parents, so every point of the unit cube maps to
a valid configuration.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..dotted import MISSING, get_path, set_path
from ..errors import BankFormatError, TaoSkillsError

__all__ = [
    "Dimension", "FloatDim", "IntDim", "OrderedIntDim", "CategoricalDim", "BoolDim", "Constraint",
    "SearchSpace", "NEVER_SEARCHED_RULES", "never_searched_reason", "apply_params",
    "DEFAULT_SET_TOKEN",
]

#: Put this token in ``include`` to keep the schema's default set and add fields to it.
DEFAULT_SET_TOKEN = "@default"

#: Fields never searched, whatever the schema says: (rule name, regex on ONE path segment, why).
#: A field is excluded when any segment of its dotted path matches. ``include`` cannot add them.
NEVER_SEARCHED_RULES: tuple[tuple[str, str, str], ...] = (
    ("test-time augmentation", r"(^|_)tta($|_)|test_time",
     "test-time augmentation changes how a model is evaluated, not how it is trained"),
    ("evaluation-time setting", r"^(test|val|valid|validation|eval|evaluate|evaluation|infer|inference)($|_)",
     "evaluation / validation / inference settings would make trials incomparable"),
    ("data-loader workers", r"(^|_)workers?$",
     "worker counts change speed, not the model"),
    ("device placement", r"gpu|(^|_)nodes?($|_)|^device",
     "GPU / node placement is set by the platform, not searched"),
    ("random seed", r"(^|_)seed($|_)",
     "seeds are not hyperparameters"),
    ("trial schedule", r"^(num_epochs|max_epochs|checkpoint_interval.*|validation_interval|val_check_interval|"
                       r"max_iter|iters_per_epoch|resume.*)$",
     "the AutoML controller sets each trial's epoch budget and checkpoint / validation schedule"),
    ("non-train section", r"^(export|gen_trt_engine|quantize|distill|prune|retrain|wandb)$",
     "only the train section is searched"),
)
_NEVER_RE = [(name, re.compile(rx), why) for name, rx, why in NEVER_SEARCHED_RULES]

#: Leaf names searched on a log scale when positive, whatever their default.
_LOG_NAME_RE = re.compile(r"^(lr|learning_rate|base_lr|min_lr|max_lr|weight_decay|wd|eps|epsilon)$|"
                          r"(^|_)lr$|^lr_(backbone|head|min|max)$|_weight_decay$")

_MATH_COND_RE = re.compile(r"(>=|<=|!=|==|>|<|\^|/)\s*(depends_on|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf)")

_UNBOUNDED_INT_FACTOR = 2
_UNBOUNDED_FLOAT_FACTOR = 10.0
_LOG_HALF_SPAN = 100.0          # log dims span default / 100 .. default * 100
_MIN_LOG_RATIO = 100.0          # ... when that covers at least 2 decades


def never_searched_reason(path: str) -> str | None:
    """Why ``path`` (dotted) is never searched by AutoML, or None when it may be searched.

    Applies :data:`NEVER_SEARCHED_RULES` segment by segment, e.g.
    ``never_searched_reason("dataset.workers")`` -> ``"data-loader workers: worker counts ..."``.
    """
    for seg in path.split("."):
        for name, rx, why in _NEVER_RE:
            if rx.search(seg):
                return f"{name}: {why}"
    return None


# --------------------------------------------------------------------------------------------
# rng helpers: accept numpy Generators, random.Random or an int seed


def _as_rng(rng: Any) -> Any:
    if rng is None:
        return random.Random()
    if isinstance(rng, int):
        return random.Random(rng)
    if not hasattr(rng, "random"):
        raise TaoSkillsError("rng must be a numpy.random.Generator, random.Random or an int seed")
    return rng


def _uniform(rng: Any) -> float:
    return float(rng.random())


def _weighted_index(rng: Any, weights: Sequence[float]) -> int:
    total = float(sum(weights))
    u = _uniform(rng) * total
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        if u < acc:
            return i
    return len(weights) - 1


# --------------------------------------------------------------------------------------------
# constraints and dimensions


@dataclass(frozen=True)
class Constraint:
    """``value <op> mult * value_of(ref)``; op in ``<, <=, >, >=``. ``why`` is shown to users."""

    op: str
    ref: str
    mult: float = 1.0
    why: str = ""

    def describe(self) -> str:
        """Human form, e.g. ``"<= model.num_queries"`` or ``"< 80 * model.num_queries"``."""
        m = "" if self.mult == 1 else f"{self.mult:g} * "
        return f"{self.op} {m}{self.ref}"


@dataclass
class Dimension:
    """One searched field. ``name`` is its dotted spec path; ``default`` the template value.

    ``source`` is ``"default"`` (in the schema's default set) or ``"include"`` (added by the user).
    ``constraints`` relate it to other fields (see :class:`Constraint`).
    """

    name: str
    default: Any = None
    source: str = "default"
    constraints: tuple[Constraint, ...] = ()
    depends_on: tuple[str, ...] = ()

    kind = "dimension"
    categorical = False   # kernels treat the coordinate as unordered (Hamming distance)

    def refs(self) -> tuple[str, ...]:
        """Fields that must be decided before this one."""
        return tuple(dict.fromkeys(list(self.depends_on) + [c.ref for c in self.constraints]))

    # subclasses implement the rest
    def sample(self, rng: Any, lo: float | None = None, hi: float | None = None) -> Any:
        """A random value (numeric dims: uniform in the unit encoding, i.e. log-uniform on log dims)."""
        raise NotImplementedError

    def from_unit(self, u: float, lo: float | None = None, hi: float | None = None) -> Any:
        """The value encoded by ``u`` in [0, 1] (``lo``/``hi``: extra bounds from constraints)."""
        raise NotImplementedError

    def to_unit(self, value: Any, lo: float | None = None, hi: float | None = None) -> float:
        """Encode ``value`` into [0, 1] (inverse of :meth:`from_unit`, clamped)."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        """True when ``value`` is an allowed value of this dimension (constraints aside)."""
        raise NotImplementedError

    def row(self) -> dict[str, Any]:
        """One :meth:`SearchSpace.describe` row."""
        return {"name": self.name, "kind": self.kind, "scale": "", "low": None, "high": None,
                "choices": None, "weights": None, "default": self.default, "source": self.source,
                "constraints": [c.describe() for c in self.constraints]}


def _clamp01(u: float) -> float:
    u = float(u)
    if not math.isfinite(u):
        return 0.5
    return 0.0 if u < 0 else 1.0 if u > 1 else u


@dataclass
class FloatDim(Dimension):
    """Real-valued field in ``[low, high]``; ``log=True`` searches ``log(value)`` uniformly."""

    low: float = 0.0
    high: float = 1.0
    log: bool = False
    kind = "float"

    def _range(self, lo: float | None, hi: float | None) -> tuple[float, float]:
        a = self.low if lo is None else max(self.low, lo)
        b = self.high if hi is None else min(self.high, hi)
        if a > b:  # constraint unsatisfiable inside own bounds: stay as close as possible
            a = b = min(max(a, self.low), self.high)
        return a, b

    def from_unit(self, u, lo=None, hi=None):
        a, b = self._range(lo, hi)
        u = _clamp01(u)
        if self.log:
            v = math.exp(math.log(a) + u * (math.log(b) - math.log(a)))
        else:
            v = a + u * (b - a)
        return float(min(max(v, a), b))

    def to_unit(self, value, lo=None, hi=None):
        a, b = self._range(lo, hi)
        if value is None or b <= a:
            return 0.5
        v = float(value)
        if self.log:
            if v <= 0:
                return 0.0
            return _clamp01((math.log(v) - math.log(a)) / (math.log(b) - math.log(a)))
        return _clamp01((v - a) / (b - a))

    def sample(self, rng, lo=None, hi=None):
        return self.from_unit(_uniform(_as_rng(rng)), lo, hi)

    def contains(self, value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and self.low <= float(value) <= self.high

    def row(self):
        r = super().row()
        r.update(scale="log" if self.log else "linear", low=self.low, high=self.high)
        return r


@dataclass
class IntDim(Dimension):
    """Integer field in ``[low, high]`` on a grid of ``step`` (``math_cond "/ k"``); optional log scale."""

    low: int = 0
    high: int = 1
    step: int = 1
    log: bool = False
    kind = "int"

    def _range(self, lo, hi) -> tuple[int, int]:
        a = self.low if lo is None else max(self.low, _ceil_to(lo, self.step, self.low))
        b = self.high if hi is None else min(self.high, _floor_to(hi, self.step, self.low))
        if a > b:
            a = b = min(max(a, self.low), self.high)
        return a, b

    def from_unit(self, u, lo=None, hi=None):
        a, b = self._range(lo, hi)
        u = _clamp01(u)
        if self.log and self.step == 1 and a >= 1 and b > a:
            la, lb = math.log(a - 0.5), math.log(b + 0.5)
            v = int(round(math.exp(la + u * (lb - la))))
        else:
            n = (b - a) // self.step + 1
            v = a + min(n - 1, int(u * n)) * self.step
        return int(min(max(v, a), b))

    def to_unit(self, value, lo=None, hi=None):
        a, b = self._range(lo, hi)
        if value is None or b <= a:
            return 0.5
        v = float(value)
        if self.log and self.step == 1 and a >= 1:
            la, lb = math.log(a - 0.5), math.log(b + 0.5)
            return _clamp01((math.log(max(v, 0.5)) - la) / (lb - la))
        n = (b - a) // self.step + 1
        idx = min(max(round((v - a) / self.step), 0), n - 1)
        return _clamp01((idx + 0.5) / n)

    def sample(self, rng, lo=None, hi=None):
        return self.from_unit(_uniform(_as_rng(rng)), lo, hi)

    def contains(self, value):
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high \
            and (value - self.low) % self.step == 0

    def row(self):
        r = super().row()
        r.update(scale="log" if self.log else "linear", low=self.low, high=self.high)
        if self.step != 1:
            r["constraints"] = [f"multiple of {self.step}"] + r["constraints"]
        return r


def _ceil_to(x: float, step: int, base: int) -> int:
    return int(base + math.ceil((x - base) / step - 1e-12) * step)


def _floor_to(x: float, step: int, base: int) -> int:
    return int(base + math.floor((x - base) / step + 1e-12) * step)


@dataclass
class OrderedIntDim(Dimension):
    """Integer field restricted to ordered ``values`` (an int enum, or powers from ``math_cond "^ k"``)."""

    values: tuple[int, ...] = ()
    weights: tuple[float, ...] | None = None
    kind = "ordered_int"

    def _allowed(self, lo, hi) -> list[int]:
        vals = [v for v in self.values if (lo is None or v >= lo) and (hi is None or v <= hi)]
        if not vals:  # unsatisfiable: the value closest to the feasible side
            target = lo if lo is not None else hi
            vals = [min(self.values, key=lambda v: abs(v - target))]
        return vals

    def from_unit(self, u, lo=None, hi=None):
        vals = self._allowed(lo, hi)
        return int(vals[min(len(vals) - 1, int(_clamp01(u) * len(vals)))])

    def to_unit(self, value, lo=None, hi=None):
        vals = self._allowed(lo, hi)
        if value is None:
            return 0.5
        idx = min(range(len(vals)), key=lambda i: abs(vals[i] - float(value)))
        return (idx + 0.5) / len(vals)

    def sample(self, rng, lo=None, hi=None):
        rng = _as_rng(rng)
        vals = self._allowed(lo, hi)
        if self.weights:
            w = [self.weights[self.values.index(v)] for v in vals]
            if sum(w) > 0:
                return int(vals[_weighted_index(rng, w)])
        return int(vals[min(len(vals) - 1, int(_uniform(rng) * len(vals)))])

    def contains(self, value):
        return not isinstance(value, bool) and value in self.values

    def row(self):
        r = super().row()
        r.update(scale="ordinal", low=min(self.values), high=max(self.values), choices=list(self.values),
                 weights=list(self.weights) if self.weights else None)
        return r


@dataclass
class CategoricalDim(Dimension):
    """Field chosen among ``choices`` (``weights``: TAO's ``option_weights`` sampling prior).

    ``ordered=True`` (TAO ``ordered`` type) lets kernels treat the choice index as ordinal.
    """

    choices: tuple[Any, ...] = ()
    weights: tuple[float, ...] | None = None
    ordered: bool = False
    kind = "categorical"

    @property
    def categorical(self) -> bool:  # type: ignore[override]
        """True unless the choices are ordered (TAO ``ordered`` type)."""
        return not self.ordered

    def from_unit(self, u, lo=None, hi=None):
        return self.choices[min(len(self.choices) - 1, int(_clamp01(u) * len(self.choices)))]

    def to_unit(self, value, lo=None, hi=None):
        try:
            idx = self.choices.index(value)
        except ValueError:
            return 0.5
        return (idx + 0.5) / len(self.choices)

    def sample(self, rng, lo=None, hi=None):
        rng = _as_rng(rng)
        if self.weights and sum(self.weights) > 0:
            return self.choices[_weighted_index(rng, self.weights)]
        return self.choices[min(len(self.choices) - 1, int(_uniform(rng) * len(self.choices)))]

    def contains(self, value):
        return value in self.choices

    def row(self):
        r = super().row()
        r.update(scale="ordinal" if self.ordered else "nominal", choices=list(self.choices),
                 weights=list(self.weights) if self.weights else None)
        return r


@dataclass
class BoolDim(Dimension):
    """Boolean field (``p_true``: prior probability of True when sampling)."""

    p_true: float = 0.5
    kind = "bool"
    categorical = True

    def from_unit(self, u, lo=None, hi=None):
        return bool(_clamp01(u) >= 0.5)

    def to_unit(self, value, lo=None, hi=None):
        return 0.75 if value else 0.25

    def sample(self, rng, lo=None, hi=None):
        return bool(_uniform(_as_rng(rng)) < self.p_true)

    def contains(self, value):
        return isinstance(value, bool)

    def row(self):
        r = super().row()
        r.update(scale="nominal", choices=[False, True])
        return r




# --------------------------------------------------------------------------------------------
# schema reading


def _branches(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out = [node]
    for key in ("anyOf", "oneOf"):
        out += [b for b in node.get(key, []) if isinstance(b, dict)]
    return out


def _children(node: Mapping[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for b in _branches(node):
        p = b.get("properties")
        if isinstance(p, dict):
            for k, v in p.items():
                props.setdefault(k, v)
    return props


def _walk(node: Mapping[str, Any], prefix: str = ""):
    """Yield (dotted path, node, is_collection) depth first."""
    for name, child in _children(node).items():
        if not isinstance(child, dict):
            continue
        path = f"{prefix}.{name}" if prefix else name
        sub = _children(child)
        yield path, child, bool(sub)
        if sub:
            yield from _walk(child, path)


def _json_types(node: Mapping[str, Any]) -> set[str]:
    types: set[str] = set()
    for b in _branches(node):
        t = b.get("type")
        if isinstance(t, str):
            types.add(t)
        elif isinstance(t, list):
            types.update(x for x in t if isinstance(x, str))
    types.discard("null")
    return types


def _num(x: Any) -> float | None:
    """A finite number from a schema bound, or None (missing, 'inf', Infinity)."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, str):
        try:
            x = float(x)
        except ValueError:
            return None
    if isinstance(x, (int, float)) and math.isfinite(x):
        return float(x)
    return None




@dataclass
class _Field:
    path: str
    node: dict
    is_collection: bool


@dataclass
class _Bounds:
    low: float | None = None
    high: float | None = None
    low_excl: bool = False
    high_excl: bool = False
    not_equal: list[float] = field(default_factory=list)
    multiple_of: int | None = None
    power_of: int | None = None
    relations: list[tuple[str, str]] = field(default_factory=list)   # (op, dotted ref)


def _parse_math_cond(path: str, cond: Any, depends_on: str | None) -> _Bounds:
    b = _Bounds()
    if cond in (None, ""):
        return b
    text = str(cond).strip()
    matches = list(_MATH_COND_RE.finditer(text))
    leftover = _MATH_COND_RE.sub("", text).strip()
    if not matches or leftover:
        raise BankFormatError(f"{path}: math_cond {text!r} is not understood (expected e.g. '^ 2', '/ 8', "
                              "'> 0.0', '> depends_on'); fix the schema generator or exclude the field")
    for m in matches:
        op, arg = m.group(1), m.group(2)
        if arg == "depends_on":
            if not depends_on:
                raise BankFormatError(f"{path}: math_cond {text!r} refers to depends_on but the field has none")
            if op not in (">", ">=", "<", "<="):
                raise BankFormatError(f"{path}: math_cond {text!r}: only > >= < <= can relate to depends_on")
            b.relations.append((op, depends_on))
            continue
        val = float(arg)
        if op == "^":
            b.power_of = int(val)
        elif op == "/":
            b.multiple_of = int(val)
        elif op in (">", ">="):
            if b.low is None or val >= b.low:
                b.low, b.low_excl = val, op == ">"
        elif op in ("<", "<="):
            if b.high is None or val <= b.high:
                b.high, b.high_excl = val, op == "<"
        elif op == "!=":
            b.not_equal.append(val)
        # "==" pins nothing useful for search; ignored on purpose
    return b


# --------------------------------------------------------------------------------------------
# the space


class SearchSpace:
    """Typed, ordered AutoML search space; build it with :meth:`from_schema` / :meth:`from_file`.

    Attributes:
        dims: the :class:`Dimension` objects in sampling (topological) order.
        constants: values of non-searched fields that constraints refer to (e.g. ``dataset.num_classes``).
        skipped: ``[(path, reason)]`` for default-set fields that are not searched.
    """

    def __init__(self, dims: Sequence[Dimension], constants: Mapping[str, Any] | None = None,
                 skipped: Iterable[tuple[str, str]] = ()):
        self.dims: tuple[Dimension, ...] = tuple(_toposort(list(dims)))
        self.constants: dict[str, Any] = dict(constants or {})
        self.skipped: list[tuple[str, str]] = list(skipped)
        self._by_name = {d.name: d for d in self.dims}

    # ---- container protocol
    def __len__(self) -> int:
        return len(self.dims)

    def __iter__(self):
        return iter(self.dims)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Dimension:
        try:
            return self._by_name[name]
        except KeyError:
            raise TaoSkillsError(_unknown_msg(name, list(self._by_name), "searched parameter")) from None

    @property
    def names(self) -> list[str]:
        """Dotted paths of the searched fields, in sampling order."""
        return [d.name for d in self.dims]

    @property
    def categorical_mask(self) -> list[bool]:
        """Per unit-cube coordinate: True when the coordinate is an unordered choice."""
        return [bool(d.categorical) for d in self.dims]

    def unit_levels(self) -> list[list[float] | None]:
        """Per coordinate: the allowed unit values of an unordered choice (``None`` for ordered dims).

        Model-based algorithms draw categorical coordinates from these levels so that equal
        choices have exactly equal coordinates.
        """
        out: list[list[float] | None] = []
        for d in self.dims:
            if isinstance(d, BoolDim):
                out.append([0.25, 0.75])
            elif isinstance(d, CategoricalDim) and not d.ordered:
                n = len(d.choices)
                out.append([(i + 0.5) / n for i in range(n)])
            else:
                out.append(None)
        return out

    def __repr__(self) -> str:
        return f"SearchSpace({len(self.dims)} dims: {', '.join(self.names)})"

    # ---- building
    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> "SearchSpace":
        """Load a train schema JSON file and call :meth:`from_schema` with ``kwargs``."""
        p = Path(path)
        try:
            schema = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise BankFormatError(f"{p}: cannot read the train schema ({exc.strerror}); "
                                  "run `python tools/gen_schemas.py`") from None
        except json.JSONDecodeError as exc:
            raise BankFormatError(f"{p}:{exc.lineno}: invalid JSON ({exc.msg}); regenerate it with "
                                  "`python tools/gen_schemas.py`") from None
        return cls.from_schema(schema, **kwargs)

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any], include: Iterable[str] | None = None,
                    exclude: Iterable[str] | None = None,
                    overrides: Mapping[str, Mapping[str, Any]] | None = None,
                    base_spec: Mapping[str, Any] | None = None) -> "SearchSpace":
        """Build the search space of a train schema (JSON Schema with TAO metadata).

        Args:
            schema: the packaged ``train.schema.json`` as a dict.
            include: dotted paths to search *instead of* the default set. Put ``"@default"`` in the
                list to keep the default set and add to it. A collection path (``train.optim``)
                adds its searchable fields. Fields outside the default set must be numeric with
                finite bounds (in the schema or in ``overrides``), boolean, or an enum.
            exclude: dotted paths (or collections) to drop.
            overrides: per path, any of ``minimum``, ``maximum``, ``log`` (bool), ``enum`` /
                ``choices``, ``option_weights`` / ``weights``, ``step``. Ranges must stay inside
                the schema bounds. An override on a path not yet searched adds it (as ``include``).
            base_spec: the user's train spec; its values replace template defaults (and give
                ``dataset.num_classes`` for the DETR ``num_select`` rule).

        Raises:
            TaoSkillsError: unknown path (with close matches), disabled or never-searched path,
                unsearchable field, override out of schema bounds or with unknown keys.
        """
        return _Builder(schema, base_spec).build(include, exclude, overrides)

    # ---- values
    def defaults(self) -> dict[str, Any]:
        """Template (or ``base_spec``) default of every searched field: ``{path: value}``."""
        return {d.name: copy.deepcopy(d.default) for d in self.dims}

    def _value_of(self, ref: str, params: Mapping[str, Any]) -> Any:
        if ref in params:
            return params[ref]
        return self.constants.get(ref)

    def bounds_for(self, dim: Dimension, params: Mapping[str, Any]) -> tuple[float | None, float | None]:
        """Extra ``(low, high)`` imposed on ``dim`` by its constraints given earlier ``params``."""
        lo = hi = None
        integer = isinstance(dim, (IntDim, OrderedIntDim))
        for c in dim.constraints:
            ref = self._value_of(c.ref, params)
            if ref is None or isinstance(ref, bool) or not isinstance(ref, (int, float)):
                continue
            v = float(ref) * c.mult
            if c.op in ("<", "<="):
                h = (math.ceil(v) - 1 if c.op == "<" else math.floor(v)) if integer else \
                    (math.nextafter(v, -math.inf) if c.op == "<" else v)
                hi = h if hi is None else min(hi, h)
            else:
                lw = (math.floor(v) + 1 if c.op == ">" else math.ceil(v)) if integer else \
                    (math.nextafter(v, math.inf) if c.op == ">" else v)
                lo = lw if lo is None else max(lo, lw)
        return lo, hi

    def sample(self, rng: Any = None) -> dict[str, Any]:
        """A random configuration ``{path: value}`` honouring weights and every constraint.

        ``rng``: ``numpy.random.Generator``, ``random.Random`` or an int seed.
        """
        rng = _as_rng(rng)
        out: dict[str, Any] = {}
        for d in self.dims:
            lo, hi = self.bounds_for(d, out)
            out[d.name] = d.sample(rng, lo, hi)
        return out

    def to_unit(self, params: Mapping[str, Any]) -> list[float]:
        """Encode a configuration as one coordinate in [0, 1] per dim (order of :attr:`dims`).

        Numeric dims use their scale (log dims: log-uniform); dependent dims are encoded
        relative to the range left by their parents; choices use ``(index + 0.5) / n``.
        """
        missing = [d.name for d in self.dims if d.name not in params]
        if missing:
            raise TaoSkillsError(f"to_unit: configuration lacks {', '.join(missing)}")
        out = []
        for d in self.dims:
            lo, hi = self.bounds_for(d, params)
            out.append(float(d.to_unit(params[d.name], lo, hi)))
        return out

    def from_unit(self, vector: Sequence[float]) -> dict[str, Any]:
        """Decode a unit-cube vector (``len == len(dims)``) into a valid configuration."""
        if len(vector) != len(self.dims):
            raise TaoSkillsError(f"from_unit: expected {len(self.dims)} coordinates, got {len(vector)}")
        out: dict[str, Any] = {}
        for d, u in zip(self.dims, vector):
            lo, hi = self.bounds_for(d, out)
            out[d.name] = d.from_unit(float(u), lo, hi)
        return out

    def repair(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Snap a configuration onto the space (grid, bounds, constraints): ``from_unit(to_unit(p))``."""
        return self.from_unit(self.to_unit(params))

    def validate(self, params: Mapping[str, Any]) -> list[str]:
        """Problems of a configuration (empty list when valid): missing keys, values, constraints."""
        problems = []
        for d in self.dims:
            if d.name not in params:
                problems.append(f"{d.name}: missing")
                continue
            v = params[d.name]
            if not d.contains(v):
                problems.append(f"{d.name}: {v!r} outside the dimension ({_short(d.row())})")
                continue
            for c in d.constraints:
                ref = self._value_of(c.ref, params)
                if ref is None:
                    continue
                rv = float(ref) * c.mult
                ok = {"<": v < rv, "<=": v <= rv, ">": v > rv, ">=": v >= rv}[c.op]
                if not ok:
                    problems.append(f"{d.name}: {v!r} violates {c.describe()} ({c.ref} = {ref!r}) {c.why}".rstrip())
        return problems

    def describe(self) -> list[dict[str, Any]]:
        """One dict per dim: name, kind, scale, low, high, choices, weights, default, source, constraints."""
        return [d.row() for d in self.dims]

    def table(self) -> str:
        """The :meth:`describe` rows as a plain-text table (for logs and agents)."""
        rows = [("parameter", "kind", "scale", "range / choices", "default", "constraints")]
        for r in self.describe():
            rng = (", ".join(map(str, r["choices"])) if r["choices"] is not None and r["kind"] != "ordered_int"
                   else f"[{r['low']:g}, {r['high']:g}]" if r["low"] is not None else "")
            if r["kind"] == "ordered_int":
                rng = "{" + ", ".join(map(str, r["choices"])) + "}"
            rows.append((r["name"], r["kind"], r["scale"], rng, repr(r["default"]), "; ".join(r["constraints"])))
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)

    def signature(self) -> str:
        """Short hash of the space definition; algorithms store it to refuse resuming on another space."""
        blob = json.dumps({"dims": self.describe(), "constants": self.constants}, sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _short(row: Mapping[str, Any]) -> str:
    if row["choices"] is not None:
        return f"choices {row['choices']}"
    return f"[{row['low']}, {row['high']}]"


def _toposort(dims: list[Dimension]) -> list[Dimension]:
    names = {d.name for d in dims}
    order: list[Dimension] = []
    state: dict[str, int] = {}
    by = {d.name: d for d in dims}

    def visit(d: Dimension, stack: list[str]) -> None:
        s = state.get(d.name)
        if s == 2:
            return
        if s == 1:
            cycle = " -> ".join(stack[stack.index(d.name):] + [d.name])
            raise BankFormatError(f"AutoML depends_on cycle: {cycle}; fix depends_on in the schema")
        state[d.name] = 1
        for r in d.refs():
            if r in names:
                visit(by[r], stack + [d.name])
        state[d.name] = 2
        order.append(d)

    for d in dims:
        visit(d, [])
    return order


def _unknown_msg(name: str, known: Sequence[str], what: str) -> str:
    """Error text for an unknown dotted path, with up to 3 close matches (difflib + same leaf name)."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    leaf = name.rsplit(".", 1)[-1]
    close += [k for k in known if k.rsplit(".", 1)[-1] == leaf or k.endswith("." + name)]
    if not close:
        leaves: dict[str, str] = {}
        for k in known:
            leaves.setdefault(k.rsplit(".", 1)[-1], k)
        close += [leaves[x] for x in difflib.get_close_matches(leaf, list(leaves), n=2, cutoff=0.75)]
    msg = f"unknown {what} '{name}'"
    close = list(dict.fromkeys(close))[:3]
    if close:
        msg += "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return msg


def apply_params(spec: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Deep copy of ``spec`` with each dotted path of ``params`` set (intermediate dicts created).

    >>> apply_params({"train": {"optim": {"lr": 1e-4}}}, {"train.optim.lr": 3e-4})
    {'train': {'optim': {'lr': 0.0003}}}
    """
    out = copy.deepcopy(dict(spec))
    for path, value in params.items():
        set_path(out, path, value, strict=True)
    return out


# --------------------------------------------------------------------------------------------


_TAO_TO_JSON = {"int": "integer", "float": "number", "bool": "boolean", "categorical": "string",
                "ordered": "string", "ordered_int": "integer", "collection": "object", "dict": "object",
                "subset_list": "array", "optional_list": "array"}

_OVERRIDE_KEYS = {"minimum", "maximum", "log", "enum", "choices", "option_weights", "weights", "step"}


@dataclass
class _Range:
    """A numeric field's range as :meth:`_Builder._numeric_dim` found it (schema and user's)."""

    path: str
    lo: Any
    hi: Any
    lo_excl: bool
    hi_excl: bool
    user_lo: Any
    user_hi: Any
    user_log: Any
    dflt: Any
    source: str
    depends: Any
    b: Any
    ov: Mapping[str, Any]

    def parts(self) -> tuple:
        """The fields in order (shallow: ``b`` stays the parsed math_cond)."""
        return tuple(getattr(self, f.name) for f in fields(self))


class _Builder:
    def __init__(self, schema: Mapping[str, Any], base_spec: Mapping[str, Any] | None):
        if not isinstance(schema, Mapping) or not _children(schema):
            raise BankFormatError("train schema has no 'properties'; regenerate it with `python tools/gen_schemas.py`")
        self.schema = schema
        self.base_spec = base_spec or {}
        self.fields: dict[str, _Field] = {p: _Field(p, n, c) for p, n, c in _walk(schema)}
        self.default_list = [str(p) for p in schema.get("automl_default_parameters") or []]
        self.disabled_list = [str(p) for p in schema.get("automl_disabled_parameters") or []]

    # -- facts about a field
    def default_of(self, path: str) -> Any:
        v = get_path(self.base_spec, path, MISSING)
        if v is not MISSING:
            return v
        f = self.fields.get(path)
        if f is not None and "default" in f.node:
            return f.node["default"]
        v = get_path(self.schema.get("default") or {}, path, MISSING)
        return None if v is MISSING else v

    def disabled_reason(self, path: str) -> str | None:
        for d in self.disabled_list:
            if path == d:
                return "listed in automl_disabled_parameters"
            if path.startswith(d + "."):
                return f"its collection '{d}' is listed in automl_disabled_parameters"
        parts = path.split(".")
        for i in range(len(parts), 0, -1):
            f = self.fields.get(".".join(parts[:i]))
            if f is not None and f.node.get("automl_enabled") is False and (i == len(parts) or f.is_collection):
                where = "the field" if i == len(parts) else f"its collection '{f.path}'"
                return f"{where} says automl_enabled: false"
        return None

    def leaves_under(self, path: str) -> list[str]:
        return [p for p, f in self.fields.items() if p.startswith(path + ".") and not f.is_collection]

    # -- build
    def build(self, include, exclude, overrides) -> SearchSpace:
        overrides = {str(k): dict(v) for k, v in (overrides or {}).items()}
        for path, ov in overrides.items():
            bad = set(ov) - _OVERRIDE_KEYS
            if bad:
                raise TaoSkillsError(f"overrides['{path}']: unknown key(s) {sorted(bad)}; allowed: {sorted(_OVERRIDE_KEYS)}")

        skipped: list[tuple[str, str]] = []
        chosen: dict[str, str] = {}   # path -> source

        # the schema's default set
        default_set: list[str] = []
        for p in self.default_list:
            if p not in self.fields:
                skipped.append((p, "listed in automl_default_parameters but absent from the schema properties"))
                continue
            reason = self.disabled_reason(p) or never_searched_reason(p)
            if reason:
                skipped.append((p, reason))
                continue
            default_set.append(p)

        if include is None:
            for p in default_set:
                chosen[p] = "default"
        else:
            include = [str(x) for x in include]
            for p in include:
                if p == DEFAULT_SET_TOKEN:
                    for q in default_set:
                        chosen.setdefault(q, "default")
                    continue
                for q in self._expand_user_path(p, "include"):
                    chosen.setdefault(q, "default" if q in default_set else "include")
        for p in overrides:
            for q in self._expand_user_path(p, "overrides"):
                chosen.setdefault(q, "default" if q in default_set else "include")
        for p in exclude or []:
            p = str(p)
            if p not in self.fields:
                raise TaoSkillsError(_unknown_msg(p, self._searchable_hint(), "AutoML parameter to exclude"))
            for q in [p] + self.leaves_under(p):
                chosen.pop(q, None)

        dims: list[Dimension] = []
        for p, source in chosen.items():
            dim, why = self._make_dim(p, source, overrides.get(p, {}))
            if dim is None:
                if source == "default" and p not in overrides:
                    skipped.append((p, why or "not searchable"))
                    continue
                raise TaoSkillsError(f"cannot search '{p}': {why}")
            dims.append(dim)
        dims, constants = self._relations(dims)
        return SearchSpace(dims, constants, skipped)

    def _searchable_hint(self) -> list[str]:
        return [p for p, f in self.fields.items()]

    def _expand_user_path(self, p: str, what: str) -> list[str]:
        f = self.fields.get(p)
        if f is None:
            raise TaoSkillsError(_unknown_msg(p, self._searchable_hint(), f"AutoML parameter in {what}")
                                 + " Use dotted spec paths from the train schema.")
        reason = self.disabled_reason(p)
        if reason:
            raise TaoSkillsError(f"'{p}' cannot be searched: it is disabled for AutoML ({reason}). "
                                 f"Searchable by default: {', '.join(self._default_ok()) or 'none'}")
        reason = never_searched_reason(p)
        if reason:
            raise TaoSkillsError(f"'{p}' is never searched by AutoML ({reason}).")
        if not f.is_collection:
            return [p]
        out = []
        for q in self.leaves_under(p):
            if self.disabled_reason(q) or never_searched_reason(q):
                continue
            dim, _ = self._make_dim(q, "include", {})
            if dim is not None:
                out.append(q)
        if not out:
            raise TaoSkillsError(f"collection '{p}' has no searchable field (numeric with finite bounds, "
                                 "boolean or enum) that AutoML may search")
        return out

    def _default_ok(self) -> list[str]:
        return [p for p in self.default_list if p in self.fields
                and not self.disabled_reason(p) and not never_searched_reason(p)]

    def _make_dim(self, path: str, source: str, ov: Mapping[str, Any]) -> tuple[Dimension | None, str | None]:
        f = self.fields[path]
        node = f.node
        if f.is_collection:
            return None, "it is a collection; name its fields"
        tvt = str(node.get("tao_value_type") or "")
        # TAO's own converter writes TAO value types ("float", "ordered_int"...) into "type"
        types = {_TAO_TO_JSON.get(t, "array" if t.startswith("list") else t) for t in _json_types(node)}
        if not types and tvt:
            types = {_TAO_TO_JSON.get(tvt, "array" if tvt.startswith("list") else "string")}
        default = self.default_of(path)
        enum = ov.get("enum", ov.get("choices"))
        if enum is None:
            for b in _branches(node):
                if isinstance(b.get("enum"), list) and b["enum"]:
                    enum = [v for v in b["enum"] if v is not None]
                    break
        weights = ov.get("option_weights", ov.get("weights", node.get("option_weights")))
        depends = tuple(x for x in [node.get("depends_on")] if x)

        if "array" in types or tvt.startswith("list") or tvt in ("subset_list", "optional_list"):
            return None, ("list-valued fields are not searched (TAO enables none for the packaged networks); "
                          "exclude it or search its scalar neighbours")
        if "object" in types and not enum:
            return None, "free-form mapping"

        if enum is not None:
            enum = list(enum)
            schema_enum = None
            for b in _branches(node):
                if isinstance(b.get("enum"), list):
                    schema_enum = [v for v in b["enum"] if v is not None]
            if schema_enum is not None and ov.get("enum", ov.get("choices")) is not None:
                bad = [v for v in enum if v not in schema_enum]
                if bad:
                    raise TaoSkillsError(f"overrides['{path}']: choices {bad} are not allowed by the schema "
                                         f"(allowed: {schema_enum})")
            if not enum:
                return None, "empty enum"
            user_weights = ov.get("option_weights", ov.get("weights")) is not None
            if weights is not None:
                weights = [float(w) for w in weights]
                if len(weights) != len(enum) and user_weights:
                    raise TaoSkillsError(f"overrides['{path}']: {len(weights)} option weights for {len(enum)} "
                                         f"choices {enum}")
                if len(weights) != len(enum):
                    # the schema's weights are aligned with its full enum: keep those of the chosen values
                    if schema_enum is not None and len(weights) == len(schema_enum):
                        weights = [weights[schema_enum.index(v)] for v in enum]
                    else:
                        weights = None
                elif any(w < 0 for w in weights) or sum(weights) <= 0:
                    raise TaoSkillsError(f"{path}: option_weights must be >= 0 with a positive sum")
            all_int = all(isinstance(v, int) and not isinstance(v, bool) for v in enum)
            if all(isinstance(v, bool) for v in enum):
                return BoolDim(path, default, source, depends_on=depends), None
            if all_int and (tvt == "ordered_int" or "integer" in types):
                pairs = sorted(zip(enum, weights or [1.0] * len(enum)))
                vals = tuple(int(v) for v, _ in pairs)
                w = tuple(float(x) for _, x in pairs) if weights else None
                return OrderedIntDim(path, default, source, depends_on=depends, values=vals, weights=w), None
            return CategoricalDim(path, default, source, depends_on=depends, choices=tuple(enum),
                                  weights=tuple(weights) if weights else None, ordered=tvt == "ordered"), None

        if "boolean" in types or tvt == "bool":
            return BoolDim(path, default, source, depends_on=depends), None

        if not ({"integer", "number"} & types or tvt in ("int", "float", "integer")):
            return None, f"type {sorted(types) or tvt or 'unknown'} without an enum cannot be searched"
        is_int = "integer" in types and "number" not in types or tvt in ("int", "integer")
        return self._numeric_dim(path, node, source, ov, default, is_int, depends)

    def _numeric_dim(self, path, node, source, ov, default, is_int, depends):
        """The search dimension of a numeric field (or ``(None, why not)``): its range from the schema
        (minimum / maximum, exclusive bounds, TAO valid_min / max, math_cond), narrowed by the user's
        ``ov`` overrides (checked against the schema range)."""
        b = _parse_math_cond(path, node.get("math_cond"), node.get("depends_on"))
        lo = _num(node.get("minimum"))
        hi = _num(node.get("maximum"))
        lo_excl = hi_excl = False
        if _num(node.get("exclusiveMinimum")) is not None:
            lo, lo_excl = _num(node["exclusiveMinimum"]), True
        if _num(node.get("exclusiveMaximum")) is not None:
            hi, hi_excl = _num(node["exclusiveMaximum"]), True
        if lo is None:
            lo = _num(node.get("tao_valid_min"))
        if hi is None:
            hi = _num(node.get("tao_valid_max"))
        if b.low is not None and (lo is None or b.low > lo or (b.low == lo and b.low_excl)):
            lo, lo_excl = b.low, b.low_excl
        if b.high is not None and (hi is None or b.high < hi or (b.high == hi and b.high_excl)):
            hi, hi_excl = b.high, b.high_excl
        schema_lo, schema_hi = lo, hi
        dflt = default if isinstance(default, (int, float)) and not isinstance(default, bool) else None

        user_lo, user_hi = _num(ov.get("minimum")), _num(ov.get("maximum"))
        for name, val in (("minimum", user_lo), ("maximum", user_hi)):
            if val is None:
                continue
            if (schema_lo is not None and (val < schema_lo or (val == schema_lo and lo_excl))) or \
               (schema_hi is not None and (val > schema_hi or (val == schema_hi and hi_excl))):
                raise TaoSkillsError(
                    f"overrides['{path}']['{name}'] = {val:g} is outside the schema range "
                    f"{'(' if lo_excl else '['}{schema_lo if schema_lo is not None else '-inf'}, "
                    f"{schema_hi if schema_hi is not None else 'inf'}{')' if hi_excl else ']'}")
        if user_lo is not None and user_hi is not None and user_lo >= user_hi:
            raise TaoSkillsError(f"overrides['{path}']: minimum {user_lo:g} must be below maximum {user_hi:g}")

        user_log = ov.get("log")
        if user_log is not None and not isinstance(user_log, bool):
            raise TaoSkillsError(f"overrides['{path}']['log'] must be true or false")
        r = _Range(path, lo, hi, lo_excl, hi_excl, user_lo, user_hi, user_log, dflt, source, depends, b, ov)
        return self._int_dim(r) if is_int else self._float_dim(r)

    def _int_dim(self, r: "_Range"):
        path, lo, hi, lo_excl, hi_excl, user_lo, user_hi, user_log, dflt, source, depends, b, ov = r.parts()
        step = int(ov.get("step") or b.multiple_of or 1)
        if step < 1:
            raise TaoSkillsError(f"overrides['{path}']['step'] must be >= 1")
        a = None if lo is None else (math.floor(lo) + 1 if lo_excl and lo == math.floor(lo) else math.ceil(lo))
        z = None if hi is None else (math.ceil(hi) - 1 if hi_excl and hi == math.ceil(hi) else math.floor(hi))
        if user_lo is not None:
            a = math.ceil(user_lo)
        if user_hi is not None:
            z = math.floor(user_hi)
        if z is None:
            if source != "default" or dflt is None:
                return None, ("no finite maximum in the schema; give one with "
                              f"overrides={{'{path}': {{'minimum': ..., 'maximum': ...}}}}")
            z = max(a if a is not None else 1, int(_UNBOUNDED_INT_FACTOR * dflt))
        if a is None:
            if source != "default" or dflt is None:
                return None, ("no finite minimum in the schema; give one with "
                              f"overrides={{'{path}': {{'minimum': ...}}}}")
            a = min(0 if dflt <= 0 else 1, int(dflt))
        for ne in b.not_equal:
            if ne == a:
                a += 1
            elif ne == z:
                z -= 1
        if b.power_of and b.power_of >= 2 and not ov.get("step"):
            vals, v = [], 1
            while v <= z:
                if v >= a:
                    vals.append(v)
                v *= b.power_of
            if not vals:
                return None, f"no power of {b.power_of} within [{a}, {z}]"
            return OrderedIntDim(path, dflt, source, depends_on=depends, values=tuple(vals)), None
        if step > 1:
            a = int(math.ceil(a / step) * step)
            z = int(math.floor(z / step) * step)
        if a > z:
            return None, f"empty integer range [{a}, {z}]"
        log = bool(user_log) if user_log is not None else (a >= 1 and z / a >= _MIN_LOG_RATIO and step == 1)
        if log and a < 1:
            raise TaoSkillsError(f"overrides['{path}']: log scale needs a minimum >= 1")
        return IntDim(path, dflt if dflt is None else int(dflt), source, depends_on=depends,
                      low=int(a), high=int(z), step=step, log=log), None

    def _float_dim(self, r: "_Range"):
        path, lo, hi, lo_excl, hi_excl, user_lo, user_hi, user_log, dflt, source, depends, b, ov = r.parts()
        if ov.get("step"):
            raise TaoSkillsError(f"overrides['{path}']['step'] applies to integer fields only")
        positive = lo is not None and (lo > 0 or (lo == 0 and lo_excl))
        leaf = path.rsplit(".", 1)[-1]
        if user_lo is not None or user_hi is not None:
            a = user_lo if user_lo is not None else lo
            z = user_hi if user_hi is not None else hi
            if a is None or z is None:
                return None, f"give both minimum and maximum in overrides['{path}'] (the schema lacks one)"
            if user_log is None:
                log = a > 0 and z / a >= _MIN_LOG_RATIO and (bool(_LOG_NAME_RE.search(leaf)) or
                                                            (dflt is not None and dflt * _LOG_HALF_SPAN <= z))
            else:
                log = user_log
            if log and a <= 0:
                raise TaoSkillsError(f"overrides['{path}']: log scale needs a positive minimum (got {a:g})")
            if lo_excl and a == lo:
                a = math.nextafter(a, math.inf)
            return FloatDim(path, dflt, source, depends_on=depends, low=float(a), high=float(z), log=log), None

        scale_like = positive and dflt is not None and dflt > 0 and (
            bool(_LOG_NAME_RE.search(leaf)) or (hi is not None and dflt * _LOG_HALF_SPAN <= hi) or hi is None)
        if user_log is False:
            scale_like = False
        if scale_like or user_log:
            if not positive and user_log:
                raise TaoSkillsError(f"overrides['{path}']: log scale needs a positive minimum; give 'minimum'")
            if dflt is not None and dflt > 0:
                a = max(lo if lo and lo > 0 else 0.0, dflt / _LOG_HALF_SPAN)
                z = dflt * _LOG_HALF_SPAN if hi is None else min(hi, dflt * _LOG_HALF_SPAN)
            else:
                a, z = lo, hi
            if a and z and a > 0 and (z / a >= _MIN_LOG_RATIO or user_log):
                if lo_excl and a == lo:
                    a = math.nextafter(a, math.inf)
                return FloatDim(path, dflt, source, depends_on=depends, low=float(a), high=float(z), log=True), None
        # linear
        a, z = lo, hi
        if z is None:
            if source != "default" or dflt is None:
                return None, ("no finite maximum in the schema; give one with "
                              f"overrides={{'{path}': {{'minimum': ..., 'maximum': ...}}}}")
            z = max(abs(dflt) * _UNBOUNDED_FLOAT_FACTOR, (a or 0.0) + 1.0)
        if a is None:
            if source != "default" or dflt is None:
                return None, f"no finite minimum in the schema; give one with overrides={{'{path}': {{'minimum': ...}}}}"
            a = 0.0 if dflt >= 0 else dflt * _UNBOUNDED_FLOAT_FACTOR
        if lo_excl:
            a = a + (z - a) * 1e-3
        if hi_excl:
            z = z - (z - a) * 1e-3
        if a >= z:
            return None, f"empty range [{a}, {z}]"
        return FloatDim(path, dflt, source, depends_on=depends, low=float(a), high=float(z), log=False), None

    # -- relations: math_cond "> depends_on" and the DETR num_select rule
    def _relations(self, dims: list[Dimension]) -> tuple[list[Dimension], dict[str, Any]]:
        by = {d.name: d for d in dims}
        constants: dict[str, Any] = {}
        for d in dims:
            node = self.fields[d.name].node
            b = _parse_math_cond(d.name, node.get("math_cond"), node.get("depends_on"))
            cons = list(d.constraints)
            for op, ref in b.relations:
                if ref not in self.fields:
                    raise BankFormatError(f"{d.name}: depends_on '{ref}' does not exist in the schema")
                cons.append(Constraint(op, ref, 1.0, "(math_cond)"))
                if ref not in by:
                    constants[ref] = self.default_of(ref)
            d.constraints = tuple(cons)
        # DETR family
        for d in dims:
            if d.name.rsplit(".", 1)[-1] != "num_select" or not isinstance(d, (IntDim, OrderedIntDim)):
                continue
            parent = d.name.rsplit(".", 1)[0] if "." in d.name else ""
            nq = self._sibling_or_any(parent, "num_queries")
            if nq is None:
                continue
            nc_path = self._first_existing(["dataset.num_classes", "model.num_classes", f"{parent}.num_classes"])
            nc = self.default_of(nc_path) if nc_path else None
            cons = list(d.constraints) + [Constraint("<=", nq, 1.0, "(DETR: num_select <= num_queries)")]
            if isinstance(nc, int) and not isinstance(nc, bool) and nc > 0:
                cons.append(Constraint("<", nq, float(nc), f"(DETR: num_select < num_queries * num_classes, "
                                                          f"{nc_path} = {nc})"))
            d.constraints = tuple(cons)
            d.depends_on = tuple(dict.fromkeys(list(d.depends_on) + [nq]))
            if nq not in by:
                constants[nq] = self.default_of(nq)
        # static tightening so that "child > parent" always leaves room for the child
        for d in dims:
            for c in d.constraints:
                p = by.get(c.ref)
                if p is None or c.mult != 1 or not isinstance(p, (IntDim, FloatDim)) or \
                        not isinstance(d, (IntDim, FloatDim)):
                    continue
                gap = (1 if isinstance(d, IntDim) else 0) if c.op in (">", "<") else 0
                if c.op in (">", ">=") and p.high > d.high - gap:
                    p.high = type(p.high)(d.high - gap)
                elif c.op in ("<", "<=") and p.low < d.low + gap:
                    p.low = type(p.low)(d.low + gap)
                if p.low > p.high:
                    raise TaoSkillsError(f"'{p.name}' and '{d.name}' cannot both be searched: {d.name} "
                                         f"{c.describe()} leaves no room; adjust their overrides")
        return dims, constants

    def _sibling_or_any(self, parent: str, leaf: str) -> str | None:
        cand = f"{parent}.{leaf}" if parent else leaf
        if cand in self.fields:
            return cand
        for p in self.fields:
            if p.rsplit(".", 1)[-1] == leaf:
                return p
        return None

    def _first_existing(self, paths: list[str]) -> str | None:
        for p in paths:
            if p in self.fields:
                return p
        return None
