"""Post-training quantization methods (TAO's ``quantize`` section): backends, layer selection and
the torch-free plan-time check (:func:`preflight`). The ``quantize`` action that runs them on a
checkpoint is :mod:`tao_sdk.worker.engine.quantize`.

Two maintained backends, chosen by ``quantize.backend``:

- ``torchao``: ``weight_only_ptq`` stores the selected Linear / Conv2d weights as int8, int4 or
  float8 tensors (real low-precision storage: the checkpoint shrinks).
- ``modelopt.pytorch`` (NVIDIA ModelOpt): ``static_ptq`` inserts weight and activation quantizers
  (int8 or fp8) whose ranges are calibrated on the calibration dataset, and ``weight_only_ptq``
  quantizes weights only. The model stays fake-quantized (Q/DQ) for ONNX / TensorRT: the
  checkpoint keeps float weights plus the calibrated ranges.

Which modules are quantized comes from ``quantize.layers`` (``module_name`` wildcard patterns,
each with ``weights`` / ``activations`` dtypes; a later rule overrides an earlier one for the same
module) minus ``quantize.skip_names`` (wildcards). A rule or skip pattern matching no module is
an error listing close names.

A quantized checkpoint records its recipe under ``"quantization"``; :func:`restore` rebuilds the
quantized structure on a freshly built float model before loading the weights, so evaluate /
inference / export load it when (and only when) ``<action>.is_quantized`` is true
(:func:`check_flag`).
"""

from __future__ import annotations

import difflib
import fnmatch
import io
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tao_sdk.extras import install_command
from tao_sdk.worker.errors import SpecError

__all__ = [
    "BACKENDS",
    "LayerRule",
    "QuantPlan",
    "QuantReport",
    "check_flag",
    "model_bytes",
    "plan_from_spec",
    "preflight",
    "quantize_model",
    "restore",
    "select_modules",
]

#: Canonical dtype names accepted in ``quantize.layers[*].weights/activations.dtype``.
_DTYPES = {
    "int8": "int8", "qint8": "int8",
    "int4": "int4", "qint4": "int4",
    "fp8": "float8_e4m3fn", "float8": "float8_e4m3fn", "fp8_e4m3fn": "float8_e4m3fn",
    "float8_e4m3fn": "float8_e4m3fn", "e4m3": "float8_e4m3fn",
    "fp8_e5m2": "float8_e5m2", "float8_e5m2": "float8_e5m2", "e5m2": "float8_e5m2",
}


@dataclass(frozen=True)
class LayerRule:
    """One ``quantize.layers`` entry: a module-name pattern and its dtypes (None = not quantized)."""

    pattern: str
    weights: str | None
    activations: str | None


