"""Fast unit tests of the worker: CLI contract, status lines, redaction, staging, validation."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import DatasetError, SpecError, UnsafeArchiveError
from tao_sdk.worker.staging import safe_extract, stage_image_dir
from tao_sdk.worker.tasks.detection.coco import load_coco, read_label_map
from tao_sdk.worker.status import ResultsSync, StatusWriter, write_experiment_yaml

REPO = Path(__file__).resolve().parents[2]


def _py(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)


def test_import_is_light():
    """Importing the SDK and the worker CLI must not import torch / transformers."""
    res = _py("import sys, tao_sdk, tao_sdk.worker, tao_sdk.worker.cli, tao_sdk.worker.job, "
              "tao_sdk.worker.staging, tao_sdk.worker.tasks.detection.synthetic\n"
              "print(sorted(m for m in ('torch', 'transformers', 'onnx') if m in sys.modules))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_worker_import_pulls_no_sdk_planning_modules():
    """A compute node imports the worker without the SDK's planning side."""
    res = _py("import sys, tao_sdk.worker\n"
              "print(sorted(m for m in ('jsonschema', 'sqlite3', 'torch') if m in sys.modules))\n"
              "print({'rtdetr', 'deformable_detr'} <= set(tao_sdk.worker.NETWORKS),"
              " tao_sdk.worker.supports('rtdetr', 'export'),"
              " tao_sdk.worker.supports('rtdetr', 'distill'), tao_sdk.worker.supports('x', 'train'))")
    assert res.returncode == 0, res.stderr
    mods, nets = res.stdout.strip().splitlines()
    assert mods == "[]"
    assert nets == "True True True False"  # registered networks, read from the registry


def test_worker_modules_import_in_one_direction():
    """cli -> job -> engine -> distributed: the launcher and the engine never import the job."""
    res = _py("import sys, tao_sdk.worker.distributed, tao_sdk.worker.engine\n"
              "print('tao_sdk.worker.job' in sys.modules, 'tao_sdk.worker.cli' in sys.modules)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False False"


def test_registry_plugins_and_launch_facts():
    """Each registered network has a plugin module and a launch method from its skill."""
    from tao_sdk import SkillBank
    from tao_sdk.worker import NETWORKS, registry

    for network in NETWORKS:
        plugin = registry.get(network)
        assert plugin.name == network and plugin.task.name
        method = SkillBank().get(network).info["launch"]["method"]
        assert registry.launch_method(network) == {"torchrun": "torchrun",
                                                   "lightning": "spawn"}[method]
    with pytest.raises(KeyError, match="unknown network 'nope'"):
        registry.get("nope")


def test_cli_unknown_network_writes_failure(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"results_dir": str(tmp_path / "res")}))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "tao_sdk.worker", "yolo_v9", "train", "-e",
                          str(spec)], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    assert "unknown network 'yolo_v9'" in res.stderr and "rtdetr" in res.stderr
    lines = (tmp_path / "res" / "train" / "status.json").read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["status"] == "FAILURE" and "yolo_v9" in last["message"]


