"""The packaged skill bank: lookup, skill_info, manifests, schemas, templates, SKILL.md tables.

Everything here reads the real bank under skills/ (no TAO Core needed).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from tao_sdk import skillmd
from tao_sdk.bank import SkillBank, default_bank_root
from tao_sdk.checker import unfilled_template_fields
from tao_sdk.errors import SkillNotFoundError

REPO = Path(__file__).resolve().parents[1]

# The seed skills (hand-written prose); the seed-specific checks below run on them. The whole
# catalog (every skill of tools/bank_sources.yaml) is covered by the catalog tests at the end and by
# the bank checker (tests/test_checker.py).
MODEL_SKILLS = [
    "tao-train-deformable-detr",
    "tao-train-fast-foundation-stereo",
    "tao-train-oneformer",
    "tao-train-rtdetr",
]
SOURCES = yaml.safe_load((REPO / "tools" / "bank_sources.yaml").read_text(encoding="utf-8"))
CATALOG = sorted(SOURCES["skills"])
ALL_SKILLS = sorted(["tao-run-automl", *CATALOG])
FFS = "tao-train-fast-foundation-stereo"

# skill -> (network, network_config, metric, direction, launch, model_type)
EXPECTED = {
    "tao-train-rtdetr": ("rtdetr", "rtdetr", "val_mAP50", "max", "torchrun", None),
    "tao-train-deformable-detr": ("deformable_detr", "deformable_detr", "val_mAP50", "max", "lightning", None),
    "tao-train-oneformer": ("oneformer", "oneformer", "mIoU", "max", "lightning", None),
    FFS: ("depth_net", "depth_net_stereo", "val/loss", "min", "lightning", "FastFoundationStereo"),
}
JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


@pytest.fixture(scope="module")
def bank() -> SkillBank:
    return SkillBank(REPO)


def _all_schema_entries(bank: SkillBank, names: list[str] | None = None):
    """(skill, action, deploy, manifest entry) for every schema the manifests list (seed skills by default)."""
    for name in names or MODEL_SKILLS:
        skill = bank.get(name)
        for deploy, table in ((False, skill.manifest["actions"]), (True, skill.manifest.get("deploy_actions", {}))):
            for action, entry in table.items():
                yield skill, action, deploy, entry


def _schema_nodes(node, path="#"):
    """Yield (json path, schema) for a schema and every subschema (never default/enum data)."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _schema_nodes(sub, f"{path}/properties/{name}")
    for key in ("additionalProperties", "items", "not"):
        if isinstance(node.get(key), dict):
            yield from _schema_nodes(node[key], f"{path}/{key}")
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(node.get(key) or []):
            yield from _schema_nodes(sub, f"{path}/{key}/{i}")


# --------------------------------------------------------------------------- lookup
def test_default_bank_finds_every_skill(monkeypatch):
    monkeypatch.delenv("TAO_SKILLS_DIR", raising=False)
    assert SkillBank().names() == ALL_SKILLS
    assert [s.name for s in SkillBank().skills()] == ALL_SKILLS


def test_default_root_is_this_checkout_without_env(monkeypatch):
    monkeypatch.delenv("TAO_SKILLS_DIR", raising=False)
    root = default_bank_root()
    assert (root / "skills" / "tao-train-rtdetr" / "SKILL.md").is_file()


@pytest.mark.parametrize("alias, expected", [
    ("tao-train-rtdetr", "tao-train-rtdetr"),
    ("rtdetr", "tao-train-rtdetr"),
    ("deformable_detr", "tao-train-deformable-detr"),
    ("oneformer", "tao-train-oneformer"),
    ("depth_net", FFS),
    ("depth_net_stereo", FFS),
    ("tao-run-automl", "tao-run-automl"),
])
def test_get_by_skill_network_or_network_config(bank, alias, expected):
    skill = bank.get(alias)
    assert skill.name == expected
    assert skill.dir == REPO / "skills" / expected
    assert bank.get(skill) is skill


