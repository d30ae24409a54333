"""Data-source overrides (against the seeds' examples), spec building/validation, AutoML policy."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tao_sdk import (
    DataSourceError,
    SkillBank,
    SpecValidationError,
    build_data_source_overrides,
    build_spec,
    resolve_automl_policy,
    route_action,
)
from tao_sdk.spec import parse_override_value, parse_set_options

S3_TRAIN = "s3://bucket/data/train"
S3_EVAL = "s3://bucket/data/eval"
SEED_DATASETS = {"train_datasets": [S3_TRAIN], "eval_dataset": S3_EVAL, "inference_dataset": S3_EVAL,
                 "calibration_dataset": S3_TRAIN}
MODEL_SKILLS = ["tao-train-rtdetr", "tao-train-deformable-detr", "tao-train-oneformer",
                "tao-train-fast-foundation-stereo"]


@pytest.fixture(scope="module")
def bank() -> SkillBank:
    return SkillBank()


# ----------------------------------------------------------------------------- seeds' examples
# Verbatim from the seeds' "Typical Spec Overrides" (RT-DETR page), data-source entries only;
# inference image_dir is a list (TAO Core's dataclass type; one seed printed a plain string).
RTDETR_SEED = {
    "train": {
        "dataset.train_data_sources": [{"image_dir": f"{S3_TRAIN}/images.tar.gz", "json_file": f"{S3_TRAIN}/annotations.json"}],
        "dataset.val_data_sources": {"image_dir": f"{S3_EVAL}/images.tar.gz", "json_file": f"{S3_EVAL}/annotations.json"},
    },
    "evaluate": {
        "dataset.test_data_sources": {"image_dir": f"{S3_EVAL}/images.tar.gz", "json_file": f"{S3_EVAL}/annotations.json"},
    },
    "quantize": {
        "dataset.train_data_sources": [{"image_dir": f"{S3_TRAIN}/images.tar.gz", "json_file": f"{S3_TRAIN}/annotations.json"}],
        "dataset.val_data_sources": {"image_dir": f"{S3_EVAL}/images.tar.gz", "json_file": f"{S3_EVAL}/annotations.json"},
        "dataset.quant_calibration_data_sources": {"image_dir": f"{S3_TRAIN}/images.tar.gz", "json_file": f"{S3_TRAIN}/annotations.json"},
    },
    "gen_trt_engine": {"gen_trt_engine.tensorrt.calibration.cal_image_dir": [f"{S3_TRAIN}/images.tar.gz"]},
    "inference": {
        "dataset.infer_data_sources": {"image_dir": [f"{S3_EVAL}/images.tar.gz"], "classmap": f"{S3_EVAL}/label_map.txt"},
    },
    "distill": {
        "dataset.train_data_sources": [{"image_dir": f"{S3_TRAIN}/images.tar.gz", "json_file": f"{S3_TRAIN}/annotations.json"}],
        "dataset.val_data_sources": {"image_dir": f"{S3_EVAL}/images.tar.gz", "json_file": f"{S3_EVAL}/annotations.json"},
    },
}


@pytest.mark.parametrize("action", sorted(RTDETR_SEED))
def test_rtdetr_matches_seed_examples(bank, action):
    assert build_data_source_overrides(bank.get("rtdetr"), action, SEED_DATASETS) == RTDETR_SEED[action]


def test_deformable_detr_validates_on_train_datasets_and_uses_dotted_subkeys(bank):
    skill = bank.get("deformable_detr")
    alone = build_data_source_overrides(skill, "train", {"train_datasets": [S3_TRAIN]})
    assert alone["dataset.val_data_sources"] == [{"image_dir": f"{S3_TRAIN}/images.tar.gz",
                                                  "json_file": f"{S3_TRAIN}/annotations.json"}]
    # an explicit eval dataset wins over the table's train datasets (issue #18, part 3)
    train = build_data_source_overrides(skill, "train", SEED_DATASETS)
    assert train["dataset.val_data_sources"] == [{"image_dir": f"{S3_EVAL}/images.tar.gz",
                                                  "json_file": f"{S3_EVAL}/annotations.json"}]
    assert build_data_source_overrides(skill, "evaluate", SEED_DATASETS) == {
        "dataset.test_data_sources.image_dir": f"{S3_EVAL}/images.tar.gz",
        "dataset.test_data_sources.json_file": f"{S3_EVAL}/annotations.json",
    }
    assert build_data_source_overrides(skill, "inference", SEED_DATASETS)["dataset.infer_data_sources.image_dir"] \
        == [f"{S3_EVAL}/images.tar.gz"]


def test_several_train_datasets_give_one_entry_each(bank):
    out = build_data_source_overrides(bank.get("rtdetr"), "train",
                                      {"train_datasets": ["s3://b/a", "s3://b/b/"], "eval_dataset": "/data/eval"})
    assert [e["image_dir"] for e in out["dataset.train_data_sources"]] == ["s3://b/a/images.tar.gz",
                                                                           "s3://b/b/images.tar.gz"]
    assert out["dataset.val_data_sources"]["json_file"] == "/data/eval/annotations.json"


def test_oneformer_label_map_depends_on_format(bank):
    skill = bank.get("oneformer")
    panoptic = build_data_source_overrides(skill, "inference", SEED_DATASETS, dataset_format="coco_panoptic")
    coco = build_data_source_overrides(skill, "inference", SEED_DATASETS, dataset_format="coco")
    assert panoptic["dataset.label_map"] == f"{S3_TRAIN}/label_map_panoptic.json"
    assert coco["dataset.label_map"] == f"{S3_TRAIN}/label_map.json"
    # train always uses label_map.json
    assert build_data_source_overrides(skill, "train", SEED_DATASETS)["dataset.label_map"] == f"{S3_TRAIN}/label_map.json"


def test_stereo_entries_carry_data_file_and_dataset_name(bank):
    skill = bank.get("tao-train-fast-foundation-stereo")
    out = build_data_source_overrides(skill, "train", SEED_DATASETS, dataset_format="genericdataset")
    assert out == {
        "dataset.train_dataset.data_sources": [{"data_file": f"{S3_TRAIN}/annotations.txt", "dataset_name": "GenericDataset"}],
        "dataset.val_dataset.data_sources": [{"data_file": f"{S3_EVAL}/annotations.txt", "dataset_name": "GenericDataset"}],
    }
    with pytest.raises(DataSourceError, match="needs the dataset format"):
        build_data_source_overrides(skill, "train", SEED_DATASETS)
    with pytest.raises(DataSourceError, match="not supported"):
        build_data_source_overrides(skill, "train", SEED_DATASETS, dataset_format="NotAFormat")


def _skill_md_examples(skill_dir: Path) -> dict[str, dict]:
    """The python dict examples of SKILL.md's Typical Spec Overrides, by action."""
    text = (skill_dir / "SKILL.md").read_text(encoding="utf-8")
    section = text.split("## Typical Spec Overrides", 1)[1].split("\n## ", 1)[0]
    out = {}
    for chunk in re.split(r"\n(?=\*\*[a-z_]+\*\* )", section)[1:]:
        action = re.match(r"\*\*([a-z_]+)\*\*", chunk).group(1)
        block = re.search(r"```python\n(\{.*?\})\n```", chunk, re.S)
        if block:
            out.setdefault(action, eval(block.group(1), {"S3_TRAIN": S3_TRAIN, "S3_EVAL": S3_EVAL}))  # noqa: S307
    return out


