"""Pretrained weights at plan time: the plan names the weights a job starts from (URI, source,
resolved location, size when known), NVIDIA's catalog names resolve to ngc:// URIs, malformed
URIs are refused before submit, and a Hugging Face folder is staged as it is (it used to be
"does not exist")."""

from __future__ import annotations

import json

import pytest

from tao_sdk import Workspace
from tao_sdk.cli import main
from tao_sdk.errors import TaoSkillsError
from tao_sdk.jobs import plan_job
from tao_sdk.worker.staging import stage_spec
from tests.test_plan_truth import DATASETS, TRAIN

@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    """A workspace (also the CLI's) and, beside it, a Hugging Face folder ``tmp_path/hf-model``."""
    for name, value in (("TAO_SKILLS_WORKSPACE", str(tmp_path / "ws")), ("TAO_WORKER_CACHE", str(tmp_path / "c"))):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TAO_SKILLS_STORAGE", raising=False)
    return Workspace(tmp_path / "ws")


@pytest.fixture
def hf_folder(tmp_path):
    folder = tmp_path / "hf-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"0" * 100)
    return folder


def test_plan_names_the_weights_from_every_source(ws, hf_folder, capsys):
    for uri, source in [(str(hf_folder), "local"), ("hf://org/name@v2", "hf"), ("https://h/m.pth", "https"),
                        ("ngc://nvidia/tao/m:v1/m.pth", "ngc"), ("s3://bucket/ptm/m.pth", "s3")]:
        plan = plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl_policy="off",
                        pretrained_model=uri, workspace=ws)
        full = {w["spec_field"]: w for w in plan.to_dict()["weights"]}["train.pretrained_model_path"]
        assert (full["uri"], full["source"]) == (uri, source)
    assert main(["run", "rtdetr", "train", "--train-dataset", "/d/t", "--eval-dataset", "/d/e", "--dry-run",
                 "--automl-policy", "off", "--pretrained-model", str(hf_folder), "--json"]) == 0
    weights = json.loads(capsys.readouterr().out)["weights"]
    assert weights[0]["kind"] == "folder" and weights[0]["size"] == 102


def test_nvidia_names_and_bad_uris_at_plan_time(ws):
    plan = plan_job("deformable_detr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl_policy="off",
                    pretrained_model="nvidia", workspace=ws)
    assert plan.spec["model"]["pretrained_backbone_path"] == (
        "ngc://nvidia/tao/pretrained_deformable_detr_coco:ddetr_resnet_50_trainable_v1.0")  # model.backbone resnet_50
    plan = plan_job("deformable_detr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl_policy="off",
                    pretrained_model="nvidia:resnet50", workspace=ws)
    assert plan.weights[0]["uri"] == "ngc://nvidia/tao/pretrained_deformable_detr_nvimagenet:resnet50"
    with pytest.raises(TaoSkillsError, match="no NVIDIA model 'bogus'; choose one of .*nvidia:resnet50"):
        plan_job("deformable_detr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl_policy="off",
                 pretrained_model="nvidia:bogus", workspace=ws)
    with pytest.raises(TaoSkillsError, match="names no NVIDIA model for tao-train-rtdetr; give the weights as a URI"):
        plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl_policy="off",
                 pretrained_model="nvidia", workspace=ws)
    for bad, why in [("ngc://nvidia/no-version", "ngc://ORG/"), ("gs://b/m.pth", "unsupported scheme"),
                     ("https://h/m.pth#md5=1", "#sha256=")]:
        with pytest.raises(TaoSkillsError, match=why):
            plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl_policy="off",
                     pretrained_model=bad, workspace=ws)


def test_a_local_hf_folder_is_staged_as_it_is(ws, hf_folder):
    spec = {"train": {"pretrained_model_path": str(hf_folder)}, "model": {"pretrained_backbone_path": ""}}
    assert stage_spec(spec, "train")["train"]["pretrained_model_path"] == str(hf_folder)