def test_unknown_name_suggests_close_match(bank):
    with pytest.raises(SkillNotFoundError) as exc:
        bank.get("rtdeter")
    msg = str(exc.value)
    assert "'rtdeter'" in msg
    assert "did you mean" in msg and "'rtdetr'" in msg
    assert "tao-train-rtdetr" in msg  # the available list

    with pytest.raises(SkillNotFoundError, match=r"did you mean .*'tao-train-oneformer'"):
        bank.get("tao-train-oneformr")


def test_tao_skills_dir_overrides_root(monkeypatch, tmp_path):
    skill_dir = tmp_path / "skills" / "tao-train-mini"
    skill_dir.mkdir(parents=True)
    (skill_dir / "SKILL.md").write_text("---\nname: tao-train-mini\ndescription: a test skill.\n---\n\n# Mini\n")
    (tmp_path / "skills" / "not-a-skill").mkdir()  # no SKILL.md: ignored
    monkeypatch.setenv("TAO_SKILLS_DIR", str(tmp_path))
    assert default_bank_root() == tmp_path.resolve()
    bank = SkillBank()
    assert bank.root == tmp_path.resolve()
    assert bank.names() == ["tao-train-mini"]
    assert bank.get("tao-train-mini").description == "a test skill."
    with pytest.raises(SkillNotFoundError):
        bank.get("rtdetr")


def test_bank_without_skills_dir_raises(tmp_path):
    with pytest.raises(SkillNotFoundError, match="no skills/ folder"):
        SkillBank(tmp_path)


def test_automl_skill_is_not_a_model(bank):
    automl = bank.get("tao-run-automl")
    assert automl.info == {}
    assert not automl.is_model
    assert automl.network is None
    assert automl.doc.front_matter["name"] == "tao-run-automl"
    assert "AutoML" in automl.description


# --------------------------------------------------------------------------- skill_info
@pytest.mark.parametrize("name", MODEL_SKILLS)
def test_skill_info(bank, name):
    network, network_config, metric, direction, launch, model_type = EXPECTED[name]
    skill = bank.get(name)
    info = skill.info
    assert skill.is_model
    assert skill.network == network
    assert info["network_config"] == network_config
    assert skill.metric == (metric, direction)
    assert info["monitoring_metric"]["direction_source"] == "known-metric"
    assert info["launch"]["method"] == launch
    assert info["launch"]["visible_devices_env"] == (
        "CUDA_VISIBLE_DEVICES" if launch == "torchrun" else "TAO_VISIBLE_DEVICES")
    assert info["model_type"] == model_type
    assert info["automl_enabled"] is True
    assert info["tao_core_version"] == "7.3.0"
    # actions: skill_info, manifest and the skill property agree
    assert skill.actions == info["actions"] == list(skill.manifest["actions"])
    for action in ("train", "evaluate", "export", "inference", "gen_trt_engine"):
        assert action in skill.actions
    # skill_info validates against the bank meta-schema
    meta = json.loads((REPO / "schemas" / "skill_info.schema.json").read_text())
    jsonschema.Draft202012Validator(meta).validate(info)
    assert skill.automl_runnable()


def test_rtdetr_actions(bank):
    assert bank.get("rtdetr").actions == [
        "train", "distill", "quantize", "evaluate", "export", "inference", "gen_trt_engine"]
    assert "distill" not in bank.get("oneformer").actions


def test_description_comes_from_front_matter(bank):
    for name in ALL_SKILLS:
        skill = bank.get(name)
        assert skill.doc.front_matter["name"] == name
        assert len(skill.description) > 20


# --------------------------------------------------------------------------- manifest / files
@pytest.mark.parametrize("name", MODEL_SKILLS)
def test_every_manifest_action_has_schema_and_template(bank, name):
    skill = bank.get(name)
    manifest = skill.manifest
    assert manifest["skill"] == name
    assert manifest["network"] == skill.network
    for deploy, table in ((False, manifest["actions"]), (True, manifest["deploy_actions"])):
        assert table, f"{name}: empty {'deploy_' if deploy else ''}actions"
        for action, entry in table.items():
            assert skill.has_schema(action, deploy)
            assert skill.schema_path(action, deploy).is_file()
            assert skill.template_path(action, deploy).is_file()
            assert skill.schema_path(action, deploy).name == entry["schema"]
            assert skill.template_path(action, deploy).name == entry["template"]
            schema = skill.schema(action, deploy)
            assert schema["x-tao"]["action"] == action
            assert isinstance(skill.template(action, deploy), dict)
    # TensorRT variants of evaluate/inference plus the engine build
    assert set(manifest["deploy_actions"]) == {"evaluate", "inference", "gen_trt_engine"}
    assert manifest["deploy_actions"]["evaluate"]["schema"] == "deploy_evaluate.schema.json"
    assert set(manifest["generated_blocks"]) == set(skillmd.BLOCK_NAMES)