@pytest.mark.parametrize("skill_name", MODEL_SKILLS)
def test_sdk_output_equals_skill_md_typical_overrides(bank, skill_name):
    """The data-source entries documented in each SKILL.md are exactly what the SDK builds."""
    skill = bank.get(skill_name)
    examples = _skill_md_examples(skill.dir)
    assert examples, f"no examples parsed from {skill.dir / 'SKILL.md'}"
    fmt = {"tao-train-oneformer": "coco_panoptic", "tao-train-fast-foundation-stereo": "GenericDataset"}.get(skill_name)
    checked = 0
    for action, example in examples.items():
        keys = {r.spec_key for r in skill.dataset_requirements(action)}
        shown = {k: v for k, v in example.items() if k in keys}
        if not shown:
            continue
        # the roles the table names for the action (an eval dataset given to Deformable DETR train
        # would replace the train datasets it validates on, with a note)
        roles = {r.source for r in skill.dataset_requirements(action)}
        built = build_data_source_overrides(skill, action, {r: v for r, v in SEED_DATASETS.items() if r in roles},
                                            dataset_format=fmt)
        assert {k: built[k] for k in shown} == shown, f"{skill_name} {action}"
        checked += 1
    assert checked >= 3


def test_missing_role_names_action_key_and_role(bank):
    with pytest.raises(DataSourceError) as err:
        build_data_source_overrides(bank.get("rtdetr"), "train", {"train_datasets": [S3_TRAIN]})
    msg = str(err.value)
    assert "train" in msg and "dataset.val_data_sources" in msg and "eval_dataset" in msg and "--eval-dataset" in msg
    with pytest.raises(DataSourceError, match="unknown dataset role"):
        build_data_source_overrides(bank.get("rtdetr"), "train", {"training": [S3_TRAIN]})


