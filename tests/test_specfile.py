"""TAO experiment spec files in (issue 9, Build 1): `tao-skills validate`, the base-spec layer of
`create_job` / `plan_job` / `build_spec`, and the rule "a spec that TAO Core's ExperimentConfig
accepts is accepted" on spec files written in TAO's style (tests/fixtures/tao_specs)."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from tao_sdk import Workspace
from tao_sdk.cli import main
from tao_sdk.errors import DataSourceError, SpecValidationError
from tao_sdk.jobs import plan_job
from tao_sdk.spec import build_spec
from tao_sdk.specfile import Conformed, conform, validate_spec_file

SPECS = Path(__file__).with_name("fixtures") / "tao_specs"
CASES = [(f, a, d, v) for f, rows in yaml.safe_load((SPECS / "cases.yaml").read_text()).items()
         for a, d, v in rows]
DATASETS = {"train_datasets": ["/data/train"], "eval_dataset": "/data/eval"}


def _have_tao() -> bool:
    try:
        return importlib.util.find_spec("nvidia_tao_core") is not None and importlib.util.find_spec("omegaconf")
    except (ImportError, ValueError):
        return False


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("TAO_SKILLS_STORAGE", raising=False)
    return Workspace(tmp_path / "ws")


@pytest.mark.parametrize("name,action,deploy,verdict", CASES, ids=[f"{c[0]}:{c[1]}{'-trt' if c[2] else ''}"
                                                                  for c in CASES])
def test_spec_file_verdicts(name, action, deploy, verdict):
    report = validate_spec_file(name.split("/")[0], action, SPECS / name, deploy=deploy)
    assert report.ok == (verdict == "accept"), [str(p) for p in report.problems]
    if not report.ok:
        assert report.problems and all(p.path for p in report.problems)


@pytest.mark.maintainer
@pytest.mark.skipif(not _have_tao(), reason="TAO Core is not installed (maintainers: pip install omegaconf "
                                            "requests && pip install --no-deps nvidia-tao-core==7.3.0)")
def test_validate_agrees_with_tao_core_on_every_pair():
    """TAO Core's own verdict: OmegaConf.merge(OmegaConf.structured(ExperimentConfig), file)."""
    from omegaconf import OmegaConf

    disagreements = []
    for name, action, deploy, _ in CASES:
        network = name.split("/")[0]
        config = importlib.import_module(f"nvidia_tao_core.config.{network}.default_config").ExperimentConfig
        try:
            OmegaConf.merge(OmegaConf.structured(config), OmegaConf.load(SPECS / name))
            tao_ok = True
        except Exception:  # noqa: BLE001 - any OmegaConf error is TAO's rejection
            tao_ok = False
        ours = validate_spec_file(network, action, SPECS / name, deploy=deploy).ok
        if ours != tao_ok:
            disagreements.append((name, action, deploy, tao_ok, ours))
    assert not disagreements
    assert len(CASES) >= 15


def test_conform_reads_values_as_omegaconf_does():
    schema = {"type": "object", "additionalProperties": False, "properties": {
        "lr": {"type": "number"}, "n": {"type": "integer"}, "flag": {"type": "boolean"},
        "dtype": {"type": "string", "enum": ["FP32", "FP16", "INT8"]}, "name": {"type": ["string", "null"]},
        "path": {"type": ["string", "null"]}, "key": {"type": ["string", "null"]},
        "sizes": {"type": "array", "items": {"type": "integer"}}}}
    log = Conformed()
    out = conform(schema, {"lr": "1e-4", "n": "8", "flag": "yes", "dtype": "int8", "name": 7, "path": "???",
                           "key": "${oc.env:TAO_ENCRYPTION_KEY}", "sizes": ["???"]}, log)
    assert out == {"lr": 1e-4, "n": 8, "flag": True, "dtype": "INT8", "name": "7",
                   "key": "${oc.env:TAO_ENCRYPTION_KEY}"}
    assert sorted(log.unset) == ["path", "sizes"]
    assert ["lr", "1e-4", 1e-4] in [list(c) for c in log.coerced]
    # what cannot be conformed is left for the schema check to report
    assert conform(schema, {"lr": "fast", "dtype": "int4"}) == {"lr": "fast", "dtype": "int4"}