def test_unknown_action_is_a_bank_format_error_with_hint(bank):
    from tao_sdk.errors import BankFormatError

    with pytest.raises(BankFormatError, match="did you mean 'evaluate'"):
        bank.get("rtdetr").schema("evalute")
    assert not bank.get("oneformer").has_schema("distill")


def test_template_is_a_fresh_copy(bank):
    skill = bank.get("rtdetr")
    t = skill.template("train")
    t["train"]["num_epochs"] = -1
    assert skill.template("train")["train"]["num_epochs"] != -1


# --------------------------------------------------------------------------- schemas
def test_every_schema_is_valid_draft_2020_12(bank):
    """Every schema of every skill against the Draft 2020-12 meta-schema (the checker's check, which
    meta-validates each distinct section once; the process-wide cache is shared with the checker)."""
    from tao_sdk.checker import meta_schema_error

    checked = 0
    for skill, action, deploy, _ in _all_schema_entries(bank, CATALOG):
        schema = skill.schema(action, deploy)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert meta_schema_error(schema) is None, (skill.name, action, deploy)
        checked += 1
    assert checked > 200  # 32 skills, TensorRT variants included
    # the section-wise check is the meta-schema check: a broken section is found, with its path
    broken = json.loads(json.dumps(bank.get("rtdetr").schema("export")))
    broken["properties"]["export"]["properties"]["batch_size"]["type"] = "int"
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft202012Validator.check_schema(broken)
    where, message = meta_schema_error(broken)
    assert where.startswith("properties/export/properties/batch_size") and "'int'" in message


def test_schema_files_hold_no_infinity_or_nan():
    files = sorted(REPO.glob("skills/*/schemas/*.json"))
    assert len(files) >= 30
    for path in files:
        text = path.read_text(encoding="utf-8")
        constants: list[str] = []  # bare Infinity / NaN tokens (a description may mention "NaN")
        json.loads(text, parse_constant=constants.append)
        assert constants == [], f"{path}: non-JSON constants {constants}"


def test_schemas_use_real_json_types_only(bank):
    for skill, action, deploy, _ in _all_schema_entries(bank):
        schema = skill.schema(action, deploy)
        typed = 0
        for where, node in _schema_nodes(schema):
            if "type" not in node:
                continue
            t = node["type"]
            assert isinstance(t, (str, list)), f"{skill.name} {action}: {where} type {t!r}"
            types = {t} if isinstance(t, str) else set(t)
            assert types and types <= JSON_TYPES, f"{skill.name} {action}: {where} has type {t!r}"
            typed += 1
        assert typed > 50


def test_dataclass_objects_are_closed(bank):
    for skill, action, deploy, _ in _all_schema_entries(bank):
        schema = skill.schema(action, deploy)
        assert schema["additionalProperties"] is False
        closed = 0
        for where, node in _schema_nodes(schema):
            if not isinstance(node.get("properties"), dict) or where == "#":
                continue
            # every object with properties says what it does with other keys
            assert "additionalProperties" in node, f"{skill.name} {action}: {where}"
            if "default" not in node:  # dataclass objects carry no per-node default
                assert node["additionalProperties"] is False, f"{skill.name} {action}: {where} is open"
                closed += 1
        assert closed >= 5
        # an unknown key, at the top or inside a dataclass section, is rejected
        spec = {"no_such_key_xyz": 1, "train": {"no_such_key_abc": 1}}
        errors = [e for e in jsonschema.Draft202012Validator(schema).iter_errors(spec)
                  if e.validator == "additionalProperties"]
        assert any("no_such_key_xyz" in e.message for e in errors)
        assert any("no_such_key_abc" in e.message and list(e.absolute_path) == ["train"] for e in errors)


