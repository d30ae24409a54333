"""Build and validate full nested specs: template -> data sources -> mappings -> user overrides.

>>> spec = build_spec("rtdetr", "train",
...                   spec_overrides={"train.num_epochs": 10, "dataset.num_classes": 3},
...                   datasets={"train_datasets": ["s3://b/train"], "eval_dataset": "s3://b/eval"})
>>> spec["train"]["num_epochs"]
10

Validation errors raise :class:`~tao_sdk.errors.SpecValidationError` listing every problem with
its dotted path, the offending value, what is allowed and a close match for unknown keys.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .bank import Skill, SkillBank, get_bank
from .datasources import INHERITED_LAYER, plan_data_sources
from .dotted import flatten, parse_assignment, parse_value, set_path  # noqa: F401  (flatten: re-exported)
from .errors import SpecValidationError, TaoSkillsError
from .schemapath import spec_problems
from .specfile import conform, layer_values, read_base_layer, spec_check

def set_dotted(spec: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating (or replacing null/non-dict) parents
    (:func:`tao_sdk.dotted.set_path`)."""
    set_path(spec, key, value)


def apply_overrides(spec: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply dotted-key overrides in order (list/dict values replace, they do not merge)."""
    for key, value in (overrides or {}).items():
        set_path(spec, key, value)
    return spec


#: The ``--set`` value parser (kept under its former name).
parse_override_value = parse_value


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """``["train.num_epochs=10", ...]`` -> ``{"train.num_epochs": 10}`` (values by
    :func:`tao_sdk.dotted.parse_value`: ``1e-4`` is the float 0.0001)."""
    return dict(parse_assignment(item) for item in items or [])


def validate_spec(skill: Skill, action: str, spec: Mapping[str, Any], *, deploy: bool = False,
                  fillers: Mapping[str, str] | None = None) -> None:
    """Raise SpecValidationError listing every problem of ``spec`` against the action schema."""
    problems = spec_problems(skill.schema(action, deploy), spec, fillers, skill.validator(action, deploy))
    if problems:
        raise SpecValidationError(skill.name, f"{'TensorRT ' if deploy else ''}{action}", problems)


@dataclass
class ComposedSpec:
    """A built spec plus what the SDK did to get it (see :func:`compose_spec`).

    Attributes:
        spec: the full nested spec (secrets replaced by ``${oc.env:NAME}`` references).
        warnings: user values the SDK replaced (SDK-owned fields) or moved (secrets).
        notes: other things worth knowing (coercions, other actions' sections set aside).
        secret_env: NAME -> secret value for the job's environment; never print or store it.
        env: NAME -> value the job's environment also needs (not secrets: the preset's, e.g.
            ``TAO_WORKER_BACKBONE_SCALE=tiny``).
    """

    spec: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    env: dict[str, str] = field(default_factory=dict)


def _user_layers(skill: Skill, action: str, deploy: bool, base_spec: Any, spec_overrides: Mapping[str, Any] | None,
                 out: ComposedSpec) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(base layer as dotted keys, overrides, other actions' sections), secrets moved to env."""
    from .secrets import extract_secrets

    base: dict[str, Any] = {}
    others: dict[str, Any] = {}
    if base_spec is not None:
        where = "the base spec" if isinstance(base_spec, Mapping) else f"spec file {base_spec}"
        own, others, log = read_base_layer(skill, action, base_spec, deploy)
        own, env = extract_secrets(own)
        _note_secrets(env, where, out)
        base = layer_values(own)
        out.notes += [f"{path}: {before!r} read as {after!r} (as TAO/OmegaConf does)" for path, before, after in log.coerced]
        if others:
            out.notes.append(f"sections {', '.join(sorted(others))} of {where} were validated as their own actions' "
                             f"and left out of the {action} spec")
    sections = [k for k, v in (spec_overrides or {}).items() if "." not in k and isinstance(v, Mapping)
                and k not in skill.schema(action, deploy).get("properties", {})]
    if sections:
        raise TaoSkillsError(
            f"spec_overrides holds whole sections ({', '.join(sections)}) that the {action} spec does not have: a "
            "TAO experiment spec goes in base_spec= (CLI -e FILE), where it is merged section by section and other "
            "actions' sections are validated as their own; spec_overrides takes dotted keys (train.optim.lr)")
    overrides, env = extract_secrets(spec_overrides, dotted=True)
    _note_secrets(env, "spec_overrides", out)
    return base, overrides, others


def _note_secrets(env: Mapping[str, str], where: str, out: ComposedSpec) -> None:
    for name in env:
        if name in out.secret_env and out.secret_env[name] != env[name]:
            out.warnings.append(f"{name}: {where} gives a different secret than an earlier layer; {where} wins")
        out.warnings.append(f"a secret from {where} moved to the job environment ({name}); the spec holds "
                            f"${{oc.env:{name}}} and the value is never stored")
    out.secret_env.update(env)


def _user_set(layers: list[Mapping[str, Any]], key: str) -> tuple[bool, Any]:
    """Whether a user layer sets ``key`` (or something below it) to a value, and the last value."""
    found, value = False, None
    for layer in layers:
        for k, v in layer.items():
            if (k == key or k.startswith(key + ".")) and v is not None:
                found, value = True, (v if k == key else {k[len(key) + 1:]: v})
    return found, value


def _preset_layer(skill: Skill, action: str, name: str | None, out: ComposedSpec,
                  bank: SkillBank | None) -> dict[str, Any]:
    """The dotted overrides of preset ``name`` for ``action`` (``{}`` for none / full); its
    environment goes to ``out.env`` and a note says where the layer came from."""
    from .presets import load_preset

    preset = load_preset(skill, name, bank)
    if preset is None:
        return {}
    layer = preset.overrides(action)
    out.env.update(preset.env)
    env = ", ".join(f"{k}={v}" for k, v in preset.env.items())
    out.notes.append(f"preset {preset.name}: {len(layer)} setting(s) from {skill.name}/references/{preset.path.name}"
                     + (f" and {env} in the job's environment" if env else "")
                     + "; --set / spec_overrides win over them")
    return layer


def compose_spec(
    skill: Skill | str,
    action: str,
    spec_overrides: Mapping[str, Any] | None = None,
    datasets: Mapping[str, Any] | None = None,
    *,
    base_spec: str | Path | Mapping[str, Any] | None = None,
    dataset_format: str | None = None,
    inherited: Mapping[str, Any] | None = None,
    sdk_values: Mapping[str, Any] | None = None,
    deploy: bool = False,
    validate: bool = True,
    preset: str | None = None,
    bank: SkillBank | None = None,
) -> ComposedSpec:
    """Build the spec like :func:`build_spec` and report what the SDK did on the way.

    Layers, later wins: the action's template; ``inherited`` (model / class count of the train
    job a chained job descends from); ``base_spec`` (a TAO experiment file path or a nested
    dict, conformed as TAO Core's OmegaConf does: see :mod:`tao_sdk.specfile`); the skill's
    ``preset`` (``"tiny"``: a small model for a CPU, see :mod:`tao_sdk.presets`; its environment
    goes to ``env``); data-source
    overrides built from ``datasets``; ``spec_overrides`` (dotted keys); ``sdk_values`` (the
    resolved SKILL.md inference mappings: results folder, encryption key reference, parent
    checkpoints, output paths). SDK values are SDK-owned: a user value there is replaced and the
    replacement is listed in ``warnings``. Secrets in ``base_spec`` / ``spec_overrides`` move to
    ``secret_env`` (the spec holds ``${oc.env:NAME}``).

    Raises:
        SpecValidationError: every problem (this action's spec and other actions' sections);
            then the skill's cross-field rules (skill_info ``spec_rules``, e.g. RT-DETR
            ``model.num_queries`` <= encoder positions at the image size), with the numbers.
        DataSourceError: a dataset role the action needs is neither given nor set by the user.
    """
    skill = skill if isinstance(skill, Skill) else (bank or get_bank()).get(skill)
    if action not in skill.actions:
        close = difflib.get_close_matches(action, skill.actions, 1)
        raise TaoSkillsError(f"{skill.name} has no action '{action}'"
                             + (f"; did you mean '{close[0]}'?" if close else "")
                             + f" Actions: {', '.join(skill.actions)}")
    out = ComposedSpec(skill.template(action, deploy))
    base, overrides, others = _user_layers(skill, action, deploy, base_spec, spec_overrides, out)
    layer = _preset_layer(skill, action, preset, out, bank)
    where = "the base spec" if isinstance(base_spec, Mapping) else f"spec file {base_spec}"
    provided = {k: name for name, lay in ((INHERITED_LAYER, inherited or {}), (where, base),
                                          (f"preset {preset}", layer), ("spec_overrides", overrides))
                for k, v in lay.items() if v is not None}
    apply_overrides(out.spec, inherited)
    apply_overrides(out.spec, base)
    apply_overrides(out.spec, layer)
    if datasets or validate:
        sources = plan_data_sources(skill, action, datasets, dataset_format, provided=provided)
        apply_overrides(out.spec, sources.values)
        out.notes += sources.notes
    apply_overrides(out.spec, overrides)
    for key, value in (sdk_values or {}).items():
        found, user_value = _user_set([base, overrides], key)
        if found and user_value != value:
            out.warnings.append(f"{key} is set by the SDK; the user value {user_value!r} was replaced by {value!r}")
    apply_overrides(out.spec, sdk_values)
    schema = skill.schema(action, deploy)
    out.spec = conform(schema, out.spec)
    if validate:
        fillers = {m.spec_field: m.function for m in skill.inference_mappings(action) if m.function}
        problems = spec_check(skill, action, deploy, out.spec, others, fillers=fillers)
        if problems:
            raise SpecValidationError(skill.name, f"{'TensorRT ' if deploy else ''}{action}", problems)
    return out


def build_spec(
    skill: Skill | str,
    action: str,
    spec_overrides: Mapping[str, Any] | None = None,
    datasets: Mapping[str, Any] | None = None,
    *,
    base_spec: str | Path | Mapping[str, Any] | None = None,
    dataset_format: str | None = None,
    mapped_values: Mapping[str, Any] | None = None,
    deploy: bool = False,
    validate: bool = True,
    preset: str | None = None,
    bank: SkillBank | None = None,
) -> dict[str, Any]:
    """The full nested spec for ``action``, validated against the packaged schema.

    Layers, later wins: the action's spec template; ``base_spec`` (your TAO experiment file: a
    YAML path or a nested dict; ``1e-4`` strings, lower-case enum values, ``???`` and other
    actions' sections are read as TAO does); data-source overrides built from ``datasets`` (see
    :func:`~tao_sdk.datasources.build_data_source_overrides`; every dataset decision is a note of
    :func:`compose_spec`); the user's ``spec_overrides``
    (dotted keys, list/dict values replace); ``mapped_values`` (resolved SKILL.md inference
    mappings, e.g. results_dir, evaluate.checkpoint: SDK-owned, they win). A secret value
    (``encryption_key: K``) is replaced by its ``${oc.env:...}`` reference: use
    :func:`compose_spec` to get the environment it must travel in.

    Args:
        deploy: use the TensorRT variant of evaluate/inference (engine instead of checkpoint).
        validate: set False to get the merged spec without validation (e.g. to inspect it).
        preset: ``"tiny"`` (a small model that trains in minutes on a CPU; the layer over
            ``base_spec`` and under ``spec_overrides``, from the skill's
            ``references/preset_tiny.yaml``) or ``"full"`` / ``None`` (the template). The job
            also needs the preset's environment: :func:`compose_spec` returns it as ``env``.

    Raises:
        SpecValidationError: every problem, each with dotted path, value, allowed values and a
            close-match suggestion for unknown keys.
        DataSourceError: a dataset role the action needs is missing (and no layer sets its key).
    """
    return compose_spec(skill, action, spec_overrides, datasets, base_spec=base_spec, dataset_format=dataset_format,
                        sdk_values=mapped_values, deploy=deploy, validate=validate, preset=preset, bank=bank).spec
