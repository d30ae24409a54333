#!/usr/bin/env python3
"""Regenerate the skill bank's generated files from TAO Core (maintainers).

For every skill in tools/bank_sources.yaml (31: all TAO Core networks that have a dataclass config
and a network config) this writes, deterministically:

  skills/<skill>/schemas/<action>.schema.json          JSON Schema (Draft 2020-12) per action
  skills/<skill>/schemas/deploy_<action>.schema.json   TensorRT evaluate/inference variants
  skills/<skill>/schemas/manifest.json                 actions, file names, versions
  skills/<skill>/references/spec_template_<action>.yaml
  skills/<skill>/references/spec_template_deploy_<action>.yaml
  skills/<skill>/references/skill_info.yaml
  skills/<skill>/SKILL.md                               generated blocks only (between markers)

Usage:
  python tools/gen_schemas.py              write everything
  python tools/gen_schemas.py --check      exit 1 with a diff summary when anything is stale
  python tools/gen_schemas.py --all-networks --out DIR
                                           also every TAO Core network bank_sources.yaml does
                                           not list (a new TAO Core release), into DIR/skills/

The bank ships every skill listed in tools/bank_sources.yaml: the four seed skills, whose SKILL.md
prose is hand-written (`prose: hand-written`: only the blocks between markers are rewritten), and
the rest of TAO Core's catalog (`prose: generated`: the whole SKILL.md comes from TAO Core facts,
see tools/skill_prose.py). A TAO Core network with a dataclass config and a network config that
bank_sources.yaml does not list is an error (listing it is the fix).

TAO Core is a maintainer-only dependency (never needed at run time):
  pip install omegaconf requests && pip install --no-deps nvidia-tao-core==7.3.0
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import importlib
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from tao_sdk import skillmd  # noqa: E402
from tao_sdk.errors import BankFormatError  # noqa: E402
from tao_sdk.schemapath import find_property  # noqa: E402
from skill_prose import PARENT_FUNCTIONS, ProseFacts, backend_block, generated_skill_md  # noqa: E402
from tao_sdk.skillmd import (  # noqa: E402
    FileByFormat,
    FileMapping,
    FilePath,
    FormatPlaceholder,
    INFERENCE_FUNCTIONS,
    begin_marker,
    end_marker,
    render_files,
)

GENERATOR_VERSION = "1.0"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
INSTALL_RECIPE = "pip install omegaconf requests && pip install --no-deps nvidia-tao-core=={version}"
# Top-level spec sections that belong to one action each; a schema keeps only its own action's
# section (plus `train`, whose shared settings such as num_gpus TAO reads in every action).
ACTION_SECTIONS = {
    "train", "evaluate", "inference", "export", "gen_trt_engine", "distill", "quantize", "prune",
    "retrain", "dataset_convert", "calibration_tensorfile", "auto_label", "annotate", "augment",
}
DEPLOY_ACTIONS = ("evaluate", "inference")
_MISSING = "???"


# =========================================================================== TAO Core access
def load_tao_core(version: str):
    """Import TAO Core or exit with the install recipe."""
    try:
        import nvidia_tao_core  # noqa: F401
        from omegaconf import MISSING  # noqa: F401
    except ImportError:
        sys.exit(
            "TAO Core is not installed; gen_schemas.py needs it (maintainers only):\n  "
            + INSTALL_RECIPE.format(version=version)
        )
    from importlib import metadata

    installed = metadata.version("nvidia-tao-core")
    if installed != version:
        sys.exit(f"TAO Core {installed} is installed but bank_sources.yaml pins {version}:\n  "
                 + INSTALL_RECIPE.format(version=version))
    return installed


def network_config_dir() -> Path:
    import nvidia_tao_core

    return Path(nvidia_tao_core.__file__).parent / "microservices" / "handlers" / "network_configs"


def pretrained_models(networks: tuple[str, ...]) -> list[dict[str, Any]]:
    """NVIDIA's pretrained models of a network from TAO Core's PTM catalog
    (``microservices/pretrained_models.csv``: display name, NGC path, network_arch, is_backbone),
    as ``name`` (the NGC version tag, ``MODEL:VERSION`` where tags repeat), ``uri`` (``ngc://``),
    ``display_name`` and ``backbone`` (the is_backbone column, or "backbone" in the display name,
    which is how the catalog marks most of them)."""
    import csv

    import nvidia_tao_core

    path = Path(nvidia_tao_core.__file__).parent / "microservices" / "pretrained_models.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("network_arch") in networks]
    tags = [r["ngc_path"].rsplit(":", 1)[-1] for r in rows]
    out = []
    for row, tag in zip(rows, tags):
        name = tag if tags.count(tag) == 1 else row["ngc_path"].rsplit("/", 1)[-1]
        backbone = (row.get("is_backbone") or "").strip().lower() == "true" or "backbone" in row["displayName"].lower()
        out.append({"name": name, "uri": "ngc://" + row["ngc_path"], "display_name": row["displayName"],
                    "backbone": backbone})
    return out


def read_network_config(name: str) -> dict[str, Any]:
    path = network_config_dir() / f"{name}.config.json"
    return json.loads(path.read_text(encoding="utf-8"))


class NoDataclassConfig(LookupError):
    """TAO Core has no ``nvidia_tao_core.config.<network>.default_config`` module for a network."""


def experiment_config(network: str):
    """The experiment config dataclass of ``network`` in TAO Core, whatever its class is called:
    ``ExperimentConfig`` when the module defines one, else the one dataclass defined in the
    module whose name ends in ``ExperimentConfig`` (clip: ``CLIPExperimentConfig``).

    Raises NoDataclassConfig when TAO Core has no ``default_config`` module for the network (the
    network is then not generated), SystemExit naming the candidates when the module holds none
    or several such classes (fix the lookup rather than skip the network silently)."""
    name = f"nvidia_tao_core.config.{network}.default_config"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise NoDataclassConfig(f"TAO Core has no {name}") from None
        raise
    own = [obj for attr, obj in vars(module).items() if isinstance(obj, type) and dataclasses.is_dataclass(obj)
           and attr.endswith("ExperimentConfig") and obj.__module__ == module.__name__]
    if isinstance(getattr(module, "ExperimentConfig", None), type):
        return module.ExperimentConfig
    if len(own) == 1:
        return own[0]
    raise SystemExit(f"{name}: cannot tell the experiment config class of '{network}' (dataclasses named "
                     f"*ExperimentConfig defined there: {', '.join(c.__name__ for c in own) or 'none'}); "
                     "teach tools/gen_schemas.py experiment_config() which one it is")


# =========================================================================== dataclass -> schema
def _is_missing(value: Any) -> bool:
    return isinstance(value, str) and value == _MISSING


def _clean_text(text: Any) -> str:
    return " ".join(str(text).split()) if text not in (None, "") else ""


def _to_json(value: Any) -> Any:
    """A dataclass default as plain JSON data (MISSING entries dropped)."""
    value = _materialize(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if not _is_missing(v):
                out[f.name] = _to_json(v)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items() if not _is_missing(v)}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return None
    return value


class SchemaBuilder:
    """Turns a TAO Core ExperimentConfig dataclass into a JSON Schema tree.

    Collects, while walking, the dotted paths TAO enables/disables for AutoML and the popular
    fields, and notes problems (default outside its own bounds/enum) in ``warnings``.
    """

    def __init__(self, disabled: list[str] | None = None):
        self.automl_enabled: list[str] = []
        self.automl_disabled: list[str] = []
        self.popular: list[str] = []
        self.warnings: list[str] = []
        # bank-level "never search" paths (a collection disables all its children)
        self.disabled = set(disabled or [])

    # ---- types
    def type_schema(self, hint: Any, sample: Any, path: str) -> dict[str, Any]:
        """JSON Schema for a python type hint (``sample`` is a default instance when known)."""
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if hint is typing.Any or hint is object:
            return {}
        if origin is typing.Union:
            non_null = [a for a in args if a is not type(None)]
            nullable = len(non_null) != len(args)
            if len(non_null) == 1:
                inner = self.type_schema(non_null[0], sample, path)
            else:
                inner = {"anyOf": [self.type_schema(a, None, path) for a in non_null]}
            return _nullable(inner) if nullable else inner
        if origin is typing.Literal:
            return {"enum": list(args)}
        if origin in (list, tuple, typing.List, typing.Tuple) or hint in (list, tuple):
            item_hint = args[0] if args else typing.Any
            item_sample = sample[0] if isinstance(sample, (list, tuple)) and sample else None
            return {"type": "array", "items": self.type_schema(item_hint, item_sample, path + "[]")}
        if origin in (dict, typing.Dict) or hint is dict:
            value_hint = args[1] if len(args) == 2 else typing.Any
            value_schema = self.type_schema(value_hint, None, path + "{}")
            return {"type": "object", "additionalProperties": value_schema if value_schema else True}
        if dataclasses.is_dataclass(hint):
            instance = sample if dataclasses.is_dataclass(sample) else _instantiate(hint)
            return self.object_schema(instance, path, nested_default=False)
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return {"enum": [m.value for m in hint]}
        if hint is bool:
            return {"type": "boolean"}
        if hint is int:
            return {"type": "integer"}
        if hint is float:
            return {"type": "number"}
        if hint is str:
            return {"type": "string"}
        return {}

    # ---- objects
    def object_schema(self, instance: Any, path: str, nested_default: bool = True) -> dict[str, Any]:
        """Closed object schema (additionalProperties false) for a dataclass instance."""
        cls = type(instance)
        hints = typing.get_type_hints(cls)
        props: dict[str, Any] = {}
        required: list[str] = []
        for f in dataclasses.fields(instance):
            value = _materialize(getattr(instance, f.name))
            dotted = f"{path}.{f.name}" if path else f.name
            meta = dict(f.metadata)
            prop = self.field_schema(hints.get(f.name, typing.Any), value, meta, dotted)
            props[f.name] = prop
            if _is_missing(value) or str(meta.get("required", "")).lower() == "yes":
                required.append(f.name)
        schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            schema["required"] = required
        return schema

    def field_schema(self, hint: Any, value: Any, meta: dict[str, Any], dotted: str) -> dict[str, Any]:
        """Schema of one dataclass field: its type plus TAO metadata under clear keys."""
        schema = dict(self.type_schema(hint, value, dotted))
        value_type = meta.get("value_type") or ""
        if meta.get("display_name"):
            schema["title"] = _clean_text(meta["display_name"])
        if meta.get("description"):
            schema["description"] = _clean_text(meta["description"])
        if value_type:
            schema["tao_value_type"] = value_type
        # default: the dataclass default; when that is None, TAO's declared default_value
        # (e.g. inference input_width None -> 640), so templates match TAO's own UI defaults.
        if not _is_missing(value) and not dataclasses.is_dataclass(value):
            default = _to_json(value)
            declared = meta.get("default_value")
            if default is None and declared not in (None, "") and not _is_missing(declared) \
                    and value_type in ("int", "float", "string", "categorical", "ordered_int", "bool"):
                default = _coerce(declared, value_type)
            schema["default"] = default
        declared = meta.get("default_value")
        if isinstance(declared, dict) and declared and "properties" not in schema and \
                isinstance(schema.get("additionalProperties"), (dict, bool)):
            # TAO types some data-source dicts as Dict[str, str] but declares (and its code reads)
            # list values, e.g. infer_data_sources.image_dir: [..]; follow the declared shape.
            schema["properties"] = {k: _shape_of(v) for k, v in declared.items()}
        self._bounds(schema, meta, value_type, dotted)
        self._enum(schema, meta, value_type, dotted)
        if meta.get("regex") and schema.get("type") in ("string", ["string", "null"]):
            schema["pattern"] = meta["regex"]
        examples = meta.get("examples")
        if examples not in (None, "", []):
            schema["examples"] = examples if isinstance(examples, list) else [examples]
        for key in ("math_cond", "parent_param", "depends_on"):
            if meta.get(key) not in (None, ""):
                schema[key] = _clean_text(meta[key])
        if meta.get("option_weights") not in (None, ""):
            schema["option_weights"] = list(meta["option_weights"])
        if meta.get("link") and str(meta["link"]).startswith("http"):
            schema["link"] = meta["link"]
        if str(meta.get("popular", "")).lower() == "yes":
            schema["popular"] = True
            self.popular.append(dotted)
        automl = str(meta.get("automl_enabled", "")).upper()
        is_collection = value_type in ("collection", "list", "subset_list", "optional_list", "dict") \
            or dataclasses.is_dataclass(value)
        if dotted in self.disabled:
            schema["automl_enabled"] = False
            self.automl_disabled.append(dotted)
        elif automl == "TRUE":
            schema["automl_enabled"] = True
            self.automl_enabled.append(dotted)
        elif automl == "FALSE" and not is_collection:
            # Collections default to FALSE in TAO's field helpers; only an explicit FALSE on a
            # leaf is a real "never search this" statement.
            schema["automl_enabled"] = False
            self.automl_disabled.append(dotted)
        self._check_default(schema, dotted)
        return schema

    def _bounds(self, schema: dict, meta: dict, value_type: str, dotted: str) -> None:
        target = schema
        if _json_type(schema) == "array" and _json_type(schema.get("items", {})) in ("integer", "number"):
            target = schema["items"]
        elif _json_type(schema) not in ("integer", "number"):
            return
        for meta_key, json_key in (("valid_min", "minimum"), ("valid_max", "maximum")):
            raw = meta.get(meta_key)
            if raw in (None, ""):
                continue
            if str(raw).strip().lower() in ("inf", "+inf", "-inf", "infinity"):
                schema[f"tao_{meta_key}"] = str(raw).strip().lower()  # no bound; JSON has no Infinity
                continue
            try:
                target[json_key] = int(raw) if _json_type(target) == "integer" and float(raw).is_integer() else float(raw)
            except (TypeError, ValueError):
                self.warnings.append(f"{dotted}: ignored non-numeric {meta_key} {raw!r}")

    def _enum(self, schema: dict, meta: dict, value_type: str, dotted: str) -> None:
        raw = meta.get("valid_options")
        if raw in (None, ""):
            return
        options = raw if isinstance(raw, list) else [o.strip() for o in str(raw).split(",") if o.strip()]
        target = schema["items"] if _json_type(schema) == "array" and "items" in schema else schema
        kind = _json_type(target)
        try:
            if kind == "integer":
                options = [int(o) for o in options]
            elif kind == "number":
                options = [float(o) for o in options]
            elif kind == "boolean":
                options = [str(o).lower() == "true" for o in options]
        except (TypeError, ValueError):
            self.warnings.append(f"{dotted}: valid_options {raw!r} do not match type {kind}; kept as strings")
            options = [str(o) for o in options]
            kind = "string"
        if kind not in ("integer", "number", "string", "boolean"):
            schema["tao_valid_options"] = options
            return
        if isinstance(target.get("type"), list) and "null" in target["type"]:
            options = options + [None]
        target["enum"] = options

    def _check_default(self, schema: dict, dotted: str) -> None:
        if "default" not in schema:
            return
        schema["default"] = _coerce_to_schema(schema["default"], schema)
        import jsonschema

        probe = {k: v for k, v in schema.items() if k != "default"}
        errors = list(jsonschema.Draft202012Validator(probe).iter_errors(schema["default"]))
        if not errors:
            return
        self.warnings.append(f"{dotted}: TAO default {schema['default']!r} violates its own metadata "
                             f"({errors[0].message}); the declared bound/enum is kept under tao_declared_*")
        _widen(schema)


def _coerce_to_schema(value: Any, schema: dict) -> Any:
    """Coerce a string default the way OmegaConf does for typed fields ('TRUE' -> True)."""
    kind = _json_type(schema)
    if isinstance(value, str):
        if kind == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        try:
            if kind == "integer" and re.fullmatch(r"[+-]?\d+", value):
                return int(value)
            if kind == "number" and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value):
                return float(value)
        except ValueError:
            return value
    return value


def _shape_of(value: Any) -> dict[str, Any]:
    """JSON Schema type of a declared example value (lists -> array of the first item's type)."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array", "items": _shape_of(value[0]) if value else {}}
    if isinstance(value, dict):
        return {"type": "object"}
    return {}


def _widen(schema: dict) -> None:
    """Make TAO's own default valid: extend the bound / enum to include it, keeping what TAO
    declared under tao_declared_* so nothing is lost."""
    default = schema["default"]
    target = schema["items"] if _json_type(schema) == "array" and "items" in schema else schema
    values = default if target is not schema and isinstance(default, list) else [default]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if "minimum" in target and numbers and min(numbers) < target["minimum"]:
        schema["tao_declared_minimum"] = target["minimum"]
        target["minimum"] = min(numbers)
    if "maximum" in target and numbers and max(numbers) > target["maximum"]:
        schema["tao_declared_maximum"] = target["maximum"]
        target["maximum"] = max(numbers)
    if "enum" in target:
        missing = [v for v in values if v not in target["enum"]]
        if missing:
            schema["tao_declared_enum"] = list(target["enum"])
            target["enum"] = target["enum"] + missing


def _json_type(schema: dict) -> str | None:
    t = schema.get("type")
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"]
        return non_null[0] if len(non_null) == 1 else None
    return t


def _nullable(schema: dict) -> dict:
    schema = dict(schema)
    t = schema.get("type")
    if isinstance(t, str):
        schema["type"] = [t, "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = schema["enum"] + [None]
        return schema
    if isinstance(t, list):
        if "null" not in t:
            schema["type"] = t + ["null"]
        return schema
    if not schema:
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _coerce(value: Any, value_type: str) -> Any:
    try:
        if value_type in ("int", "ordered_int"):
            return int(value)
        if value_type == "float":
            return float(value)
        if value_type == "bool":
            return str(value).lower() == "true"
    except (TypeError, ValueError):
        return value
    return value


def _materialize(value: Any) -> Any:
    """TAO sometimes passes a dataclass *class* as a default (rtdetr model.frozen_fm); OmegaConf
    instantiates it, so do we."""
    if isinstance(value, type) and dataclasses.is_dataclass(value):
        return _instantiate(value)
    return value


def _instantiate(cls):
    try:
        return cls()
    except TypeError:
        return None


# =========================================================================== per-action schemas
def _get(tree: dict, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


def _remove_path(schema: dict, default: dict, dotted: str) -> None:
    parts = dotted.split(".")
    node, dnode = schema, default
    for part in parts[:-1]:
        node = node.get("properties", {}).get(part)
        dnode = dnode.get(part, {}) if isinstance(dnode, dict) else {}
        if node is None:
            return
    node.get("properties", {}).pop(parts[-1], None)
    if "required" in node and parts[-1] in node["required"]:
        node["required"].remove(parts[-1])
        if not node["required"]:
            del node["required"]
    if isinstance(dnode, dict):
        dnode.pop(parts[-1], None)


def _set_default(schema: dict, default: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = schema
    for part in parts:
        node = node["properties"][part]
    node["default"] = value
    d = default
    for part in parts[:-1]:
        d = d.setdefault(part, {})
    d[parts[-1]] = value


def _required_paths(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for name in schema.get("required", []):
        prop = schema["properties"][name]
        dotted = f"{prefix}.{name}" if prefix else name
        if "default" not in prop and _json_type(prop) != "object":
            out.append(dotted)
    for name, prop in schema.get("properties", {}).items():
        if _json_type(prop) == "object" and "properties" in prop:
            out += _required_paths(prop, f"{prefix}.{name}" if prefix else name)
    return out


def _prune_tracked(paths: list[str], keep: dict) -> list[str]:
    return sorted({p for p in paths if _has_path(keep, p)})


def _has_path(schema: dict, dotted: str) -> bool:
    node = schema
    for part in dotted.split("."):
        props = node.get("properties") if isinstance(node, dict) else None
        if not props or part not in props:
            return False
        node = props[part]
    return True


def _prune_required(schema: dict) -> None:
    """Drop `required` entries whose property was filtered away (recursively)."""
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r in schema.get("properties", {})]
        if not schema["required"]:
            del schema["required"]
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            _prune_required(prop)


def action_schema(full: dict, full_default: dict, builder: SchemaBuilder, *, skill: str, network: str,
                  action: str, actions: list[str], removed: list[str], default_overrides: dict,
                  tao_version: str, deploy: bool = False) -> dict:
    """The schema of one action: its own section, `train`, and every non-action section."""
    import copy

    drop = (ACTION_SECTIONS | set(actions)) - {action, "train"}
    props = {k: copy.deepcopy(v) for k, v in full["properties"].items() if k not in drop}
    default = {k: copy.deepcopy(v) for k, v in full_default.items() if k not in drop}
    schema = {"type": "object", "properties": props, "additionalProperties": False,
              "required": [k for k in full.get("required", []) if k in props]}
    for dotted in removed:
        _remove_path(schema, default, dotted)
    for dotted, value in default_overrides.items():
        if not _has_path(full, dotted):
            raise SystemExit(f"{skill}: template override '{dotted}' is not a field of the {network} config; "
                             "fix tools/bank_sources.yaml")
        if _has_path(schema, dotted):
            _set_default(schema, default, dotted, value)
    if deploy:
        section = schema["properties"][action]
        if "checkpoint" in section.get("required", []):
            section["required"].remove("checkpoint")
        section.setdefault("required", [])
        if "trt_engine" in section["properties"]:
            # TensorRT evaluate/inference run on an engine: it must be given (the SDK fills it
            # from a gen_trt_engine parent job).
            if "trt_engine" not in section["required"]:
                section["required"].append("trt_engine")
            section["properties"]["trt_engine"].pop("default", None)
            section["properties"]["trt_engine"]["type"] = "string"
            default.get(action, {}).pop("trt_engine", None)
        default.get(action, {}).pop("checkpoint", None)
    # a top-level section is required when something inside it must be provided
    top_required = []
    for name, prop in schema["properties"].items():
        if name in full.get("required", []) or _required_paths(prop, name) and name != "train":
            top_required.append(name)
    if action == "train" and "train" in schema["properties"]:
        top_required.append("train") if "train" not in top_required else None
    schema["required"] = top_required
    if not schema["required"]:
        del schema["required"]
    _prune_required(schema)
    title_action = f"TensorRT {action}" if deploy else action
    out = {
        "$schema": SCHEMA_DIALECT,
        "$id": f"tao-skill-bank:{skill}/{'deploy_' if deploy else ''}{action}",
        "title": f"{skill} {title_action} spec",
        "description": f"Spec of the TAO '{network}' {title_action} action, generated from TAO Core {tao_version} "
                       "dataclasses by tools/gen_schemas.py. TAO field metadata is kept under the keys "
                       "tao_value_type, automl_enabled, math_cond, depends_on, parent_param, option_weights, popular.",
        **schema,
        "default": default,
        "automl_default_parameters": _prune_tracked(builder.automl_enabled, schema),
        "automl_disabled_parameters": _prune_tracked(builder.automl_disabled, schema),
        "popular": _prune_tracked(builder.popular, schema),
        "x-tao": {"network": network, "action": action, "deploy": deploy, "tao_core_version": tao_version,
                  "generator_version": GENERATOR_VERSION},
    }
    return out


def apply_schema_exceptions(schema: dict, exceptions: list[dict], network: str, action: str, skill: str) -> None:
    """Apply bank_sources.yaml ``schema_exceptions`` (shipped usage beats TAO Core's declared
    metadata) to one action schema; TAO's declared value stays under ``tao_declared_<key>`` and
    the reason under ``tao_exception``. An exception naming a field the network lacks is an error."""
    for exc in exceptions:
        if network not in exc["networks"] or (exc.get("actions") and action not in exc["actions"]):
            continue
        node = find_property(schema, exc["path"])
        if node is None:
            if exc["path"].split(".")[0] in schema["properties"]:
                raise SystemExit(f"{skill}: schema exception '{exc['path']}' is not a field of the {network} "
                                 f"{action} schema; fix tools/bank_sources.yaml")
            continue
        for key, value in exc["set"].items():
            if key in node and node[key] != value:
                node[f"tao_declared_{key}"] = node[key]
            node[key] = value
        node["tao_exception"] = exc["why"]


# =========================================================================== templates
def render_template(schema: dict, *, skill: str, action: str, deploy: bool, fillers: dict[str, str]) -> str:
    """YAML spec template from the schema's top-level default, with a header listing fields to fill."""
    to_fill = _required_paths(schema)
    label = f"TensorRT {action}" if deploy else action
    lines = [
        f"# {skill}: {label} spec template.",
        f"# Generated by tools/gen_schemas.py from TAO Core {schema['x-tao']['tao_core_version']}; do not edit.",
        f"# Validate against schemas/{'deploy_' if deploy else ''}{action}.schema.json.",
    ]
    if to_fill:
        lines.append("# Fields without a default (the SDK fills those it can from SKILL.md; set the rest):")
        for path in to_fill:
            how = fillers.get(path)
            lines.append(f"#   {path}" + (f"  <- SDK: {how}" if how else "  <- set it"))
    body = yaml.safe_dump(schema["default"], sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    return "\n".join(lines) + "\n" + body


# =========================================================================== SKILL.md blocks
def data_source_rows(ncfg: dict, warnings: list[str] | None = None,
                     left_out: list[tuple[str, str, str]] | None = None) -> list[tuple[str, str, str, str, str]]:
    """Dataset table rows; entries the table cannot express go to ``left_out`` as (action, key, why)."""
    rows = []
    for action in sorted(ncfg.get("data_sources", {})):
        for key, entry in ncfg["data_sources"][action].items():
            files = _table_files(entry)
            if files is None:
                # TAO forms the table cannot express (conditional / metadata-derived values, job-id
                # sources, convert-job paths...): leave them out rather than write a wrong row.
                if warnings is not None:
                    warnings.append(f"data source {action} {key} ({json.dumps(entry, sort_keys=True)}) "
                                    "cannot be written in the SKILL.md table; left out")
                if left_out is not None:
                    left_out.append((action, key, _why_not_in_table(entry)))
                continue
            rows.append((action, key, entry["source"], files,
                         "Yes" if entry.get("multiple_sources") else "No"))
    return rows


def _why_not_in_table(entry: Any) -> str:
    """A short reason why a data-source entry has no table row (for the generated prose)."""
    if not isinstance(entry, dict):
        return "not a data-source mapping"
    text = json.dumps(entry)
    if "conditional" in entry:
        return "depends on the dataset format (conditional)"
    if "value_from_metadata" in entry:
        return "a value derived from dataset metadata"
    if entry.get("source") not in skillmd.DATASET_ROLES:
        return f"source `{entry.get('source')}` is not a dataset role"
    if "_job_id}" in text or "use_dataset_convert" in text:
        return "a file written by another job (e.g. dataset_convert)"
    if "value" in entry:
        return "a value TAO's service sets from its dataset record (`value`), not a file"
    if entry.get("path") == "":
        return "the bare dataset root (no file name)"
    return "a form the Files column cannot express"


def _table_files(entry: Any) -> str | None:
    """The Files cell of a data-source entry, or None when the table format cannot express it."""
    if not isinstance(entry, dict) or entry.get("source") not in skillmd.DATASET_ROLES or "conditional" in entry:
        return None
    try:
        spec = _file_spec(entry)
        text = render_files(spec)
        if skillmd.parse_files(text, "generator") != spec:
            return None
    except (KeyError, TypeError, AttributeError, BankFormatError):
        return None
    return text


def _transforms(entry: dict) -> list[str]:
    t = entry.get("transform") or []
    return [t] if isinstance(t, str) else list(t)


def _file_spec(entry: Any):
    if isinstance(entry, str):
        if entry == "dataset_format":
            return FormatPlaceholder()
        return FilePath(entry)
    if "mapping" in entry:
        return FileMapping(tuple((k, _file_spec(v)) for k, v in entry["mapping"].items()))
    if "path_from_format" in entry:
        options = entry["path_from_format"]
        wrap = "wrap_in_list" in _transforms(entry)
        by_format = tuple((fmt, FilePath(p, wrap)) for fmt, p in options.items() if fmt != "*")
        default = FilePath(options["*"], wrap) if "*" in options else None
        return FileByFormat(by_format, default)
    return FilePath(entry["path"] or skillmd.ROOT_ITSELF, "wrap_in_list" in _transforms(entry))


def _literal_meaning(value: str) -> str:
    if value.startswith("{") and "link" in value:
        return "literal: pretrained weights download descriptor (link -> destination_path)"
    return "literal value"


def inference_rows(ncfg: dict, literal_overrides: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for action in sorted(ncfg.get("spec_params", {})):
        for key in sorted(ncfg["spec_params"][action]):
            value = literal_overrides.get(key, ncfg["spec_params"][action][key])
            meaning = INFERENCE_FUNCTIONS.get(value) or _literal_meaning(str(value))
            rows.append((action, key, str(value), meaning))
    return rows


def _rows_in_schemas(rows: list[tuple], schemas: dict[str, dict], warnings: list[str],
                     left_out: list[tuple[str, str, str]] | None = None) -> list[tuple]:
    """Rows whose (action, spec key) exists in that action's schema. TAO network configs name a
    few keys their dataclasses lack (or actions without a schema); the SDK would write them into
    a spec the schema rejects, so they are left out with a warning (and listed in ``left_out``)."""
    kept = []
    for row in rows:
        action, key = row[0], row[1]
        if action not in schemas or find_property(schemas[action], key) is None:
            why = (f"no '{action}' schema" if action not in schemas else f"'{key}' is not in the {action} schema")
            warnings.append(f"network config row {action} {key}: {why}; left out of SKILL.md")
            if left_out is not None:
                left_out.append((action, key, why))
            continue
        kept.append(row)
    return kept


def _check_recorded_left_out(skill: str, left_out: list[tuple[str, str, str]], recorded: dict) -> list[tuple]:
    """Every spec_params row kept out of the tables must be recorded in bank_sources.yaml
    (``spec_params_left_out: {"<action> <key>": reason}``), and nothing recorded may be stale.
    Returns (action, key, recorded reason) rows for the prose."""
    found = {f"{a} {k}": why for a, k, why in left_out}
    unrecorded = sorted(set(found) - set(recorded or {}))
    stale = sorted(set(recorded or {}) - set(found))
    if unrecorded or stale:
        raise SystemExit(
            f"{skill}: tools/bank_sources.yaml spec_params_left_out is out of date: "
            + (f"record {', '.join(repr(u) + ' (' + found[u] + ')' for u in unrecorded)} with a reason" if unrecorded else "")
            + ("; " if unrecorded and stale else "")
            + (f"remove {', '.join(map(repr, stale))} (now in the tables)" if stale else ""))
    return [(k.split(" ", 1)[0], k.split(" ", 1)[1], str(recorded[k])) for k in sorted(found)]


def _table(header: tuple[str, ...], rows: list[tuple], code_cols: set[int]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [f"`{c}`" if i in code_cols else str(c) for i, c in enumerate(row)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def training_requirements_block(info: dict) -> str:
    metric = info["monitoring_metric"]
    better = "higher is better" if metric["direction"] == "max" else "lower is better"
    launch = info["launch"]
    if launch is None:
        launch_text = "by the TAO container's own launcher (the bank records no launch facts for this network)"
    else:
        launch_text = ("`torchrun`" if launch["method"] == "torchrun" else "Lightning-managed (one `python` process)") \
            + f", devices via `{launch['visible_devices_env']}`"
    lines = [
        f"- Dataset type: `{info['dataset_type']}`",
        "- Formats: " + ", ".join(f"`{f}`" for f in info["formats"]),
        f"- Monitoring metric: `{metric['name']}` ({better}; direction `{metric['direction']}`)",
        "- Actions: " + ", ".join(f"`{a}`" for a in info["actions"]),
        f"- AutoML enabled: {'yes' if info['automl_enabled'] else 'no'}",
        f"- Launch: {launch_text}",
    ]
    if info.get("model_type"):
        lines.append(f"- Pinned model type: `model.model_type: {info['model_type']}`")
    return "\n".join(lines)


def update_skill_md(text: str, blocks: dict[str, str], path: Path) -> str:
    for name, content in blocks.items():
        text = skillmd.replace_generated_block(text, name, content, path)
    return text


def default_skill_md(skill: str, display: str, network: str, actions: list[str]) -> str:
    """A minimal SKILL.md for a hand-written-prose skill whose SKILL.md does not exist yet (only the
    generated blocks; the maintainer writes the prose around them)."""
    sections = []
    for title, block in (("Which Backend Runs It", "backend"), ("Training Requirements", "training-requirements"),
                         ("Per-Action Dataset Requirements", "dataset-requirements"),
                         ("Spec Param / Parent Model Inference", "inference-mappings")):
        sections.append(f"## {title}\n\n{begin_marker(block)}\n{end_marker(block)}\n")
    return (f"---\nname: {skill}\ndescription: Train and deploy TAO {display} ({network}); actions "
            f"{', '.join(actions)}.\n---\n\n# {display}\n\n" + "\n".join(sections))


# =========================================================================== one skill
def metric_direction(name: str, known: dict[str, str]) -> tuple[str, str]:
    if name in known:
        return known[name], "known-metric"
    lowered = name.lower()
    lower_better = ("loss", "epe", "err", "rmse", "mae", "abs_rel", "sq_rel", "bp", "d1", "fid")
    return ("min" if any(t in lowered for t in lower_better) else "max"), "heuristic"


def generate_skill(skill: str, src: dict, cfg: dict, out_root: Path, tao_version: str) -> tuple[dict[Path, str], list[str]]:
    """All generated files of one skill, as {path: content}, plus generator warnings."""
    network, ncfg_name = src["network"], src["network_config"]
    ncfg = read_network_config(ncfg_name)
    actions = list(ncfg.get("api_params", {}).get("actions", []))
    exp_cls = experiment_config(network)
    builder = SchemaBuilder(src.get("automl_disabled"))
    instance = exp_cls()
    full = builder.object_schema(instance, "")
    # TAO's declared defaults (default_value) are in the per-field schema; assemble the tree.
    full_default = _defaults_from_schema(full, _to_json(instance))
    model_type = src.get("model_type")
    literal_overrides = {"model.model_type": model_type} if model_type else {}
    info = _skill_info(skill, src, cfg, ncfg, actions, tao_version)

    skill_dir = out_root / "skills" / skill
    files: dict[Path, str] = {}
    manifest: dict[str, Any] = {"skill": skill, "network": network, "network_config": ncfg_name,
                                "tao_core_version": tao_version, "generator_version": GENERATOR_VERSION,
                                "actions": {}, "deploy_actions": {}}
    action_schemas = _action_files(files, manifest, skill_dir, full, full_default, builder, skill=skill, src=src,
                                   cfg=cfg, ncfg=ncfg, actions=actions, tao_version=tao_version,
                                   default_overrides={**literal_overrides, **src.get("template_overrides", {})})
    _check_bank_facts(skill, info, action_schemas)
    blocks, facts = _skill_md_blocks(skill, src, info, ncfg, manifest, action_schemas, builder, literal_overrides)
    md_path = skill_dir / "SKILL.md"
    if src.get("prose") == "generated":
        files[md_path] = generated_skill_md(info, src.get("summary") or f"TAO Core network `{network}`.", blocks, facts)
    else:
        existing = md_path.read_text(encoding="utf-8") if md_path.exists() else \
            default_skill_md(skill, info["display_name"], network, actions)
        files[md_path] = update_skill_md(existing, blocks, md_path)
    # The checker compares these digests with SKILL.md to catch hand edits of generated blocks.
    manifest["generated_blocks"] = {name: skillmd.block_digest(content) for name, content in blocks.items()}
    files[skill_dir / "schemas" / "manifest.json"] = json.dumps(manifest, indent=2) + "\n"
    files[skill_dir / "references" / "skill_info.yaml"] = (
        f"# {skill}: model facts. Generated by tools/gen_schemas.py from TAO Core {tao_version} "
        "and tools/bank_sources.yaml; do not edit.\n"
        + yaml.safe_dump(info, sort_keys=False, default_flow_style=False, width=1000))

    return files, builder.warnings


def _skill_info(skill: str, src: dict, cfg: dict, ncfg: dict, actions: list[str], tao_version: str) -> dict[str, Any]:
    """The skill's ``references/skill_info.yaml`` facts (network config, the bank's sources,
    the monitoring metric and its direction, the TAO container)."""
    network, ncfg_name = src["network"], src["network_config"]
    api = ncfg.get("api_params", {})
    metrics = ncfg.get("metrics", {})
    metric_name = metrics.get("monitoring_metric") or (metrics.get("available_metrics") or ["loss"])[0]
    direction, dsource = metric_direction(metric_name, cfg.get("metric_directions", {}))
    if src.get("metric_direction"):
        direction, dsource = src["metric_direction"], "bank"
    launch = src.get("launch")
    info = {
        "skill": skill,
        "kind": "model",
        "network": network,
        "network_config": ncfg_name,
        "network_alias": bool(src.get("network_alias", True)),
        "model_type": src.get("model_type"),
        "display_name": src.get("display_name", network),
        "task": src.get("task") or api.get("dataset_type", network),
        "dataset_type": api.get("dataset_type", network),
        "formats": list(api.get("formats") or ["default"]),
        "actions": actions,
        "monitoring_metric": {"name": metric_name, "direction": direction, "direction_source": dsource,
                              "available": list(metrics.get("available_metrics", []))},
        "automl_enabled": bool(src.get("automl_enabled", bool(ncfg.get("automl_spec_params")))),
        "launch": None if launch is None else {
            "method": launch,
            "visible_devices_env": "CUDA_VISIBLE_DEVICES" if launch == "torchrun" else "TAO_VISIBLE_DEVICES"},
        "checkpoint_prefix": src.get("checkpoint_prefix"),
        "hardware": src.get("hardware"),  # only where the bank knows it (dropped below otherwise)
        "spec_rules": src.get("spec_rules") or [],
        **({"input_size": src["input_size"]} if src.get("input_size") else {}),  # fixed-size networks only
        "pretrained_models": pretrained_models((network, ncfg_name)),
        "tao_container": tao_container(ncfg, network, actions, cfg.get("tao_containers", {}), skill),
        "tao_core_version": tao_version,
        "generator_version": GENERATOR_VERSION,
    }
    for optional in ("hardware", "pretrained_models"):  # only where the bank knows them
        if not info[optional]:
            del info[optional]
    return info


def _action_files(files: dict[Path, str], manifest: dict[str, Any], skill_dir: Path, full: dict, full_default: Any,
                  builder: "SchemaBuilder", *, skill: str, src: dict, cfg: dict, ncfg: dict, actions: list[str],
                  tao_version: str, default_overrides: dict[str, Any]) -> dict[str, dict]:
    """Each action's schema and spec template (and its TensorRT deploy variant) into ``files`` and
    ``manifest``; returns the (non-deploy) schemas by action."""
    network = src["network"]
    rules = ncfg.get("dynamic_config", {}).get("action_rules", {})
    spec_params = ncfg.get("spec_params", {})
    action_schemas: dict[str, dict] = {}
    for action in actions:
        if action not in full["properties"] and action not in ("train",):
            builder.warnings.append(f"{skill}: action '{action}' has no '{action}' section in ExperimentConfig")
        fillers = {k: v for k, v in spec_params.get(action, {}).items() if v in INFERENCE_FUNCTIONS}
        variants = [(False, action)]
        if action in DEPLOY_ACTIONS and "gen_trt_engine" in actions and \
                "trt_engine" in full["properties"].get(action, {}).get("properties", {}):
            variants.append((True, action))
        if action == "gen_trt_engine":
            variants = [(False, action), (True, action)]
        for deploy, act in variants:
            schema = action_schema(full, full_default, builder, skill=skill, network=network, action=act,
                                   actions=actions, removed=rules.get(act, {}).get("remove", []),
                                   default_overrides=default_overrides, tao_version=tao_version,
                                   deploy=deploy and act != "gen_trt_engine")
            apply_schema_exceptions(schema, cfg.get("schema_exceptions") or [], network, act, skill)
            is_deploy_variant = deploy and act != "gen_trt_engine"
            schema_name = f"{'deploy_' if is_deploy_variant else ''}{act}.schema.json"
            files[skill_dir / "schemas" / schema_name] = json.dumps(schema, indent=2, allow_nan=False) + "\n"
            template_name = f"spec_template_{'deploy_' if deploy else ''}{act}.yaml"
            files[skill_dir / "references" / template_name] = render_template(
                schema, skill=skill, action=act, deploy=deploy, fillers=fillers)
            target = manifest["deploy_actions"] if deploy else manifest["actions"]
            target[act] = {"schema": schema_name, "template": template_name}
            if not deploy:
                action_schemas[act] = schema
    manifest["actions"] = {a: manifest["actions"][a] for a in actions if a in manifest["actions"]}
    return action_schemas


def _skill_md_blocks(skill: str, src: dict, info: dict, ncfg: dict, manifest: dict[str, Any],
                     action_schemas: dict[str, dict], builder: "SchemaBuilder",
                     literal_overrides: dict[str, Any]) -> tuple[dict[str, str], "ProseFacts"]:
    """The generated SKILL.md blocks (backend, training requirements, dataset and inference
    tables) and the facts the hand-written or generated prose is checked against."""
    facts = ProseFacts(deploy_actions=[a for a in manifest["deploy_actions"] if a != "gen_trt_engine"],
                       metrics_declared=bool(ncfg.get("metrics", {})),
                       action_commands=info["tao_container"].get("commands", {}),
                       automl_parameters=list(action_schemas.get("train", {}).get("automl_default_parameters", [])))
    left_out_params: list[tuple[str, str, str]] = []
    data_rows = _rows_in_schemas(data_source_rows(ncfg, builder.warnings, facts.left_out_sources), action_schemas,
                                 builder.warnings, facts.left_out_sources)
    mapping_rows = _rows_in_schemas(inference_rows(ncfg, literal_overrides), action_schemas, builder.warnings,
                                    left_out_params)
    facts.left_out_params = _check_recorded_left_out(skill, left_out_params, src.get("spec_params_left_out"))
    for action, _key, source, _files, _multi in data_rows:
        roles = facts.roles.setdefault(action, [])
        if source not in roles:
            roles.append(source)
    facts.parent_actions = sorted({row[0] for row in mapping_rows if row[2] in PARENT_FUNCTIONS})
    blocks = {
        "backend": backend_block(info, facts),
        "training-requirements": training_requirements_block(info),
        "dataset-requirements": _table(skillmd.DATASET_COLUMNS, data_rows, {1, 2, 3}),
        "inference-mappings": _table(skillmd.INFERENCE_COLUMNS, mapping_rows, {1, 2}),
    }
    return blocks, facts


def tao_container(ncfg: dict, network: str, actions: list[str], images: dict[str, str], skill: str) -> dict[str, Any]:
    """Which TAO container runs the network (api_params.image; TensorRT actions in TAO_DEPLOY) and
    the container command of actions TAO maps to another network/verb (actions_mapping)."""
    api = ncfg.get("api_params", {})

    def ref(name: str) -> str:
        if name not in images:
            raise SystemExit(f"{skill}: TAO container '{name}' has no image in tools/bank_sources.yaml "
                             "tao_containers; add it")
        return images[name]

    out: dict[str, Any] = {"image": ref(api.get("image") or "TAO_PYTORCH")}
    if "gen_trt_engine" in actions:
        out["deploy_image"] = ref("TAO_DEPLOY")
    overrides = {a: ref(i) for a, i in sorted((api.get("image_override_per_action") or {}).items())}
    if overrides:
        out["action_images"] = overrides
    mapping = ncfg.get("actions_mapping") or {}
    commands = {}
    for action in actions:
        entry = mapping.get(action) or mapping.get("*") or {}
        command = f"{entry.get('network', network)} {entry.get('action', action)}"
        if command != f"{network} {action}":
            commands[action] = command
    if commands:
        out["commands"] = commands
    return out


def _check_spec_rules(skill: str, rules: list[dict], schemas: dict[str, dict]) -> None:
    """Every dotted path a bank_sources.yaml spec rule names must exist in its actions' schemas."""
    for rule in rules:
        paths = [rule["field"], *rule.get("image_sizes", []), *rule.get("factors", [])]
        if isinstance(rule.get("strides"), str):
            paths.append(rule["strides"])
        for action in rule.get("actions") or list(schemas):
            missing = [p for p in paths if action in schemas and find_property(schemas[action], p) is None]
            if missing:
                raise SystemExit(f"{skill}: spec rule on {rule['field']} names {missing}, absent from the {action} "
                                 "schema; fix tools/bank_sources.yaml")


def _check_bank_facts(skill: str, info: dict, schemas: dict[str, dict]) -> None:
    """The dotted paths of the hand-written bank facts (spec rules, input size) exist."""
    _check_spec_rules(skill, info["spec_rules"], schemas)
    _check_input_size(skill, info.get("input_size"), schemas)


def _check_input_size(skill: str, fact: dict | None, schemas: dict[str, dict]) -> None:
    """The ``input_size`` fact of bank_sources.yaml: ``from`` (the trained ``[height, width]``)
    must be a train key, every ``to`` pair a key of its action's schema."""
    if fact is None:
        return
    wrong = [] if find_property(schemas.get("train", {}), fact["from"]) is not None else [f"train: {fact['from']}"]
    for action, keys in fact["to"].items():
        wrong += [f"{action}: {k}" for k in keys if find_property(schemas.get(action, {}), k) is None]
    if wrong or any(len(keys) != 2 for keys in fact["to"].values()):
        raise SystemExit(f"{skill}: input_size names {wrong or fact['to']} (absent from the schema, or not a "
                         "[height key, width key] pair); fix tools/bank_sources.yaml")


def _defaults_from_schema(schema: dict, fallback: Any) -> Any:
    """Assemble the default tree from per-field schema defaults (TAO's declared defaults)."""
    if _json_type(schema) == "object" and "properties" in schema and isinstance(fallback, dict):
        out = {}
        for name, prop in schema["properties"].items():
            if "default" in prop:
                out[name] = prop["default"]
            elif name in fallback:
                out[name] = _defaults_from_schema(prop, fallback[name])
        return out
    return fallback


# =========================================================================== driver
def load_sources() -> dict:
    return yaml.safe_load((ROOT / "tools" / "bank_sources.yaml").read_text(encoding="utf-8"))


def all_network_sources() -> dict[str, dict]:
    """Every network config whose dataclass config imports: {skill: source entry}."""
    out = {}
    for path in sorted(network_config_dir().glob("*.config.json")):
        name = path.name[: -len(".config.json")]
        ncfg = json.loads(path.read_text(encoding="utf-8"))
        mapping = (ncfg.get("actions_mapping") or {}).get("*", {})
        network = mapping.get("network", name)
        try:
            experiment_config(network)
        except NoDataclassConfig:  # networks without a dataclass config are not generated
            continue
        if not ncfg.get("api_params", {}).get("actions"):
            continue
        out["tao-train-" + name.replace("_", "-")] = {"network": network, "network_config": name,
                                                      "display_name": name}
    return out


def network_aliases(sources: dict) -> dict[str, bool]:
    """{skill: whether ``bank.get(<network>)`` resolves to it}: a network's only skill, or the one
    skill bank_sources.yaml marks ``network_alias: true`` where several skills share a network
    (depth_net: stereo and mono; visual_changenet: classify and segment)."""
    by_network: dict[str, list[str]] = {}
    for skill, src in sources.items():
        by_network.setdefault(src["network"], []).append(skill)
    out = {}
    for network, skills in by_network.items():
        marked = [s for s in skills if sources[s].get("network_alias")]
        if len(marked) > 1:
            raise SystemExit(f"tools/bank_sources.yaml: {', '.join(marked)} all claim network_alias for "
                             f"'{network}'; keep one")
        for skill in skills:
            out[skill] = len(skills) == 1 or skill in marked
    return out


def generate(out_root: Path, sources: dict, cfg: dict, tao_version: str) -> tuple[dict[Path, str], list[str]]:
    files: dict[Path, str] = {}
    warnings: list[str] = []
    aliases = network_aliases(sources)
    for skill, src in sources.items():
        src = {**src, "network_alias": aliases[skill]}
        skill_files, skill_warnings = generate_skill(skill, src, cfg, out_root, tao_version)
        files.update(skill_files)
        warnings += [f"{skill}: {w}" for w in skill_warnings]
    return files, warnings


def stale_files(files: dict[Path, str]) -> list[tuple[Path, str]]:
    out = []
    for path, content in sorted(files.items()):
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != content:
            out.append((path, "missing" if current is None else _diff_summary(current, content)))
    return out


def _diff_summary(old: str, new: str) -> str:
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0))
    changed = [d for d in diff if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    return f"{len(changed)} line(s) differ, e.g. {changed[0][:120]!r}" if changed else "whitespace differs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if any generated file is stale")
    parser.add_argument("--all-networks", action="store_true",
                        help="generate every TAO Core network with a dataclass + network config")
    parser.add_argument("--out", type=Path, default=ROOT, help="bank root to write into (default: this repo)")
    parser.add_argument("--skill", action="append", help="only this skill (repeatable)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print generator warnings")
    args = parser.parse_args(argv)

    cfg = load_sources()
    version = load_tao_core(cfg["tao_core_version"])
    sources = dict(cfg["skills"])
    unlisted = {skill: src for skill, src in all_network_sources().items()
                if not any(s["network_config"] == src["network_config"] for s in sources.values())}
    if args.all_networks:
        sources.update({skill: {**src, "prose": "generated"} for skill, src in unlisted.items()})
    elif unlisted and not args.skill:
        print(f"TAO Core {version} has network(s) with a dataclass config and a network config that "
              f"tools/bank_sources.yaml does not list: {', '.join(s['network_config'] for s in unlisted.values())}; "
              "add them under skills: (prose: generated, task, summary) or try them with --all-networks --out DIR",
              file=sys.stderr)
        return 1
    if args.skill:
        unknown = [s for s in args.skill if s not in sources]
        if unknown:
            parser.error(f"unknown skill(s) {unknown}; known: {', '.join(sorted(sources))}")
        sources = {s: sources[s] for s in args.skill}
    files, warnings = generate(args.out.resolve(), sources, cfg, version)
    if args.verbose:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    stale = stale_files(files)
    if args.check:
        if stale:
            print(f"{len(stale)} generated file(s) are stale; run `python tools/gen_schemas.py`:")
            for path, why in stale:
                print(f"  {path.relative_to(args.out.resolve())}: {why}")
            return 1
        print(f"generated files are up to date ({len(files)} files, {len(sources)} skills)")
        return 0
    for path, _ in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
    print(f"wrote {len(stale)} of {len(files)} generated files for {len(sources)} skills"
          + (f" ({len(warnings)} warnings; -v to list)" if warnings else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
