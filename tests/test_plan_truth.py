"""The plan tells the truth (issue 9, Build 3): every case below used to pass a dry run (or be
silently ignored) and fail, or do something else, at run time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tao_sdk import Workspace
from tao_sdk.cli import main
from tao_sdk.errors import TaoSkillsError
from tao_sdk.jobs import create_job, plan_job
from tao_sdk.jobstore import JobRecord, JobStatus
from tao_sdk.spec import build_spec
from tao_sdk.specfile import validate_spec_file

DATASETS = {"train_datasets": ["/data/train"], "eval_dataset": "/data/eval"}
TRAIN = {"train.num_epochs": 4, "dataset.num_classes": 3}


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("TAO_SKILLS_STORAGE", raising=False)
    return Workspace(tmp_path / "ws")


def _finished_train(ws: Workspace, skill: str = "tao-train-rtdetr", **overrides) -> JobRecord:
    """A SUCCESS train record with a checkpoint in its results folder (what a real train leaves)."""
    spec = build_spec(skill, "train", {**TRAIN, **overrides}, DATASETS)
    record = JobRecord(skill=skill, action="train", spec=spec)
    record.results_uri = ws.results_uri(record.id)
    ckpt = Path(record.results_uri) / "train" / "model_epoch_003.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    ws.store.create(record)
    return ws.store.set_status(record.id, JobStatus.SUCCESS)


def test_explicit_automl_arguments_beat_the_request_text(ws):
    plan = plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN, workspace=ws,
                      request="run AutoML with bayesian search, not plain training",
                      automl={"algorithm": "bayesian", "max_recommendations": 3})
    assert plan.route.automl and plan.route.target == "tao-run-automl"
    assert "explicit AutoML arguments" in plan.route.reason and "plain training" in plan.route.reason


def test_conflicting_automl_arguments_fail_at_plan_time(ws, capsys):
    with pytest.raises(TaoSkillsError, match="automl_policy='off' contradicts.*algorithm"):
        plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN, automl_policy="off",
                 automl={"algorithm": "bayesian"}, workspace=ws)
    code = main(["run", "rtdetr", "train", "--train-dataset", "/d/t", "--eval-dataset", "/d/e", "--dry-run",
                 "--automl-policy", "off", "--automl-trials", "5"])
    assert code == 2 and "--automl-trials" in capsys.readouterr().err
    with pytest.raises(TaoSkillsError, match="does not run AutoML: 'evaluate' is not a train action"):
        plan_job("rtdetr", "evaluate", datasets={"eval_dataset": "/d"}, automl={"algorithm": "random"}, workspace=ws)


@pytest.mark.parametrize("trials", [0, -2])
def test_zero_or_negative_counts_are_errors(ws, capsys, trials):
    code = main(["run", "rtdetr", "train", "--train-dataset", "/d/t", "--eval-dataset", "/d/e", "--dry-run",
                 "--set", "dataset.num_classes=3", "--automl-trials", str(trials)])
    err = capsys.readouterr().err
    assert code == 2 and "max_recommendations (--automl-trials) must be an integer >= 1" in err
    with pytest.raises(TaoSkillsError, match=r"max_concurrent \(--automl-concurrency\) must be an integer >= 1"):
        plan_job("rtdetr", "train", datasets=DATASETS, automl={"max_concurrent": 0}, workspace=ws)


def test_a_parent_on_an_action_that_takes_none_is_an_error(ws):
    train = _finished_train(ws)
    with pytest.raises(TaoSkillsError, match=r"train takes no parent job.*tao-skills resume"):
        plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides=TRAIN, parent_job_id=train.id,
                 automl_policy="off", workspace=ws)


def test_settings_that_must_match_the_parent_are_checked_at_plan_time(ws, tmp_path):
    train = _finished_train(ws, **{"model.backbone": "resnet_18", "dataset.augmentation.eval_spatial_size": [512, 512]})
    ev = {"eval_dataset": "/data/eval"}
    with pytest.raises(TaoSkillsError, match=r"dataset\.num_classes = 5 but train job .* used 3"):
        plan_job("rtdetr", "evaluate", datasets=ev, parent_job_id=train.id, workspace=ws,
                 spec_overrides={"dataset.num_classes": 5})
    spec_file = tmp_path / "evaluate.yaml"
    spec_file.write_text("model:\n  backbone: resnet_50\ndataset:\n  augmentation:\n    eval_spatial_size: [640, 640]\n")
    with pytest.raises(TaoSkillsError) as err:
        plan_job("rtdetr", "evaluate", datasets=ev, parent_job_id=train.id, workspace=ws, base_spec=spec_file)
    assert "model.backbone = 'resnet_50'" in str(err.value) and "eval_spatial_size" in str(err.value)
    # post-processing may differ; the rest is inherited and agrees
    plan = plan_job("rtdetr", "evaluate", datasets=ev, parent_job_id=train.id, workspace=ws,
                    spec_overrides={"model.num_select": 50})
    assert plan.spec["model"]["backbone"] == "resnet_18" and plan.spec["model"]["num_select"] == 50


def test_sdk_owned_parent_checkpoint_replaced_with_a_warning(ws):
    train = _finished_train(ws)
    plan = plan_job("rtdetr", "export", parent_job_id=train.id, workspace=ws,
                    spec_overrides={"export.checkpoint": "/elsewhere/model.pth", "results_dir": "/tmp/mine"})
    assert plan.spec["export"]["checkpoint"].endswith("train/model_epoch_003.pth")
    assert plan.spec["results_dir"] == plan.results_uri
    assert any("export.checkpoint is set by the SDK" in w and "/elsewhere/model.pth" in w for w in plan.warnings)
    assert any(w.startswith("results_dir is set by the SDK") for w in plan.warnings)


def test_a_chained_job_takes_the_data_roles_its_train_job_had(ws):
    """Deformable DETR export lists the training sets (TAO's network config): a job chained from
    the train job inherits them; datasets given to the job win; evaluate still needs its own."""
    train = _finished_train(ws, "tao-train-deformable-detr")
    plan = plan_job("deformable_detr", "export", parent_job_id=train.id, workspace=ws)
    assert plan.spec["dataset"]["train_data_sources"] == train.spec["dataset"]["train_data_sources"]
    plan = plan_job("deformable_detr", "export", parent_job_id=train.id, workspace=ws,
                    datasets={"train_datasets": ["/data/other"]})
    assert plan.spec["dataset"]["train_data_sources"][0]["image_dir"].startswith("/data/other/")
    with pytest.raises(TaoSkillsError, match="needs dataset role 'eval_dataset'"):
        plan_job("deformable_detr", "evaluate", parent_job_id=train.id, workspace=ws)


def test_no_datasets_fails_the_dry_run(ws, capsys):
    code = main(["run", "rtdetr", "train", "--automl-policy", "off", "--dry-run"])
    assert code == 2 and "needs dataset role 'train_datasets'" in capsys.readouterr().err


def test_automl_dry_run_prints_search_space_and_budget(ws, capsys):
    args = ["run", "rtdetr", "train", "--train-dataset", "/d/t", "--eval-dataset", "/d/e", "--dry-run",
            "--set", "dataset.num_classes=3", "--automl-algorithm", "random", "--automl-trials", "4",
            "--automl-concurrency", "2"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert ("AutoML: 4 trials x up to 10 epochs (random) = up to 40 epochs on 1 GPU each, 2 at a time; "
            "automl_policy=off (--automl-policy off) to train once") in text
    assert "PARAMETER" in text and "SCALE" in text
    lr_line = next(line for line in text.splitlines() if line.startswith("train.optim.lr "))
    assert "log" in lr_line and "[" in lr_line
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in data["automl"]["search_space"]}
    assert rows["train.optim.lr"]["scale"] == "log" and rows["train.optim.lr"]["low"] > 0
    assert data["automl"]["budget"] == {"max_recommendations": 4, "max_epochs_per_trial": 10, "max_concurrent": 2,
                                        "max_total_epochs": 40}


@pytest.mark.slow
def test_a_secret_in_any_form_travels_only_by_environment(tmp_path, monkeypatch, capsys, s3_env):
    """Issue 10 item 3 / issue 9 Build 2: a key given in a spec file, as --set, or in
    spec_overrides reaches the job by environment and nowhere else: every workspace file, every
    S3 object and every printed output is searched for it."""
    import boto3
    import yaml

    from tao_sdk.jobs import wait_for_job

    fake_tao = Path(__file__).with_name("fake_tao.py")
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", f"{__import__('sys').executable} {fake_tao}")
    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("TAO_SKILLS_STORAGE", f"s3://{s3_env}/tao")
    monkeypatch.delenv("TAO_ENCRYPTION_KEY", raising=False)
    monkeypatch.setenv("FAKE_TAO_EPOCHS", "1")
    dump = tmp_path / "env.json"
    monkeypatch.setenv("FAKE_TAO_DUMP_ENV", str(dump))
    ws = Workspace(tmp_path / "ws", storage_root=f"s3://{s3_env}/tao")
    file_key, set_key = "file-k3y-7d1e", "set-k3y-99ab"
    spec_file = tmp_path / "experiment.yaml"
    spec_file.write_text(f"encryption_key: {file_key}\ntrain:\n  num_epochs: 1\ndataset:\n  num_classes: 3\n")
    outputs = []

    job = create_job("rtdetr", "train", datasets=DATASETS, base_spec=spec_file, automl_policy="off", workspace=ws)
    outputs.append(repr(job.result))
    job = wait_for_job(job.id, timeout=60, poll_interval=0.1, workspace=ws)
    assert job.status.value == "SUCCESS", job.result
    assert json.loads(dump.read_text())["TAO_ENCRYPTION_KEY"] == file_key     # it travelled by environment
    assert any("moved to the job environment (TAO_ENCRYPTION_KEY)" in w for w in job.result["warnings"])
    stored = yaml.safe_load((ws.job_dir(job.id) / "spec.yaml").read_text())
    assert stored["encryption_key"] == "${oc.env:TAO_ENCRYPTION_KEY}"

    common = ["rtdetr", "train", "--train-dataset", "/data/train", "--eval-dataset", "/data/eval",
              "--set", "dataset.num_classes=3", "--set", f"encryption_key={set_key}"]
    run = ["run", *common, "--automl-policy", "off"]
    for argv in (["spec", *common, "--json"], ["spec", *common], [*run, "--dry-run", "--json"],
                 [*run, "--dry-run"], [*run, "-e", str(spec_file), "--dry-run", "--json"],
                 ["validate", "rtdetr", "train", "-e", str(spec_file), "--json"],
                 [*run, "--wait", "--json"], ["status", job.id, "--json"], ["jobs", "--json"]):
        assert main(argv) == 0, argv
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
    assert json.loads(dump.read_text())["TAO_ENCRYPTION_KEY"] == set_key      # the --set job got its key
    plan = plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides={**TRAIN, "encryption_key": set_key},
                    request="run AutoML", automl={"max_recommendations": 2}, workspace=ws)
    outputs += [json.dumps(plan.to_dict(), default=str), repr(plan)]

    haystacks = {str(p): p.read_bytes() for p in ws.root.rglob("*") if p.is_file()}
    s3 = boto3.client("s3")
    for obj in s3.list_objects_v2(Bucket=s3_env).get("Contents", []):
        haystacks[f"s3://{s3_env}/{obj['Key']}"] = s3.get_object(Bucket=s3_env, Key=obj["Key"])["Body"].read()
    assert any(name.endswith("/spec.yaml") and name.startswith("s3://") for name in haystacks)
    for secret in (file_key, set_key):
        for name, data in haystacks.items():
            assert secret.encode() not in data, name
        for text in outputs:
            assert secret not in text


def test_rtdetr_num_queries_beyond_encoder_positions_fails_at_plan_time_and_is_never_sampled(ws):
    """Issue 8 item 6: topk over the encoder's positions ('selected index k out of range')."""
    from tao_sdk.automl.controller import build_space, normalize_settings
    from tao_sdk.bank import get_bank
    from tao_sdk.errors import SpecValidationError

    small = {**TRAIN, "dataset.augmentation.train_spatial_size": [96, 96],
             "dataset.augmentation.multi_scales": [[64, 96], 96]}
    with pytest.raises(SpecValidationError) as err:
        plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides=small, automl_policy="off", workspace=ws)
    (problem,) = err.value.problems
    assert problem.path == "model.num_queries" and problem.value == 300
    assert "more than 126: the encoder has 126 positions at 64x96" in problem.message
    assert "8x12 + 4x6 + 2x3" in problem.message and "dataset.augmentation.multi_scales)" in problem.message
    assert problem.allowed == "<= 126"
    # the same rule caps the AutoML search space: no trial the plan would reject
    skill = get_bank().get("rtdetr")
    base = plan_job("rtdetr", "train", datasets=DATASETS, spec_overrides={**small, "model.num_queries": 100,
                    "model.num_select": 50}, automl_policy="off", workspace=ws).spec
    space = build_space(skill, normalize_settings({"algorithm": "random"}), {}, base)
    row = next(r for r in space.describe() if r["name"] == "model.num_queries")
    assert row["high"] == 126
    assert all(space.sample(seed)["model.num_queries"] <= 126 for seed in range(200))
    # a num_select larger than num_queries x num_classes is caught the same way
    bad_file = ws.root.parent / "small.yaml"
    bad_file.write_text("dataset:\n  augmentation:\n    train_spatial_size: [64, 64]\n    multi_scales: [64]\n")
    report = validate_spec_file("rtdetr", "train", bad_file)
    assert not report.ok and report.problems[0].path == "model.num_queries"
    with pytest.raises(SpecValidationError, match=r"model.num_select: 400 is more than 300.*raise model.num_queries"):
        plan_job("rtdetr", "train", datasets=DATASETS, automl_policy="off", workspace=ws,
                 spec_overrides={**TRAIN, "dataset.num_classes": 1, "model.num_select": 400})


