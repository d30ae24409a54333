"""The docker platform on a REAL container engine (tools/container_engine.sh: podman + runc).

The image is the test image of tools/container_test_image.py: this machine's Python plus the TAO
entrypoint test double (tests/fake_tao.py) installed as TAO's per-network commands (``rtdetr``...),
as in NVIDIA's images. Everything else is real: podman run/inspect/logs/stop, the job store,
the mounts, the user, the labels. One test trains the tiny RT-DETR for real in the worker image
of tools/container_worker_image.py. Never skipped under CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tao_sdk import Workspace, cancel_job, create_job, get_job, job_logs, plan_job, wait_for_job
from tao_sdk.errors import PlatformError
from tao_sdk.platforms import NODE_PYTHON, JobTask, get_platform

pytestmark = pytest.mark.docker

KEY = "model-key-d0c4e7a9f1"
TRAIN = {"train.num_epochs": 2, "dataset.num_classes": 3}


def _podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout


def _dataset(root: Path) -> dict:
    """Dataset roots with the files the rtdetr train spec names (the test double reads none)."""
    for role in ("train", "eval"):
        (root / role).mkdir(parents=True)
        (root / role / "annotations.json").write_text("{}")
        (root / role / "images.tar.gz").write_bytes(b"")
    return {"train_datasets": [str(root / "train")], "eval_dataset": str(root / "eval")}


@pytest.fixture
def ws(tmp_path, monkeypatch, container_engine, container_cleanup) -> Workspace:
    """A workspace whose jobs run in the test image with podman."""
    monkeypatch.setenv("TAO_DOCKER_CLI", "podman")
    monkeypatch.setenv("TAO_DOCKER_IMAGE", container_engine)
    monkeypatch.setenv("TAO_DOCKER_CANCEL_TIMEOUT", "5")
    monkeypatch.setenv("TAO_DOCKER_GPUS", "none")  # the spec's train.num_gpus=1; this machine has no GPU
    monkeypatch.setenv("TAO_DOCKER_PASS_ENV", "FAKE_TAO_* AWS_*")
    monkeypatch.setenv("TAO_SKILLS_WORKSPACE", str(tmp_path / "ws"))
    for var in ("TAO_SKILLS_ENTRYPOINT", "FAKE_TAO_FAIL", "FAKE_TAO_SLEEP", "FAKE_TAO_EPOCHS", "TAO_ENCRYPTION_KEY",
                "TAO_DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return Workspace(tmp_path / "ws")


def test_mounts_user_labels_and_no_secret_in_the_engine(container_engine, tmp_path, container_cleanup):
    data, results = tmp_path / "data", tmp_path / "results"
    data.mkdir()
    (data / "labels.json").write_text('{"classes": 3}')
    go = tmp_path / "job" / "go"
    code = f"""
        import hashlib, os, time
        print("data:", open({str(data / 'labels.json')!r}).read())
        try:
            open({str(data / 'new')!r}, "w")
        except OSError as exc:
            print("data write refused:", exc.errno)
        open({str(results / 'out.txt')!r}, "w").write("written")
        print("uid", os.getuid(), os.getgid(), "key", hashlib.sha256(os.environ["TAO_ENCRYPTION_KEY"].encode()).hexdigest())
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
    """
    task = JobTask("job-mounts", [NODE_PYTHON, "-c", textwrap.dedent(code)], {"TAO_ENCRYPTION_KEY": KEY},
                   str(tmp_path / "job"), data_paths={"dataset.image_dir": str(data / "labels.json"),
                                                      "results_dir": str(results)})
    me = f"{os.getuid()}:{os.getgid()}"  # TAO's --user $(id -u):$(id -g)
    platform = get_platform("docker", cli="podman", image=container_engine)
    handle = platform.submit(task)
    try:
        info = json.loads(_podman("inspect", handle["container_id"]))[0]
        dump = json.dumps(info) + _podman("ps", "-a", "--no-trunc", "--filter", f"id={handle['container_id']}",
                                          "--format", "{{.Command}}")
        assert KEY not in dump  # not in the config, env, command line or labels
        assert not list((tmp_path / "job").glob(".tao-secrets-*"))  # taken and deleted at start
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts[str(data)]["RW"] is False and mounts[str(results)]["RW"] is True
        assert mounts[str(data)]["Source"] == str(data) and mounts[str(tmp_path / "job")]["RW"] is True
        assert info["Config"]["User"] == me
        # --ipc=host (podman 4.3's inspect says "shareable"): the job shares this machine's IPC namespace
        assert os.readlink(f"/proc/{info['State']['Pid']}/ns/ipc") == os.readlink("/proc/self/ns/ipc")
        labels = info["Config"]["Labels"]
        assert labels["org.tao-skill-bank.job-id"] == "job-mounts"
        assert labels["org.tao-skill-bank.workdir"] == str(tmp_path / "job")
    finally:
        go.touch()
    state = platform.wait(handle, timeout=60, interval=0.2)
    log = Path(platform.logs_path(handle)).read_text()
    assert state.exit_code == 0, log
    assert 'data: {"classes": 3}' in log and "data write refused: 30" in log  # EROFS
    assert f"uid {me.replace(':', ' ')} key {hashlib.sha256(KEY.encode()).hexdigest()}" in log and (results / "out.txt").read_text() == "written"
    assert not _podman("ps", "-a", "-q", "--filter", f"name={handle['container_name']}").strip()  # removed


def test_run_options_gpus_ipc_mounts_secrets_file(tmp_path):
    """TAO's GPU flags (docker --gpus device=<ids>, podman CDI devices; numbered from 0 inside), IPC,
    one read-only mount per dataset root at the spec's path, the secrets file for another user."""
    from tao_sdk.platforms.docker import _env_split, _gpu_args

    task = JobTask("job-g", ["x"], {}, str(tmp_path), num_gpus=2, gpu_ids=[1, 3],
                   visible_devices_env="TAO_VISIBLE_DEVICES")
    assert _gpu_args(task, {}, "docker") == (["--gpus", '"device=1,3"'], 2)
    assert _gpu_args(task, {}, "/usr/bin/podman") == (["--device", "nvidia.com/gpu=1", "--device",
                                                       "nvidia.com/gpu=3"], 2)
    assert _gpu_args(task, {"gpus": "all"}, "docker")[0] == ["--gpus", "all"]
    assert _gpu_args(task, {"gpus": "none"}, "docker") == ([], 0)
    assert _env_split(task, {}, 2)[0]["TAO_VISIBLE_DEVICES"] == "0,1"
    platform = get_platform("docker", cli="docker", image="img", ipc="private", shm_size="32g")
    args = platform._run_args(task, "docker", str(tmp_path), str(tmp_path / "job.log"), "n", None, {}, [])
    assert args[args.index("--ipc") + 1:args.index("--ipc") + 4] == ["private", "--shm-size", "32g"]
    with pytest.raises(PlatformError, match="did you mean 'image'"):
        get_platform("docker", imgae="x").config
    from tao_sdk.platforms.docker import _give_secrets_to, _mount_plan

    real = tmp_path / "real" / "train"
    real.mkdir(parents=True)
    (real / "a.json").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    linked, work = tmp_path / "link" / "train", tmp_path / "w"
    task = JobTask("job-m", ["x"], {}, str(work), data_paths={
        "dataset.json_file": str(linked / "a.json"), "dataset.image_dir": str(linked),
        "results_dir": str(work / "results"), "model.pretrained": "s3://b/m.pth"})
    assert _mount_plan(task, str(work), str(work)) == [(str(work), False), (str(linked), True)]  # one per root
    args = platform._run_args(task, "docker", str(work), str(work / "job.log"), "n", None, {}, [])
    assert f"{real}:{linked}:ro" in args  # at the path the spec names
    task.data_paths["dataset.val"] = "/no/such/dataset"
    with pytest.raises(PlatformError, match="dataset.val = /no/such/dataset does not exist on this machine"):
        _mount_plan(task, str(work), str(work))

    secret = tmp_path / ".tao-secrets-x"
    secret.write_text("export K=v\n")
    secret.chmod(0o600)
    if os.getuid() == 0:  # another container user gets the file, still 0600
        _give_secrets_to(str(secret), "1234:5678")
        assert secret.stat().st_uid == 1234 and secret.stat().st_mode & 0o777 == 0o600
    with pytest.raises(PlatformError, match="numeric uid:gid"):
        _give_secrets_to(str(secret), "tao")
    assert not secret.exists()  # never left behind