def test_top_level_schema_keys(bank):
    for skill, action, deploy, _ in _all_schema_entries(bank):
        schema = skill.schema(action, deploy)
        for key in ("default", "automl_default_parameters", "automl_disabled_parameters", "properties"):
            assert key in schema, f"{skill.name} {action}: {key}"
        assert isinstance(schema["default"], dict)
        assert isinstance(schema["automl_default_parameters"], list)
        assert schema["x-tao"]["network"] == skill.network
        assert schema["x-tao"]["deploy"] is (deploy and action != "gen_trt_engine")
    train = bank.get("rtdetr").schema("train")
    assert train["automl_default_parameters"], "rtdetr train schema lists nothing for AutoML"
    for dotted in train["automl_default_parameters"]:
        node = train
        for part in dotted.split("."):
            node = node["properties"][part]
        assert node.get("automl_enabled") is True, dotted


def test_per_action_section_filtering(bank):
    rtdetr = bank.get("rtdetr")
    evaluate = rtdetr.schema("evaluate")["properties"]
    assert "evaluate" in evaluate
    for other in ("export", "distill", "quantize", "inference", "gen_trt_engine"):
        assert other not in evaluate, other
        assert other not in rtdetr.schema("evaluate")["default"]
    train = rtdetr.schema("train")["properties"]
    assert "train" in train and "model" in train and "dataset" in train
    assert "evaluate" not in train and "export" not in train
    assert "train" in rtdetr.schema("train")["required"]
    export = rtdetr.schema("export")["properties"]
    assert "export" in export and "distill" not in export


def test_deploy_schema_requires_engine(bank):
    schema = bank.get("rtdetr").schema("inference", deploy=True)
    section = schema["properties"]["inference"]
    assert "trt_engine" in section["required"]
    assert "checkpoint" not in section.get("required", [])
    assert section["properties"]["trt_engine"]["type"] == "string"


# --------------------------------------------------------------------------- templates
def test_templates_validate_except_fields_to_fill(bank):
    validated = 0
    for skill, action, deploy, _ in _all_schema_entries(bank):
        schema = skill.schema(action, deploy)
        text = skill.template_path(action, deploy).read_text(encoding="utf-8")
        assert text.startswith(f"# {skill.name}: ")
        data = yaml.safe_load(text)
        assert data == schema["default"], f"{skill.name} {action}: template != schema default"
        to_fill = set(unfilled_template_fields(text))
        for err in jsonschema.Draft202012Validator(schema).iter_errors(data):
            assert err.validator == "required", f"{skill.name} {action}: {err.message}"
            base = ".".join(str(p) for p in err.absolute_path)
            missing = {f"{base}.{m}" if base else m for m in err.validator_value if m not in err.instance}
            assert missing <= to_fill, f"{skill.name} {action}: {missing - to_fill} not listed as to fill"
        validated += 1
    assert validated >= 30


def test_template_headers_list_fields_to_fill(bank):
    text = bank.get("rtdetr").template_path("evaluate").read_text()
    assert unfilled_template_fields(text) == ["evaluate.checkpoint"]
    assert "evaluate.checkpoint  <- SDK: parent_model" in text
    gen = bank.get("rtdetr").template_path("gen_trt_engine").read_text()
    assert "gen_trt_engine.tensorrt.calibration.cal_image_dir" in unfilled_template_fields(gen)
    assert unfilled_template_fields(bank.get("rtdetr").template_path("train").read_text()) == []


def test_ffs_templates_carry_the_bp2_model_block(bank):
    ffs = bank.get(FFS)
    checked = 0
    for deploy, table in ((False, ffs.manifest["actions"]), (True, ffs.manifest["deploy_actions"])):
        for action in table:
            model = ffs.template(action, deploy)["model"]
            assert model["model_type"] == "FastFoundationStereo", action
            assert model["volume_dim"] == 28
            assert model["max_disparity"] == 192
            assert model["motion_encoder_widths"] == [56, 96, 16, 12]
            assert model["encoder"] == "vitl"
            checked += 1
    assert checked == len(ffs.manifest["actions"]) + len(ffs.manifest["deploy_actions"])