def test_validate_cli_lists_fills_coercions_and_other_sections(ws, capsys):
    code = main(["validate", "rtdetr", "train", "-e", str(SPECS / "rtdetr" / "experiment.yaml"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"], out["problems"]
    assert out["other_sections"] == ["evaluate", "export", "inference"]
    assert "output_dir" in out["filled_by_sdk"]["results_dir"]
    assert "--train-dataset" in out["filled_by_sdk"]["dataset.train_data_sources"]
    assert ["train.optim.lr", "2e-4", 2e-4] in out["coerced"]
    assert any(w.startswith("results_dir:") and "SDK-owned" in w for w in out["warnings"])
    code = main(["validate", "rtdetr", "gen_trt_engine", "--deploy", "-e", str(SPECS / "rtdetr" / "trt_engine.yaml")])
    text = capsys.readouterr().out
    assert code == 0 and "'int8' -> 'INT8'" in text
    assert "gen_trt_engine.onnx_file <- 'parent_model' inference mapping" in text


def test_validate_cli_reports_every_problem_and_exits_2(ws, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  num_epoch: 3\n  optim:\n    lr: fast\nevaluate:\n  conf_threshold: high\n"
                   "gen_trt_engine:\n  tensorrt:\n    data_type: int4\n")
    code = main(["validate", "rtdetr", "train", "-e", str(bad), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 2 and not out["ok"]
    paths = {p["path"]: p for p in out["problems"]}
    assert set(paths) == {"train.num_epoch", "train.optim.lr", "evaluate.conf_threshold",
                          "gen_trt_engine.tensorrt.data_type"}
    assert paths["train.num_epoch"]["suggestion"] == "train.num_epochs"
    assert "INT8" in paths["gen_trt_engine.tensorrt.data_type"]["allowed"]
    assert main(["validate", "rtdetr", "train", "-e", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_spec_file_is_the_layer_under_overrides(ws):
    plan = plan_job("rtdetr", "train", datasets=DATASETS, base_spec=SPECS / "rtdetr" / "experiment.yaml",
                    spec_overrides={"train.num_epochs": 3}, automl_policy="off", workspace=ws)
    spec = plan.spec
    assert spec["train"]["num_epochs"] == 3                    # the override wins over the file
    assert spec["train"]["optim"]["lr"] == 2e-4 and spec["model"]["backbone"] == "resnet_18"  # file over template
    assert spec["results_dir"] == plan.results_uri            # SDK-owned: the file's value is replaced...
    assert any("results_dir" in w and "/workspace/results/rtdetr_experiment" in w for w in plan.warnings)  # ...loudly
    assert spec["dataset"]["train_data_sources"] == [{"image_dir": "/data/train/images.tar.gz",
                                                      "json_file": "/data/train/annotations.json"}]
    assert "evaluate" not in spec and any("evaluate, export, inference" in n for n in plan.notes)
    as_dict = build_spec("rtdetr", "train", {"train.num_epochs": 3}, DATASETS,
                         base_spec=yaml.safe_load((SPECS / "rtdetr" / "experiment.yaml").read_text()),
                         mapped_values={"results_dir": plan.results_uri})
    assert as_dict["train"] == spec["train"]


def test_cli_spec_and_run_take_a_spec_file(ws, capsys):
    common = ["rtdetr", "train", "-e", str(SPECS / "rtdetr" / "rectangle_train.yaml"),
              "--train-dataset", "/data/train", "--eval-dataset", "/data/eval", "--json"]
    assert main(["spec", *common, "--set", "train.num_epochs=2"]) == 0
    spec = json.loads(capsys.readouterr().out)["spec"]
    assert spec["dataset"]["augmentation"]["multi_scales"][0] == [384, 640]
    assert spec["train"]["num_epochs"] == 2 and spec["train"]["optim"]["lr_backbone"] == 1e-5
    assert main(["run", *common, "--automl-policy", "off", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dry_run"] and plan["spec"]["dataset"]["num_classes"] == 3


def test_missing_data_roles_fail_at_plan_time(ws):
    with pytest.raises(DataSourceError, match="needs dataset role 'train_datasets'.*--train-dataset"):
        plan_job("rtdetr", "train", automl_policy="off", workspace=ws)
    with pytest.raises(DataSourceError, match="'eval_dataset'.*--eval-dataset"):
        plan_job("rtdetr", "train", datasets={"train_datasets": ["/d"]}, automl_policy="off", workspace=ws)
    # a role is satisfied when the user's spec already sets its key
    plan = plan_job("rtdetr", "train", datasets={"train_datasets": ["/d"]}, automl_policy="off", workspace=ws,
                    spec_overrides={"dataset.val_data_sources": {"image_dir": "/v/i.tar.gz", "json_file": "/v/a.json"}})
    assert plan.spec["dataset"]["val_data_sources"]["json_file"] == "/v/a.json"


def test_skill_md_never_calls_a_required_role_optional():
    """One source of truth: every row of the Per-Action Dataset Requirements table is required
    (the SDK enforces them all), so the prose must not call a listed role optional."""
    import re

    from tao_sdk.bank import SkillBank

    for skill in SkillBank().skills():
        if not skill.is_model:
            continue
        text = skill.skill_md_path.read_text(encoding="utf-8")
        for action in skill.actions:
            roles = {r.source for r in skill.dataset_requirements(action)}
            for role in roles:
                label = role.replace("_", " ")
                for m in re.finditer(rf"{label}[^\n]*\n?[^\n]*optional for `?{action}`?", text, re.IGNORECASE):
                    pytest.fail(f"{skill.name} SKILL.md calls {role} optional for {action}: {m.group(0)!r}")


def test_spec_problems_name_the_file_section(ws):
    bad = {"train": {"optim": {"lr": "fast"}}, "export": {"opset_version": "seventeen"}}
    with pytest.raises(SpecValidationError) as err:
        plan_job("rtdetr", "train", datasets=DATASETS, base_spec=bad, automl_policy="off", workspace=ws)
    assert {p.path for p in err.value.problems} == {"train.optim.lr", "export.opset_version"}


PUBLISHED = yaml.safe_load((SPECS / "published_cases.yaml").read_text())


@pytest.mark.maintainer
@pytest.mark.skipif(not _have_tao() or not __import__("os").environ.get("TAO_PUBLISHED_SPECS"),
                    reason="needs TAO Core and TAO_PUBLISHED_SPECS (a folder holding clones of NVIDIA/tao_pytorch_backend, "
                           "NVIDIA/tao_deploy, NVIDIA/tao_tutorials)")
def test_published_specs_agree_with_tao_core():
    """NVIDIA's own experiment specs for the four seed networks: same verdict as TAO Core."""
    import os

    from omegaconf import OmegaConf

    root = Path(os.environ["TAO_PUBLISHED_SPECS"])
    disagreements, pairs = [], 0
    for name, entry in PUBLISHED.items():
        path = root / name
        config = importlib.import_module(f"nvidia_tao_core.config.{entry['network']}.default_config").ExperimentConfig
        try:
            OmegaConf.merge(OmegaConf.structured(config), OmegaConf.load(path))
            tao_ok = True
        except Exception:  # noqa: BLE001 - any OmegaConf error is TAO's rejection
            tao_ok = False
        for action, deploy in entry["actions"]:
            pairs += 1
            if validate_spec_file(entry["network"], action, path, deploy=deploy).ok != tao_ok:
                disagreements.append((name, action, deploy, tao_ok))
    assert not disagreements and pairs == 31


def test_a_whole_experiment_file_as_overrides_points_to_base_spec(ws):
    data = yaml.safe_load((SPECS / "rtdetr" / "experiment.yaml").read_text())
    with pytest.raises(Exception, match=r"whole sections \(evaluate, export, inference\).*base_spec= \(CLI -e FILE\)"):
        plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides=data, automl_policy="off", workspace=ws)