# ----------------------------------------------------------------------------- spec building
def test_build_spec_layers_template_datasources_overrides(bank):
    spec = build_spec("rtdetr", "train", {"train.num_epochs": 3, "dataset.num_classes": 4,
                                          "train.optim.lr": 2e-4, "dataset.augmentation.train_spatial_size": [128, 128]},
                      SEED_DATASETS)
    assert spec["train"]["num_epochs"] == 3
    assert spec["train"]["optim"]["lr"] == 2e-4
    assert spec["dataset"]["train_data_sources"][0]["json_file"] == f"{S3_TRAIN}/annotations.json"
    assert spec["model"]["backbone"] == bank.get("rtdetr").template("train")["model"]["backbone"]
    # user overrides win over data sources
    spec = build_spec("rtdetr", "evaluate", {"evaluate.checkpoint": "/m.pth",
                                             "dataset.test_data_sources": {"image_dir": "/x", "json_file": "/y.json"}},
                      {"eval_dataset": S3_EVAL})
    assert spec["dataset"]["test_data_sources"] == {"image_dir": "/x", "json_file": "/y.json"}


def test_validation_lists_every_problem_with_path_value_allowed_and_suggestion():
    with pytest.raises(SpecValidationError) as err:
        build_spec("rtdetr", "train", {"train.num_epoch": 10, "dataset.num_classes": "<num_classes> + 1",
                                       "train.optim.lr": -1.0, "model.backbone": "resnet_5O",
                                       "train.optim.lr_scheduler": "Cosine"}, SEED_DATASETS)
    problems = {p.path: p for p in err.value.problems}
    assert problems["train.num_epoch"].suggestion == "train.num_epochs"
    assert problems["dataset.num_classes"].value == "<num_classes> + 1"
    assert "integer" in problems["dataset.num_classes"].allowed
    assert problems["train.optim.lr"].value == -1.0 and "[" in problems["train.optim.lr"].allowed
    assert "resnet_50" in problems["model.backbone"].allowed
    assert "train.optim.lr_scheduler" in problems
    text = str(err.value)
    assert "did you mean 'train.num_epochs'" in text and text.count("\n  - ") == len(err.value.problems)


def test_required_field_names_the_mapping_that_fills_it():
    with pytest.raises(SpecValidationError) as err:
        build_spec("rtdetr", "evaluate", {}, {"eval_dataset": S3_EVAL})
    (problem,) = err.value.problems
    assert problem.path == "evaluate.checkpoint" and "parent_job_id" in problem.message


def test_unknown_action_suggests(bank):
    with pytest.raises(Exception, match="did you mean 'evaluate'"):
        build_spec("rtdetr", "evalute")


def test_cli_value_parsing():
    assert parse_override_value("1e-4") == 1e-4
    assert parse_override_value("[640, 640]") == [640, 640]
    assert parse_override_value("true") is True
    assert parse_set_options(["a.b=3", "c={'x': 1}"]) == {"a.b": 3, "c": {"x": 1}}
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_set_options(["novalue"])


# ----------------------------------------------------------------------------- AutoML policy
@pytest.mark.parametrize("request_text", [
    "turn off AutoML and fine-tune RT-DETR", "Disable AutoML please", "no HPO, just one run",
    "plain training on my S3 data", "train without automl", "switch AutoML off", "AutoML: off",
    "don't use hyperparameter search", "skip the HPO step", "please do plain-training",
])
def test_off_phrases(request_text):
    assert resolve_automl_policy("rtdetr", request=request_text) == "off"


@pytest.mark.parametrize("request_text", [None, "", "fine-tune RT-DETR on my S3 data", "use AutoML to tune lr",
                                          "don't turn off AutoML"])
def test_auto_by_default(request_text):
    assert resolve_automl_policy("rtdetr", request=request_text) == "auto"


def test_explicit_policy_wins():
    assert resolve_automl_policy("rtdetr", "auto", request="no HPO") == "auto"
    assert resolve_automl_policy("rtdetr", "off", request="use AutoML") == "off"
    with pytest.raises(Exception, match="'auto' or 'off'"):
        resolve_automl_policy("rtdetr", "sometimes")


def test_routing(bank, tmp_path):
    route = route_action("rtdetr", "train")
    assert route.target == "tao-run-automl" and route.automl
    route = route_action("rtdetr", "train", request="plain training")
    assert route.target == "tao-train-rtdetr" and not route.automl and "plain training" in route.reason
    for action in ("evaluate", "export", "gen_trt_engine"):
        assert route_action("rtdetr", action).target == "tao-train-rtdetr"
    # metadata is not changed by a per-run override
    assert bank.get("rtdetr").info["automl_enabled"] is True
    # missing train schema: AutoML enabled but not runnable
    shutil.copytree(bank.root / "skills", tmp_path / "skills")
    shutil.copytree(bank.root / "schemas", tmp_path / "schemas")
    (tmp_path / "skills/tao-train-rtdetr/schemas/train.schema.json").unlink()
    route = route_action("rtdetr", "train", bank=SkillBank(tmp_path))
    assert not route.automl and "AutoML enabled but not runnable until schemas are generated" in route.reason