def test_ffs_automl_disabled_parameters(bank):
    schema = bank.get(FFS).schema("train")
    disabled = schema["automl_disabled_parameters"]
    for path in ("dataset.test_dataset.augmentation", "dataset.val_dataset.augmentation",
                 "dataset.infer_dataset.augmentation", "model.volume_dim", "model.corr_radius",
                 "model.cv_group"):
        assert path in disabled
    assert schema["properties"]["model"]["properties"]["volume_dim"]["automl_enabled"] is False
    assert "model.volume_dim" not in schema["automl_default_parameters"]


# --------------------------------------------------------------------------- SKILL.md tables
def test_rtdetr_dataset_requirements(bank):
    rtdetr = bank.get("rtdetr")
    train = rtdetr.dataset_requirements("train")
    assert [r.spec_key for r in train] == ["dataset.train_data_sources", "dataset.val_data_sources"]
    first = train[0]
    assert first.source == "train_datasets" and first.multiple is True
    assert first.files == skillmd.FileMapping((("image_dir", skillmd.FilePath("images.tar.gz")),
                                               ("json_file", skillmd.FilePath("annotations.json"))))
    assert train[1].source == "eval_dataset" and train[1].multiple is False
    text_lines = rtdetr.skill_md_path.read_text().splitlines()
    assert "`dataset.train_data_sources`" in text_lines[first.line - 1]

    (infer,) = rtdetr.dataset_requirements("inference")
    assert infer.spec_key == "dataset.infer_data_sources"
    assert infer.source == "inference_dataset"
    files = dict(infer.files.items)
    assert files["image_dir"] == skillmd.FilePath("images.tar.gz", wrap=True)  # wrapped in a list
    assert files["classmap"] == skillmd.FilePath("label_map.txt", wrap=False)

    (cal,) = rtdetr.dataset_requirements("gen_trt_engine")
    assert cal.spec_key == "gen_trt_engine.tensorrt.calibration.cal_image_dir"
    assert cal.files == skillmd.FilePath("images.tar.gz", wrap=True)
    assert rtdetr.dataset_requirements("export") == []


def test_oneformer_label_map_is_format_conditional(bank):
    rows = {r.spec_key: r for r in bank.get("oneformer").dataset_requirements("inference")}
    label_map = rows["dataset.label_map"]
    assert isinstance(label_map.files, skillmd.FileByFormat)
    assert label_map.files.by_format == (("coco_panoptic", skillmd.FilePath("label_map_panoptic.json")),)
    assert label_map.files.default == skillmd.FilePath("label_map.json")
    train_rows = {r.spec_key: r for r in bank.get("oneformer").dataset_requirements("train")}
    assert train_rows["dataset.label_map"].files == skillmd.FilePath("label_map.json")


def test_depth_net_rows_use_dataset_format(bank):
    rows = bank.get("depth_net").dataset_requirements("train")
    by_key = {r.spec_key: r for r in rows}
    train = by_key["dataset.train_dataset.data_sources"]
    assert train.multiple is True and train.source == "train_datasets"
    assert dict(train.files.items) == {"data_file": skillmd.FilePath("annotations.txt"),
                                       "dataset_name": skillmd.FormatPlaceholder()}
    assert by_key["dataset.val_dataset.data_sources"].source == "eval_dataset"