def test_job_runs_in_the_image_and_reattaches_after_sdk_restart(ws, tmp_path):
    datasets = _dataset(tmp_path / "data")
    plan = plan_job("rtdetr", "train", datasets=datasets, spec_overrides=TRAIN, automl_policy="off",
                      platform="docker", workspace=ws)
    assert plan.backend.argv == ("rtdetr", "train") and plan.backend.image == os.environ["TAO_DOCKER_IMAGE"]
    assert "image present on this machine" in plan.backend.detail
    code = textwrap.dedent(f"""
        from tao_sdk import create_job, Workspace
        job = create_job("rtdetr", "train", datasets={datasets!r}, spec_overrides={TRAIN!r}, automl_policy="off",
                         platform="docker", encryption_key={KEY!r}, workspace=Workspace({str(ws.root)!r}))
        print(job.id)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    job = wait_for_job(out.stdout.strip().splitlines()[-1], timeout=60, poll_interval=0.2, workspace=ws)
    assert job.status.value == "SUCCESS", job.result
    assert job.record.platform == "docker" and job.kpis["val_mAP50"] > 0
    assert "fake rtdetr train starting" in job_logs(job.id, workspace=ws)
    files = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 5 and not [f for f in files if KEY.encode() in f]


def test_plan_names_nvidia_image_and_the_ngc_login(ws, tmp_path, monkeypatch):
    monkeypatch.delenv("TAO_DOCKER_IMAGE")
    trt = {"spec_overrides": {"gen_trt_engine.onnx_file": str(tmp_path / "model.onnx")},
           "datasets": {"calibration_dataset": str(tmp_path)}}
    plan = plan_job("rtdetr", "gen_trt_engine", platform="docker", workspace=ws, **trt)
    assert plan.backend.image == "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-deploy"  # TensorRT: the deploy image
    assert "submit pulls it" in plan.backend.detail
    assert "podman login nvcr.io -u '$oauthtoken'" in plan.backend.detail
    monkeypatch.setenv("TAO_DOCKER_PULL", "never")
    with pytest.raises(PlatformError, match="pull is never: pull it first"):
        create_job("rtdetr", "gen_trt_engine", platform="docker", workspace=ws, **trt)


def test_worker_image_runs_the_seed_networks_others_stay_on_nvidia_images(ws, tmp_path, monkeypatch):
    monkeypatch.delenv("TAO_DOCKER_IMAGE")
    monkeypatch.setenv("TAO_DOCKER_WORKER_IMAGE", "worker:test")  # planned only: never pulled
    plan = plan_job("rtdetr", "train", datasets=_dataset(tmp_path / "data"), spec_overrides=TRAIN,
                      automl_policy="off", platform="docker", workspace=ws)
    assert plan.backend.kind == "worker" and plan.backend.image == "worker:test"
    assert plan.command[:5] == [NODE_PYTHON, "-m", "tao_sdk.worker", "rtdetr", "train"]
    plan = plan_job("dino", "train", datasets=_dataset(tmp_path / "dino"), automl_policy="off",
                      platform="docker", workspace=ws)
    assert plan.backend.image == "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt" and plan.backend.argv == ("dino", "train")


def test_worker_image_trains_tiny_rtdetr(tmp_path, monkeypatch, worker_image, container_cleanup):
    """A real seed-network job in the worker image (tools/container_worker_image.py): the tiny RT-DETR,
    1 epoch on four 64 px images, `python3 -m tao_sdk.worker rtdetr train` in a podman container."""
    from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset

    for var in ("TAO_DOCKER_IMAGE", "TAO_DOCKER_ENTRYPOINT", "TAO_DOCKER_CONFIG", "TAO_WORKER_BACKBONE_SCALE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TAO_DOCKER_CLI", "podman")
    monkeypatch.setenv("TAO_DOCKER_WORKER_IMAGE", worker_image)
    monkeypatch.setenv("TAO_DOCKER_GPUS", "none")
    monkeypatch.setenv("TAO_DOCKER_PULL", "never")  # the image is local: nothing is pulled
    ws = Workspace(tmp_path / "ws")
    ds = make_coco_dataset(tmp_path / "data", n_train=4, n_val=2, size=64, seed=1)
    job = create_job("rtdetr", "train", preset="tiny", automl_policy="off", platform="docker", workspace=ws,
                     datasets={"train_datasets": [str(ds["train"]["root"])], "eval_dataset": str(ds["val"]["root"])},
                     spec_overrides={"train.num_epochs": 1, "train.checkpoint_interval": 1,
                                     "train.validation_interval": 1, "dataset.num_classes": 3})
    assert job.record.platform_handle["image"] == worker_image
    job = wait_for_job(job.id, timeout=180, poll_interval=0.5, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    assert "val_mAP50" in job.kpis and job.result["preset"] == "tiny"
    assert "TAO_WORKER_BACKBONE_SCALE=tiny" in job.logs()


def test_ptm_download_destinations_are_not_mounted(ws, tmp_path):
    """TAO's PTM download descriptors (OneFormer's train.pretrained_backbone -> /ptm/...) name a file the
    job downloads itself: not a path of this machine the container needs mounted (nor a child inherits)."""
    from tao_sdk.jobs import job_task

    plan = plan_job("oneformer", "train", datasets={"train_datasets": [str(tmp_path)], "eval_dataset": str(tmp_path)},
                    automl_policy="off", workspace=ws, validate_datasets=False)
    assert plan.downloads and plan.spec["train"]["pretrained_backbone"].startswith("/ptm/")
    paths = job_task(plan, {}, str(tmp_path / "job")).data_paths
    assert "train.pretrained_backbone" not in paths and str(tmp_path / "label_map.json") in paths.values()


def test_failing_container_is_failure_with_log_tail(ws, tmp_path, monkeypatch):
    # a launcher inside the image (docker setting entrypoint) that crashes before TAO writes status.json
    monkeypatch.setenv("TAO_DOCKER_ENTRYPOINT",
                       "python3 -c \"import sys; print('CUDA error: no kernel image for this GPU'); sys.exit(3)\"")
    job = create_job("rtdetr", "train", datasets=_dataset(tmp_path / "data"), spec_overrides=TRAIN,
                     automl_policy="off", platform="docker", workspace=ws)
    assert job.record.spec and job.record.platform_handle["container_id"]
    job = wait_for_job(job.id, timeout=60, poll_interval=0.2, workspace=ws)
    assert job.status.value == "FAILURE" and job.result["exit_code"] == 3
    assert "exit code 3; log tail:" in job.result["message"]
    assert "CUDA error: no kernel image" in job.result["message"]


def test_cancel_stops_the_container(ws, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_TAO_SLEEP", "30")
    job = create_job("rtdetr", "train", datasets=_dataset(tmp_path / "data"), spec_overrides=TRAIN,
                     automl_policy="off", platform="docker", workspace=ws)
    name = job.record.platform_handle["container_name"]
    assert _podman("ps", "-q", "--filter", f"name={name}").strip()
    started = time.monotonic()
    job = cancel_job(job.id, workspace=ws)
    assert job.status.value == "CANCELED" and time.monotonic() - started < 15
    assert not _podman("ps", "-a", "-q", "--filter", f"name={name}").strip()
    assert get_job(job.id, workspace=ws).status.value == "CANCELED"


def test_adopts_a_container_whose_submitter_died(container_engine, tmp_path, container_cleanup):
    platform = get_platform("docker", cli="podman", image=container_engine)
    assert platform.recover_handle(str(tmp_path / "nothing")) is None
    handle = platform.submit(JobTask("job-a", [NODE_PYTHON, "-c", "print('adopted')"], {}, str(tmp_path / "a")))
    (tmp_path / "a" / "docker_handle.json").unlink()  # as if the SDK died right after `podman run`
    found = platform.recover_handle(str(tmp_path / "a"))
    assert found["container_id"] == handle["container_id"]  # found by its work-folder label
    assert platform.wait(found, timeout=60, interval=0.2).exit_code == 0
    platform.block_start(str(tmp_path / "b"))  # a submission given up: it never starts
    with pytest.raises(PlatformError, match="submission was given up"):
        platform.submit(JobTask("job-b", [NODE_PYTHON, "-c", "pass"], {}, str(tmp_path / "b")))


def test_automl_trials_run_as_containers(ws, tmp_path, monkeypatch):
    """The controller is SDK code and runs here (the platform's controller_platform); every trial
    is a container of the job's image, planned for the docker platform."""
    monkeypatch.setenv("FAKE_TAO_OBJECTIVE", "lr")
    cfg = {"algorithm": "random", "max_recommendations": 2, "max_concurrent": 1, "poll_interval": 0.2,
           "hyperparameters": ["train.optim.lr"], "seed": 5}
    job = create_job("rtdetr", "train", datasets=_dataset(tmp_path / "data"), spec_overrides=TRAIN, automl=cfg,
                     platform="docker", workspace=ws)
    assert job.record.kind == "automl" and job.record.platform == "local"
    job = wait_for_job(job.id, timeout=90, poll_interval=0.5, workspace=ws)
    assert job.status.value == "SUCCESS", job.result.get("message")
    from tao_sdk import list_jobs

    trials = list_jobs(parent_id=job.id, workspace=ws)
    assert len(trials) == 2 and all(t.record.platform == "docker" and t.status.value == "SUCCESS" for t in trials)
    assert all(t.record.platform_handle["image"] == os.environ["TAO_DOCKER_IMAGE"] for t in trials)


@pytest.fixture
def engine_socket(container_engine, tmp_path):
    """A podman API service on a unix socket: a "remote" engine address (``host``)."""
    sock = tmp_path / "podman.sock"
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "podman system service did not start"
        time.sleep(0.05)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(timeout=30)


def test_engine_address_is_kept_in_the_handle(container_engine, engine_socket, tmp_path, container_cleanup):
    platform = get_platform("docker", cli="podman", image=container_engine, host=engine_socket)
    handle = platform.submit(JobTask("job-r", [NODE_PYTHON, "-c", "print('via the socket')"], {}, str(tmp_path / "r")))
    assert handle["host"] == engine_socket
    other = get_platform("docker", cli="podman")  # a later process without the setting re-attaches
    assert other.wait(handle, timeout=60, interval=0.2).exit_code == 0
    assert "via the socket" in Path(other.logs_path(handle)).read_text()


def test_cancel_kills_a_job_that_ignores_sigterm_after_the_grace_period(container_engine, tmp_path,
                                                                         container_cleanup):
    platform = get_platform("docker", cli="podman", image=container_engine, cancel_timeout=1)
    ready = tmp_path / "s" / "ready"
    code = f"""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(ready)!r}, "w").close()
        time.sleep(300)
    """
    handle = platform.submit(JobTask("job-s", [NODE_PYTHON, "-c", textwrap.dedent(code)], {}, str(tmp_path / "s")))
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline, Path(platform.logs_path(handle)).read_text()
        time.sleep(0.05)
    started = time.monotonic()
    platform.cancel(handle)
    assert time.monotonic() - started < 10
    state = platform.poll(handle)
    assert state.is_exited and state.exit_code == -15, state