def test_extract_secrets_moves_every_secret_and_only_secrets():
    from tao_sdk.secrets import extract_secrets

    clean, env = extract_secrets({"encryption_key": "K", "export": {"encryption_key": "K"},
                                  "vlm": {"api_key": "A"}, "dataset": {"default_cam_key": "cam0"},
                                  "model": {"use_clstoken": True}, "evaluate": {"encryption_key": "???"}})
    assert env == {"TAO_ENCRYPTION_KEY": "K", "TAO_SECRET_VLM_API_KEY": "A"}
    assert clean["export"]["encryption_key"] == "${oc.env:TAO_ENCRYPTION_KEY}"
    assert clean["dataset"]["default_cam_key"] == "cam0" and clean["model"]["use_clstoken"] is True
    assert clean["evaluate"]["encryption_key"] == "???"
    with pytest.raises(TaoSkillsError, match="export.encryption_key holds a different secret"):
        extract_secrets({"encryption_key": "K", "export.encryption_key": "L"}, dotted=True)


def test_an_export_inherits_the_input_size_its_model_was_trained_at(ws):
    """RT-DETR trained at 160x256 (dataset.augmentation.eval_spatial_size): its export runs at
    160x256, not at the schema's 640x640; an explicit other size is kept and flagged by a note
    naming the keys and both values. OneFormer follows train_crop_size the same way."""
    train = _finished_train(ws, **{"dataset.augmentation.train_spatial_size": [160, 256],
                                   "dataset.augmentation.eval_spatial_size": [160, 256]})
    plan = plan_job("rtdetr", "export", parent_job_id=train.id, workspace=ws)
    assert (plan.spec["export"]["input_height"], plan.spec["export"]["input_width"]) == (160, 256)
    assert any("export.input_height/export.input_width = 160x256" in n and train.id in n for n in plan.notes)
    plan = plan_job("rtdetr", "export", parent_job_id=train.id, workspace=ws,
                    spec_overrides={"export.input_height": 640, "export.input_width": 640})
    assert plan.spec["export"]["input_height"] == 640
    assert any("export.input_height/export.input_width = 640x640 but train job" in n and "160x256" in n
               and "eval_spatial_size = [160, 256]" in n for n in plan.notes)
    seg = JobRecord(skill="tao-train-oneformer", action="train", spec=build_spec(
        "tao-train-oneformer", "train", {"dataset.augmentation.train_crop_size": [96, 128]}, validate=False))
    seg.results_uri = ws.results_uri(seg.id)
    (Path(seg.results_uri) / "train").mkdir(parents=True)
    (Path(seg.results_uri) / "train" / "oneformer_model_epoch_000.pth").write_bytes(b"weights")
    ws.store.create(seg)
    ws.store.set_status(seg.id, JobStatus.SUCCESS)
    plan = plan_job("oneformer", "export", parent_job_id=seg.id, workspace=ws)
    assert (plan.spec["export"]["input_height"], plan.spec["export"]["input_width"]) == (96, 128)