def test_inference_mappings(bank):
    rtdetr = {m.spec_field: m for m in bank.get("rtdetr").inference_mappings("evaluate")}
    assert rtdetr["evaluate.checkpoint"].function == "parent_model"
    assert rtdetr["results_dir"].function == "output_dir"
    assert rtdetr["encryption_key"].function == "key"
    export = {m.spec_field: m for m in bank.get("rtdetr").inference_mappings("export")}
    assert export["export.onnx_file"].function == "create_onnx_file"
    train = {m.spec_field: m for m in bank.get("rtdetr").inference_mappings("train")}
    assert train["train.pretrained_model_path"].function == "ptm_if_no_resume_model"
    assert train["train.resume_training_checkpoint_path"].function == "resume_model"

    ffs = {m.spec_field: m for m in bank.get(FFS).inference_mappings("train")}
    model_type = ffs["model.model_type"]
    assert model_type.function is None and model_type.literal == "FastFoundationStereo"
    assert ffs["dataset.dataset_name"].literal == "StereoDataset"
    for action in bank.get(FFS).actions:
        literals = {m.spec_field: m.literal for m in bank.get(FFS).inference_mappings(action)}
        assert literals.get("model.model_type") == "FastFoundationStereo", action

    one = {m.spec_field: m for m in bank.get("oneformer").inference_mappings("train")}
    ptm = one["train.pretrained_backbone"]
    assert ptm.function is None
    assert isinstance(ptm.literal, dict)
    assert set(ptm.literal) == {"link", "destination_path"}
    assert ptm.literal["link"].startswith("https://")
    assert ptm.literal["destination_path"].startswith("/ptm/")
    assert "download descriptor" in ptm.meaning
    assert one["train.pretrained_model"].function == "ptm_if_no_resume_model"


def test_table_rows_carry_line_numbers(bank):
    skill = bank.get("oneformer")
    lines = skill.skill_md_path.read_text().splitlines()
    for row in skill.doc.inference_mappings:
        assert f"`{row.spec_field}`" in lines[row.line - 1]
    for row in skill.doc.dataset_requirements:
        assert f"`{row.spec_key}`" in lines[row.line - 1]


@pytest.mark.parametrize("text, spec", [
    ("images.tar.gz", skillmd.FilePath("images.tar.gz")),
    ("[images.tar.gz]", skillmd.FilePath("images.tar.gz", wrap=True)),
    ("<dataset_format>", skillmd.FormatPlaceholder()),
    ("image_dir: [images.tar.gz], classmap: label_map.txt",
     skillmd.FileMapping((("image_dir", skillmd.FilePath("images.tar.gz", True)),
                          ("classmap", skillmd.FilePath("label_map.txt"))))),
    ("data_file: annotations.txt, dataset_name: <dataset_format>",
     skillmd.FileMapping((("data_file", skillmd.FilePath("annotations.txt")),
                          ("dataset_name", skillmd.FormatPlaceholder())))),
    ("label_map_panoptic.json if format is coco_panoptic, else label_map.json",
     skillmd.FileByFormat((("coco_panoptic", skillmd.FilePath("label_map_panoptic.json")),),
                          skillmd.FilePath("label_map.json"))),
    ("a.json if format is x, [b.tar.gz] if format is y",
     skillmd.FileByFormat((("x", skillmd.FilePath("a.json")), ("y", skillmd.FilePath("b.tar.gz", True))), None)),
])
def test_parse_render_files_round_trip(text, spec):
    assert skillmd.parse_files(text, "SKILL.md:1") == spec
    assert skillmd.render_files(spec) == text
    assert skillmd.parse_files(skillmd.render_files(spec), "x") == spec


def test_every_files_cell_in_the_bank_round_trips(bank):
    for name in MODEL_SKILLS:
        text = bank.get(name).skill_md_path.read_text()
        content, first = skillmd.generated_block(text, "dataset-requirements")
        rows = skillmd.parse_table(content, first, "SKILL.md", skillmd.DATASET_COLUMNS)
        assert rows
        for row in rows:
            spec = skillmd.parse_files(row.cells["Files"], f"SKILL.md:{row.line}")
            assert skillmd.render_files(spec) == row.cells["Files"]


@pytest.mark.parametrize("bad", ["", "images tar gz", "[", "x if format is", "a/../{job}.json"])
def test_parse_files_rejects_garbage_with_location(bad):
    from tao_sdk.errors import BankFormatError

    with pytest.raises(BankFormatError, match=r"SKILL\.md:7"):
        skillmd.parse_files(bad, "SKILL.md:7")