@dataclass
class QuantPlan:
    """What the spec asks for, checked against what the backend can do."""

    backend: str
    mode: str
    algorithm: str
    rules: list[LayerRule]
    skip: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in the checkpoint and the job log)."""
        return {"backend": self.backend, "mode": self.mode, "algorithm": self.algorithm,
                "rules": [r.__dict__ for r in self.rules], "skip": list(self.skip)}


@dataclass
class QuantReport:
    """The outcome of :func:`quantize_model`."""

    modules: dict[str, dict[str, str | None]] = field(default_factory=dict)
    float_bytes: int = 0
    quantized_bytes: int = 0

    def summary(self) -> str:
        """One line for the job log / status.json."""
        ratio = self.quantized_bytes / self.float_bytes if self.float_bytes else 0.0
        return (f"{len(self.modules)} module(s) quantized; parameters {self.float_bytes / 1e6:.2f} MB "
                f"-> {self.quantized_bytes / 1e6:.2f} MB ({ratio:.2f}x)")


class _Backend:
    """A quantization library: the modes and dtypes it supports and how to apply / restore."""

    name = ""
    library = ""                                # importable module of the library
    install = ""                                # how to install it
    modes: Mapping[str, tuple[str, ...]] = {}   # mode -> weight dtypes supported
    activation_dtypes: tuple[str, ...] = ()
    #: module types a rule can quantize (class names: torch is not imported at module load)
    module_types: tuple[str, ...] = ("Linear", "Conv2d")
    #: weight dtype -> (module it needs, why it is refused when that module is missing)
    dtype_requires: Mapping[str, tuple[str, str]] = {}

    def check(self, plan: QuantPlan) -> None:
        """Raise SpecError when ``plan`` asks for something this backend cannot do here
        (torch-free: the SDK calls it at plan time)."""
        import importlib.util

        if importlib.util.find_spec(self.library) is None:
            raise SpecError(f"quantize.backend={self.name!r} needs the {self.library} package, "
                            f"which is not installed here; {self.install}")
        if plan.mode not in self.modes:
            raise SpecError(
                f"quantize.mode={plan.mode!r} is not supported by quantize.backend={self.name!r} "
                f"here; supported: {', '.join(sorted(self.modes))}"
                + (" (static PTQ with calibrated activations: use quantize.backend=modelopt.pytorch)"
                   if plan.mode == "static_ptq" else ""))
        for rule in plan.rules:
            if rule.weights and rule.weights not in self.modes[plan.mode]:
                raise SpecError(
                    f"quantize.layers[{rule.pattern!r}].weights.dtype={rule.weights!r}: "
                    f"{self.name} {plan.mode} supports {', '.join(self.modes[plan.mode])}")
            need = self.dtype_requires.get(rule.weights or "")
            if need and importlib.util.find_spec(need[0]) is None:
                raise SpecError(f"quantize.layers[{rule.pattern!r}].weights.dtype="
                                f"{rule.weights!r} cannot run here: {need[1]}")
            if rule.activations and plan.mode == "weight_only_ptq":
                raise SpecError(
                    f"quantize.layers[{rule.pattern!r}].activations is set but quantize.mode is "
                    "weight_only_ptq; remove activations or use quantize.mode=static_ptq")
            if rule.activations and rule.activations not in self.activation_dtypes:
                raise SpecError(
                    f"quantize.layers[{rule.pattern!r}].activations.dtype={rule.activations!r}: "
                    f"{self.name} supports {', '.join(self.activation_dtypes) or 'none'}")

    def apply(self, model, selected: dict[str, LayerRule], plan: QuantPlan,
              calibrate: Callable[[Any], None] | None):
        raise NotImplementedError

    def restore(self, model, record: dict[str, Any]):
        raise NotImplementedError

    def extra_state(self, model) -> dict[str, Any]:
        """Backend state stored beside the state dict (empty when the structure suffices)."""
        return {}


class _TorchAO(_Backend):
    """torchao: real int8 / int4 / float8 weight storage."""

    name = "torchao"
    library = "torchao"
    install = install_command("quantize")
    modes = {"weight_only_ptq": ("int8", "int4", "float8_e4m3fn")}
    module_types = ("Linear",)  # torchao's weight-only tensors cover Linear layers only
    dtype_requires = {"int4": ("mslk", "torchao's int4 weight-only packing needs the mslk "
                               "kernel library (CUDA wheels), which is not installed; use "
                               "int8 or float8_e4m3fn weights")}

    @staticmethod
    def _config(dtype: str):
        from torchao import quantization as Q

        if dtype == "int8":
            return Q.Int8WeightOnlyConfig()
        if dtype == "int4":
            return Q.Int4WeightOnlyConfig()
        return Q.Float8WeightOnlyConfig()

    def _apply_structure(self, model, modules: Mapping[str, str]) -> None:
        from torchao.quantization import quantize_

        for dtype in sorted(set(modules.values())):
            names = {n for n, d in modules.items() if d == dtype}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_(model, self._config(dtype), filter_fn=lambda _m, fqn: fqn in names)

    def apply(self, model, selected, plan, calibrate):
        modules = {n: r.weights for n, r in selected.items() if r.weights}
        self._apply_structure(model, modules)
        return {n: {"weights": d, "activations": None} for n, d in modules.items()}

    def restore(self, model, record):
        self._apply_structure(model, {n: d["weights"] for n, d in record["modules"].items()})


class _ModelOpt(_Backend):
    """NVIDIA ModelOpt (``modelopt.torch.quantization``): fake-quant Q/DQ with calibration."""

    name = "modelopt.pytorch"
    library = "modelopt"
    install = install_command("quantize") + " (nvidia-modelopt)"
    modes = {"static_ptq": ("int8", "float8_e4m3fn", "float8_e5m2"),
             "weight_only_ptq": ("int8", "float8_e4m3fn", "float8_e5m2")}
    activation_dtypes = ("int8", "float8_e4m3fn", "float8_e5m2")
    _ALGORITHMS = {"minmax": "max", "max": "max"}
    _BITS: dict[str, Any] = {"int8": 8, "float8_e4m3fn": (4, 3), "float8_e5m2": (5, 2)}

    def check(self, plan):
        super().check(plan)
        if plan.algorithm not in self._ALGORITHMS:
            raise SpecError(
                f"quantize.algorithm={plan.algorithm!r} is not supported with modelopt.pytorch "
                f"here; use one of {', '.join(self._ALGORITHMS)}")

    def _config(self, selected: dict[str, LayerRule], algorithm: str) -> dict[str, Any]:
        cfg: dict[str, Any] = {"default": {"enable": False}}
        for name, rule in selected.items():
            if rule.weights:
                cfg[f"{name}.weight_quantizer"] = {"num_bits": self._BITS[rule.weights], "axis": 0}
            if rule.activations:
                cfg[f"{name}.input_quantizer"] = {"num_bits": self._BITS[rule.activations],
                                                  "axis": None}
        return {"quant_cfg": cfg, "algorithm": self._ALGORITHMS[algorithm]}

    def apply(self, model, selected, plan, calibrate):
        import modelopt.torch.quantization as mtq

        if plan.mode == "static_ptq" and calibrate is None:
            raise SpecError("quantize.mode=static_ptq needs calibration data: set "
                            "dataset.quant_calibration_data_sources (or pass a calibration dataset)")
        loop = calibrate if calibrate is not None else (lambda _m: None)
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            mtq.quantize(model, self._config(selected, plan.algorithm), loop)
        return {n: {"weights": r.weights, "activations": r.activations}
                for n, r in selected.items() if r.weights or r.activations}

    def extra_state(self, model):
        import modelopt.torch.opt as mto

        return {"modelopt_state": mto.modelopt_state(model)}

    def restore(self, model, record):
        import modelopt.torch.opt as mto

        with _quiet():
            return mto.restore_from_modelopt_state(model, record["modelopt_state"])


class _quiet:
    """Swallow a library's prints (ModelOpt prints "Inserted N quantizers") into the void."""

    def __enter__(self):
        import contextlib

        self._cm = contextlib.redirect_stdout(io.StringIO())
        return self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