def test_cli_missing_spec_is_usage_error(tmp_path, capsys):
    from tao_sdk.worker.cli import main

    assert main(["rtdetr", "train", "-e", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml does not exist" in capsys.readouterr().err


def test_overrides_are_parsed_as_yaml():
    spec = S.apply_overrides({"train": {"num_epochs": 1}},
                             ["train.num_epochs=5", "model.return_interm_indices=[1, 2]",
                              "results_dir=s3://b/r"])
    assert spec["train"]["num_epochs"] == 5
    assert spec["model"]["return_interm_indices"] == [1, 2]
    assert spec["results_dir"] == "s3://b/r"
    with pytest.raises(SpecError, match="dotted.key=value"):
        S.parse_override("train.num_epochs")


def test_task_results_dir_rules():
    assert S.task_results_dir({"results_dir": "s3://b/job/"}, "train") == "s3://b/job/train"
    assert S.task_results_dir({"results_dir": "/r", "export": {"results_dir": "/x"}},
                              "export") == "/x"
    with pytest.raises(SpecError, match="results_dir is not set"):
        S.task_results_dir({}, "train")


def test_status_writer_lines_and_sticky_kpi(tmp_path):
    calls = []
    w = StatusWriter(tmp_path / "t" / "status.json", on_write=lambda: calls.append(1))
    w.started("Starting.")
    w.running("epoch", epoch=0, max_epoch=1, step=4, max_step=8, time_per_epoch="0:00:01",
              eta="0:00:01", kpi={"train_loss": 2.5, "val_mAP50": 0.1})
    w.running("epoch", epoch=1, max_epoch=1, kpi={"train_loss": 1.5})
    w.failure("boom")
    lines = [json.loads(x) for x in (tmp_path / "t" / "status.json").read_text().splitlines()]
    assert [ln["status"] for ln in lines] == ["STARTED", "RUNNING", "RUNNING", "FAILURE"]
    assert list(lines[1])[:5] == ["date", "time", "status", "verbosity", "message"]
    assert lines[2]["kpi"] == {"train_loss": 1.5, "val_mAP50": 0.1}  # sticky, merged
    assert lines[3]["kpi"] == {"train_loss": 1.5, "val_mAP50": 0.1}
    assert lines[3]["verbosity"] == "ERROR"
    assert "epoch" not in lines[3] and lines[1]["max_epoch"] == 1
    assert len(calls) == 4
    results = pytest.importorskip("tao_sdk.results")
    st = results.summarize_status((tmp_path / "t" / "status.json").read_text(), task="train")
    assert st.status == "FAILURE" and st.epoch == 1


def test_experiment_yaml_redacts_secrets(tmp_path):
    spec = {"encryption_key": "nvidia_tlt", "results_dir": "s3://user:pw@host/b",
            "model": {"key": "k1"}, "cloud": {"aws_secret_access_key": "abc", "token": "t"},
            "train": {"num_epochs": 3}}
    write_experiment_yaml(tmp_path / "experiment.yaml", spec)
    text = (tmp_path / "experiment.yaml").read_text()
    for secret in ("nvidia_tlt", "k1", "abc", ":pw@"):
        assert secret not in text
    data = yaml.safe_load(text)
    assert data["encryption_key"] == S.REDACTED and data["train"]["num_epochs"] == 3


def _tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            tf.addfile(m, io.BytesIO(data) if m.isfile() else None)
    return path


def _file(name: str, size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _link(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize("member,match", [
    (_file("/etc/evil.jpg"), "absolute path"),
    (_file("../evil.jpg"), "escapes"),
    (_file("images/../../evil.jpg"), "escapes"),
    (_link("images/x.jpg", "../../outside.jpg"), "escapes"),
    (_link("images/y.jpg", "/etc/passwd"), "absolute"),
    (_link("z.jpg", "../outside.jpg", hard=True), "escapes"),
])
def test_unsafe_tar_is_rejected(tmp_path, member, match):
    archive = _tar(tmp_path / "images.tar.gz", [_file("ok.jpg"), member])
    dest = tmp_path / "out" / "images"
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path / "out" / "evil.jpg").exists()


def test_safe_extract_once_with_marker(tmp_path):
    archive = _tar(tmp_path / "images.tar.gz", [_file("a/b.jpg"), _link("a/c.jpg", "b.jpg")])
    dest = safe_extract(archive, tmp_path / "x")
    assert (dest / "a" / "b.jpg").read_bytes() == b"x"
    stamp = (dest / "a" / "b.jpg").stat().st_mtime_ns
    (dest / "a" / "b.jpg").write_bytes(b"changed")
    safe_extract(archive, tmp_path / "x")  # marker matches: not extracted again
    assert (dest / "a" / "b.jpg").read_bytes() == b"changed"
    os.utime(archive, ns=(stamp + 10**9, stamp + 10**9))  # archive changed: extract again
    safe_extract(archive, tmp_path / "x")
    assert (dest / "a" / "b.jpg").read_bytes() == b"x"


def test_processes_extracting_the_same_archive_at_once_never_see_it_vanish(tmp_path):
    """Two nodes (or concurrent trials) sharing a cache extract the same archive at once: each
    one, once safe_extract returns, finds every file in place (the Slurm DDP test saw a rank's
    folder removed by the other node's late rename)."""
    archive = _tar(tmp_path / "images.tar.gz", [_file(f"img{i}.jpg") for i in range(200)])
    go = tmp_path / "go"
    code = (f"import os, time, pathlib\nfrom tao_sdk.worker.staging import safe_extract\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
            f"for i in range(25):\n"
            f"    d = safe_extract({str(archive)!r}, pathlib.Path({str(tmp_path)!r}) / f'd{{i}}')\n"
            f"    assert (d / 'img199.jpg').is_file(), f'd{{i}} vanished'\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(errors)[-2000:]


def test_not_a_tar_names_the_file(tmp_path):
    bad = tmp_path / "images.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(DatasetError, match="images.tar.gz is not a readable tar archive"):
        safe_extract(bad, tmp_path / "x")


def test_stage_image_dir_uses_sibling_archive(tiny_dataset):
    # TAO's handle_tar_path: ".../images" stands for ".../images.tar.gz"
    folder = stage_image_dir(str(tiny_dataset["val"]["root"] / "images"), "image_dir")
    assert len(list(folder.glob("*.jpg"))) == 4


def _coco(tmp_path: Path, ds, **edit) -> Path:
    data = json.loads(Path(ds["annotations"]).read_text())
    for key, fn in edit.items():
        fn(data)
    out = tmp_path / "annotations.json"
    out.write_text(json.dumps(data))
    return out


def test_load_coco_ok_and_errors(tmp_path, tiny_dataset):
    ds = tiny_dataset["val"]
    image_dir = stage_image_dir(str(ds["images"]), "image_dir")
    data = load_coco(Path(ds["annotations"]), image_dir, num_classes=3, what="val")
    assert len(data.images) == 4 and all(im.path.exists() for im in data.images)
    assert data.label_to_category == {1: 1, 2: 2} or set(data.label_to_category) <= {1, 2}

    corrupt = tmp_path / "bad.json"
    corrupt.write_text('{"images": [\n  {"id": 1,, }')
    with pytest.raises(DatasetError, match=r"bad.json is not valid JSON .*line 2"):
        load_coco(corrupt, image_dir, 3)

    missing = _coco(tmp_path, ds, a=lambda d: d["images"].append(
        {"id": 99, "file_name": "ghost_001.jpg", "width": 64, "height": 64}))
    with pytest.raises(DatasetError, match="ghost_001.jpg") as err:
        load_coco(missing, image_dir, 3)
    assert "missing from" in str(err.value)

    with pytest.raises(DatasetError, match="raise dataset.num_classes to at least 3"):
        load_coco(Path(ds["annotations"]), image_dir, num_classes=2)
    remapped = load_coco(Path(ds["annotations"]), image_dir, num_classes=2, remap=True)
    assert remapped.label_to_category == {0: 1, 1: 2}  # MSCOCO ids 1, 2 -> classes 0, 1

    far = _coco(tmp_path, ds, a=lambda d: [a.update(category_id=90) for a in d["annotations"]])
    assert load_coco(far, image_dir, 80, remap=True).label_to_category == {0: 1, 1: 2, 79: 90}
    odd = _coco(tmp_path, ds, a=lambda d: d["annotations"][0].update(category_id=12))
    with pytest.raises(DatasetError, match="not MSCOCO category ids"):
        load_coco(odd, image_dir, 80, remap=True)


def test_read_label_map_rules(tmp_path):
    f = tmp_path / "label_map.txt"
    f.write_text("square\ndisc\n")
    assert read_label_map(f, 3) == {1: "square", 2: "disc"}  # COCO ids from 1
    assert read_label_map(f, 2) == {0: "square", 1: "disc"}
    f.write_text("0 background\n1 square\n2: disc\n")
    assert read_label_map(f, 3) == {0: "background", 1: "square", 2: "disc"}
    f.write_text("a\nb\nc\nd\n")
    with pytest.raises(DatasetError, match="lists 4 class names"):
        read_label_map(f, 3)


def test_synthetic_is_deterministic(tmp_path):
    from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset

    a = make_coco_dataset(tmp_path / "a", 3, 0, classes=("x", "y", "z"), size=48, seed=5)
    b = make_coco_dataset(tmp_path / "b", 3, 0, classes=("x", "y", "z"), size=48, seed=5)
    ja = json.loads(a["train"]["annotations"].read_text())
    assert ja == json.loads(b["train"]["annotations"].read_text())
    assert a["train"]["images"].read_bytes() == b["train"]["images"].read_bytes()
    assert [c["id"] for c in ja["categories"]] == [1, 2, 3]
    assert a["train"]["label_map"].read_text().split() == ["x", "y", "z"]
    assert "val" not in a


def test_spec_errors_name_the_key():
    from tao_sdk.worker.registry import get

    def build_arch(network, spec):
        return get(network).build_arch(spec)

    spec = {"dataset": {"num_classes": 3}, "model": {"backbone": "fan_tiny"}}
    with pytest.raises(SpecError, match="model.backbone='fan_tiny'.*resnet_18"):
        build_arch("rtdetr", spec)
    spec = {"dataset": {"num_classes": 3}, "model": {"num_queries": 5, "num_select": 100}}
    with pytest.raises(SpecError, match="model.num_select=100"):
        build_arch("rtdetr", spec)
    spec = {"dataset": {"num_classes": 3}, "model": {"hidden_dim": 30, "nheads": 4}}
    with pytest.raises(SpecError, match="model.hidden_dim=30"):
        build_arch("deformable_detr", spec)


def test_unhonoured_fields_listed():
    from tao_sdk.worker.registry import get

    def unhonoured_fields(network, action, spec):
        return get(network).unhonoured(action, spec)

    spec = {"model": {"frozen_fm": {"enabled": True}, "eval_idx": -1},
            "train": {"num_gpus": 8, "precision": "fp16"}, "wandb": {"enable": True},
            "dataset": {"augmentation": {"iou_crop_prob": 0.8}}}
    got = unhonoured_fields("rtdetr", "train", spec)
    assert "model.frozen_fm.enabled=True" in got
    assert not any(g.startswith("train.num_gpus") for g in got)  # honoured: data-parallel
    assert not any(g.startswith("wandb.") for g in got)  # honoured: tao_sdk.worker.tracking
    assert not any(g.startswith("train.precision") for g in got)  # honoured (autocast)
    assert not any(g.startswith("model.eval_idx") for g in got)
    assert not any(g.startswith("train.") for g in unhonoured_fields("rtdetr", "evaluate", spec))


def test_results_sync_uploads_changes_and_links(tmp_path):
    local = tmp_path / "stage"
    remote = tmp_path / "remote"
    local.mkdir()
    (local / "model_epoch_000.pth").write_bytes(b"abc")
    (local / "rtdetr_model_latest.pth").symlink_to("model_epoch_000.pth")
    (local / "status.json").write_text("{}\n")
    sync = ResultsSync(local, str(remote), min_interval=0)
    assert sync.sync(force=True) == 3
    assert (remote / "rtdetr_model_latest.pth").read_bytes() == b"abc"
    assert sync.sync(force=True) == 0
    (local / "status.json").write_text("{}\n{}\n")
    assert sync.pending() == ["status.json"]


def test_stage_spec_rewrites_paths(tiny_dataset):
    from tao_sdk.worker.staging import stage_spec
    from tao_sdk.worker.tasks.detection import TASK

    keys = TASK.staged_keys  # what the detection task says to stage

    val = tiny_dataset["val"]
    spec = {"dataset": {"infer_data_sources": {"image_dir": [str(val["images"])],
                                               "classmap": str(val["label_map"])},
                        "test_data_sources": {"image_dir": str(val["images"]),
                                              "json_file": str(val["annotations"])}},
            "evaluate": {"checkpoint": None}}
    logs: list[str] = []
    out = stage_spec(spec, "inference", logs.append, data_keys=keys("inference"))
    folder = Path(out["dataset"]["infer_data_sources"]["image_dir"][0])
    assert folder.is_dir() and len(list(folder.glob("*.jpg"))) == 4
    assert out["dataset"]["infer_data_sources"]["classmap"] == str(val["label_map"])
    assert spec["dataset"]["infer_data_sources"]["image_dir"] == [str(val["images"])]  # copy
    assert any("images.tar.gz ->" in line for line in logs)
    out = stage_spec(spec, "evaluate", data_keys=keys("evaluate"))
    assert Path(out["dataset"]["test_data_sources"]["image_dir"]).is_dir()
    assert out["evaluate"]["checkpoint"] is None


def test_interpolations_resolved():
    spec = {"encryption_key": "${oc.env:TAO_ENCRYPTION_KEY}", "results_dir": "/r",
            "train": {"num_epochs": 4, "checkpoint_interval": "${train.num_epochs}",
                      "results_dir": "${results_dir}/train-${oc.env:JOB,x}"}}
    out = S.resolve_interpolations(spec, env={"TAO_ENCRYPTION_KEY": "k"})
    assert out["encryption_key"] == "k"
    assert out["train"]["checkpoint_interval"] == 4  # keeps the referenced type
    assert out["train"]["results_dir"] == "/r/train-x"
    assert spec["encryption_key"].startswith("${")  # input untouched
    with pytest.raises(SpecError, match="TAO_ENCRYPTION_KEY is not set"):
        S.resolve_interpolations(spec, env={})
    with pytest.raises(SpecError, match="model.nope"):
        S.resolve_interpolations({"a": "${model.nope}"}, env={})