def test_generated_blocks_are_replaceable(bank):
    text = bank.get("rtdetr").skill_md_path.read_text()
    assert skillmd.block_names(text) == list(skillmd.BLOCK_NAMES)
    new = skillmd.replace_generated_block(text, "training-requirements", "- hello")
    content, _ = skillmd.generated_block(new, "training-requirements")
    assert content == "- hello"
    # text outside the markers is untouched
    assert new.split(skillmd.begin_marker("training-requirements"))[0] == \
        text.split(skillmd.begin_marker("training-requirements"))[0]
    assert new.split(skillmd.end_marker("training-requirements"))[1] == \
        text.split(skillmd.end_marker("training-requirements"))[1]
    digest = bank.get("rtdetr").manifest["generated_blocks"]["training-requirements"]
    assert skillmd.block_digest(skillmd.generated_block(text, "training-requirements")[0]) == digest


# --------------------------------------------------------------------------- the whole catalog
def test_catalog_is_the_seeds_plus_generated_prose_skills():
    prose = {name: src.get("prose") for name, src in SOURCES["skills"].items()}
    assert sorted(n for n, p in prose.items() if p == "hand-written") == MODEL_SKILLS
    assert set(prose.values()) == {"hand-written", "generated"}
    assert len(CATALOG) == 32  # every TAO Core 7.3.0 network with a dataclass config and a network config


def test_every_catalog_skill_is_complete_and_honest_about_its_backend(bank):
    """One pass over all 32 model skills (files only; the checker validates schemas/templates)."""
    from tao_sdk import worker

    meta = jsonschema.Draft202012Validator(json.loads((REPO / "schemas" / "skill_info.schema.json").read_text()))
    for name in CATALOG:
        skill, src = bank.get(name), SOURCES["skills"][name]
        info = skill.info
        meta.validate(info)
        assert (skill.network, info["network_config"]) == (src["network"], src["network_config"])
        assert info["task"] == src["task"] and info["tao_container"]["image"].startswith("nvcr.io/nvidia/tao/")
        assert skill.actions == list(skill.manifest["actions"]) and skill.actions
        assert set(skill.manifest["generated_blocks"]) == set(skillmd.BLOCK_NAMES)
        backend, _ = skillmd.generated_block(skill.doc.text, "backend")
        for action in skill.actions:
            says = "yes" if worker.supports(skill.network, action, info.get("model_type")) else "no"
            assert f"| `{action}` | {says} | " in backend, (name, action)
        if src["prose"] == "generated":
            text = skill.doc.text
            assert src["summary"] in text and "do not edit" in text
            for heading in ("## Which Backend Runs It", "## Train Action Policy", "## How to Run", "## Metrics",
                            "## Per-Action Dataset Requirements", "## Spec Param / Parent Model Inference"):
                assert heading in text, (name, heading)
            assert f"tao-skills run {skill.network} {skill.actions[0]}" in text
            assert ("routed" not in text) or info["automl_enabled"]
            if info["automl_enabled"]:
                assert "tao-run-automl" in text and "automl_default_parameters" in text
            assert "launch" in info and info["launch"] is None  # the TAO container launches it


def test_shared_networks_resolve_by_network_alias(bank):
    assert bank.get("depth_net").name == FFS  # network_alias: true in tools/bank_sources.yaml
    assert bank.get("depth_net_mono").name == "tao-train-depth-net-mono"
    assert not bank.get("depth_net_mono").info["network_alias"]
    assert bank.get("visual_changenet_segment").name == "tao-train-visual-changenet-segment"
    with pytest.raises(SkillNotFoundError, match="names several skills .*visual-changenet-classify.*segment"):
        bank.get("visual_changenet")


def test_dataset_root_itself_is_a_files_cell(bank):
    from tao_sdk.datasources import build_data_source_overrides

    rows = {r.spec_key: r for r in bank.get("segformer").dataset_requirements("train")}
    assert skillmd.render_files(rows["dataset.segment.root_dir"].files) == "."
    out = build_data_source_overrides("segformer", "train", {"train_datasets": ["s3://b/seg/"]}, bank=bank)
    assert out == {"dataset.segment.root_dir": "s3://b/seg"}