#: Backend registry: ``quantize.backend`` value -> implementation.
BACKENDS: dict[str, _Backend] = {b.name: b for b in (_TorchAO(), _ModelOpt())}
_REFUSED = {
    "modelopt.onnx": "ONNX-level quantization runs on an exported .onnx file; quantize the "
                     "PyTorch model with quantize.backend=modelopt.pytorch (static_ptq) and "
                     "export it, or use torchao for weight-only PTQ",
}


def _dtype(value: Any, where: str) -> str | None:
    if value in (None, {}, ""):
        return None
    raw = value.get("dtype") if isinstance(value, Mapping) else value
    if raw in (None, ""):
        return None
    key = str(raw).strip().lower()
    if key not in _DTYPES:
        close = difflib.get_close_matches(key, list(_DTYPES), n=3)
        raise SpecError(f"{where}.dtype={raw!r} is not a known quantization dtype; use one of "
                        f"int8, int4, float8_e4m3fn, float8_e5m2"
                        + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return _DTYPES[key]


def plan_from_spec(spec: Mapping[str, Any]) -> QuantPlan:
    """Read and check the ``quantize`` section of a spec; raise SpecError naming the field."""
    q = spec.get("quantize") or {}
    backend = q.get("backend") or "torchao"
    if backend in _REFUSED:
        raise SpecError(f"quantize.backend={backend!r} is not supported by this worker: "
                        f"{_REFUSED[backend]}")
    if backend not in BACKENDS:
        raise SpecError(f"quantize.backend={backend!r} is unknown; use one of "
                        f"{', '.join(BACKENDS)}")
    rules = []
    for i, entry in enumerate(q.get("layers") or []):
        where = f"quantize.layers[{i}]"
        if not isinstance(entry, Mapping) or not entry.get("module_name"):
            raise SpecError(f"{where} needs a module_name (a module name or wildcard such as "
                            "'*' or 'model.decoder.*')")
        rules.append(LayerRule(str(entry["module_name"]),
                               _dtype(entry.get("weights"), f"{where}.weights"),
                               _dtype(entry.get("activations"), f"{where}.activations")))
    mode = q.get("mode") or "weight_only_ptq"
    if not rules:
        rules = [LayerRule("*", "int8", "int8" if mode == "static_ptq" else None)]
    plan = QuantPlan(backend, mode, str(q.get("algorithm") or "minmax"), rules,
                     [str(s) for s in (q.get("skip_names") or [])])
    BACKENDS[backend].check(plan)
    return plan


def _close(pattern: str, names: list[str]) -> str:
    close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.4)
    sample = close or names[:5]
    return ", ".join(sample) + (" ..." if not close and len(names) > 5 else "")


def select_modules(model, plan: QuantPlan) -> dict[str, LayerRule]:
    """Map each quantizable module name (the backend's ``module_types``: Linear for torchao,
    Linear / Conv2d for ModelOpt) to the rule that applies to it.

    Rules are applied in order (a later matching rule wins); ``skip`` patterns remove modules.
    Raises SpecError when a rule or skip pattern matches no quantizable module.
    """
    types = BACKENDS[plan.backend].module_types
    kinds = "/".join(types)
    every = [n for n, _ in model.named_modules() if n]
    names = [n for n, m in model.named_modules() if n and type(m).__name__ in types]
    selected: dict[str, LayerRule] = {}
    for rule in plan.rules:
        hits = [n for n in names if fnmatch.fnmatchcase(n, rule.pattern)]
        if not hits:
            raise SpecError(f"quantize.layers module_name {rule.pattern!r} matches no {kinds} "
                            f"module ({plan.backend}); close names: "
                            f"{_close(rule.pattern, names)}")
        for n in hits:
            selected[n] = rule
    for pattern in plan.skip:
        hits = [n for n in selected if fnmatch.fnmatchcase(n, pattern)]
        if not hits and not any(fnmatch.fnmatchcase(n, pattern) for n in every):
            raise SpecError(f"quantize.skip_names entry {pattern!r} matches no module; close "
                            f"names: {_close(pattern, every)}")
        for n in hits:
            del selected[n]
    if not selected:
        raise SpecError("quantize.layers / skip_names select no module to quantize; widen "
                        "quantize.layers (e.g. module_name '*') or shorten skip_names")
    return selected


def model_bytes(model) -> int:
    """Bytes of the model's parameters and buffers as stored (quantized tensors count their
    packed data)."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def quantize_model(model, plan: QuantPlan, calibrate: Callable[[Any], None] | None = None
                   ) -> tuple[Any, dict[str, Any], QuantReport]:
    """Quantize ``model`` in place as ``plan`` says.

    ``calibrate(model)`` runs forward passes over calibration data (needed by ModelOpt
    ``static_ptq``). Returns ``(model, record, report)``: ``record`` goes into the checkpoint
    under ``"quantization"`` so :func:`restore` can rebuild the structure.
    """
    backend = BACKENDS[plan.backend]
    selected = select_modules(model, plan)
    before = model_bytes(model)
    modules = backend.apply(model, selected, plan, calibrate)
    record = {**plan.to_dict(), "modules": modules, **backend.extra_state(model)}
    report = QuantReport(modules=modules, float_bytes=before, quantized_bytes=model_bytes(model))
    return model, record, report


def restore(model, record: Mapping[str, Any]):
    """Rebuild the quantized structure recorded in a checkpoint on a float ``model`` (built from
    the same architecture), ready for ``load_state_dict(..., assign=True)``; returns the model."""
    backend = BACKENDS.get(record.get("backend", ""))
    if backend is None:
        raise SpecError(f"checkpoint was quantized with an unknown backend "
                        f"{record.get('backend')!r}; re-run quantize with this worker")
    out = backend.restore(model, dict(record))
    return out if out is not None else model


def check_flag(ckpt: Mapping[str, Any], is_quantized: bool, action: str, path: str) -> None:
    """Refuse a quantized checkpoint loaded without ``<action>.is_quantized: true`` and a float
    checkpoint loaded with it."""
    quantized = bool(ckpt.get("quantization"))
    if quantized and not is_quantized:
        raise SpecError(f"{path} is a quantized checkpoint ({ckpt['quantization'].get('backend')} "
                        f"{ckpt['quantization'].get('mode')}); set {action}.is_quantized=true to "
                        "load it")
    if is_quantized and not quantized:
        raise SpecError(f"{action}.is_quantized is true but {path} is not a quantized checkpoint; "
                        f"set {action}.is_quantized=false or point at the quantize job's output "
                        "(use that job as the parent)")


def preflight(spec: Mapping[str, Any]) -> None:
    """Plan-time check of a ``quantize`` spec without torch: backend, mode, dtypes, algorithm
    and the libraries they need here. Raises SpecError with the reason and the fix."""
    plan_from_spec(spec)


def refuse_export(record: Mapping[str, Any], path: str) -> None:
    """Raise SpecError when a quantized checkpoint cannot be exported to ONNX (torchao's
    low-precision weight tensors have no ONNX form); ModelOpt Q/DQ models export."""
    if record.get("backend") == "torchao":
        raise SpecError(
            f"export.checkpoint {path} was quantized with torchao weight-only PTQ, whose int8 / "
            "float8 weight tensors have no ONNX representation in torch.onnx; quantize with "
            "quantize.backend=modelopt.pytorch (its Q/DQ nodes export to ONNX for TensorRT) "
            "or export the float checkpoint of the train job")


def allow_library_tensors(error: str) -> bool:
    """After a ``weights_only`` load failed with ``error``: import the quantization library
    whose tensor classes the checkpoint holds (importing torchao allowlists its int8 / float8
    weight tensors as safe globals) and return True when a retry can succeed."""
    import importlib
    import importlib.util

    if "torchao" in error and importlib.util.find_spec("torchao") is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module("torchao.quantization")
        return True
    return False
