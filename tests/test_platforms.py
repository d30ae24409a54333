"""The platform suite every platform must pass (local, a REAL Slurm cluster, a REAL container engine).

Submit and poll to success, failure with exit code and log tail, cancel (the whole process
tree), re-attach from the stored handle in a new process, and secrets absent from every file
the run leaves (and, on Slurm, from the controller's state and ``scontrol show job``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tao_sdk.errors import PlatformError
from tao_sdk.platforms import NODE_PYTHON, JobTask, get_platform
from tao_sdk.platforms.slurm import load_config, split_secret_env
from test_local_platform import _alive

REPO = Path(__file__).resolve().parents[1]
KEY = "enc-key-7f3a9c11e2"
AWS_SECRET = "aws-secret-51b0d7e4aa9f"


@pytest.fixture(params=["local", pytest.param("slurm", marks=pytest.mark.slurm),
                        pytest.param("docker", marks=pytest.mark.docker)])
def platform(request, tmp_path):
    """A platform instance; slurm jobs see ``tmp_path`` (shared: same host) and this Python;
    docker jobs run in the test image (podman) with its Python."""
    if request.param == "slurm":
        request.getfixturevalue("slurm_cluster")
        return get_platform("slurm", python=sys.executable, shared_paths=[str(tmp_path)],
                            cancel_timeout=30)
    if request.param == "docker":
        image = request.getfixturevalue("container_engine")
        request.getfixturevalue("container_cleanup")
        return get_platform("docker", cli="podman", image=image, cancel_timeout=5)
    return get_platform("local", cancel_timeout=5)


def _tree_gone(platform, handle, pids: list[int]) -> bool:
    """True once no process of the cancelled job runs (a container's pids are its own: there, the
    container itself must be gone from the running ones)."""
    if platform.name == "docker":
        out = subprocess.run(["podman", "ps", "-q", "--filter", f"name={handle['container_name']}"],
                             capture_output=True, text=True).stdout
        return not out.strip()
    return not any(_alive(p) for p in pids)


def _task(tmp_path: Path, code: str, name: str = "job", env: dict[str, str] | None = None) -> JobTask:
    return JobTask(job_id=f"job-{name}", command=[NODE_PYTHON, "-c", textwrap.dedent(code)],
                   env=env or {}, workdir=str(tmp_path / name))


def test_success_exit_code_and_log(platform, tmp_path):
    handle = platform.submit(_task(tmp_path, "print('hello from the job')"))
    assert json.loads(json.dumps(handle)) == handle  # storable as is
    state = platform.wait(handle, timeout=60, interval=0.2)
    assert state.is_exited and state.exit_code == 0, state
    assert "hello from the job" in Path(platform.logs_path(handle)).read_text()
    platform.cancel(handle)  # no-op once finished
    assert platform.poll(handle).exit_code == 0


def test_failure_reports_exit_code_and_log_tail(platform, tmp_path):
    handle = platform.submit(_task(tmp_path, "import sys; print('boom: bad spec'); sys.exit(3)"))
    state = platform.wait(handle, timeout=60, interval=0.2)
    assert state.is_exited and state.exit_code == 3, state
    tail = Path(platform.logs_path(handle)).read_text().splitlines()[-3:]
    assert any("boom: bad spec" in line for line in tail)


def test_cancel_stops_the_whole_tree(platform, tmp_path):
    pids = tmp_path / "job" / "pids"  # in the job's work folder: every platform's jobs see it
    code = f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(300)
    """
    handle = platform.submit(_task(tmp_path, code))
    deadline = time.monotonic() + 60
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline, Path(platform.logs_path(handle)).read_text()
        time.sleep(0.1)
    assert platform.poll(handle).is_running
    platform.cancel(handle)
    state = platform.poll(handle)
    assert state.is_exited and state.exit_code == -15, state
    deadline = time.monotonic() + 15
    while not _tree_gone(platform, handle, [int(p) for p in pids.read_text().split()]):
        assert time.monotonic() < deadline, "a process of the cancelled job survived"
        time.sleep(0.1)
    platform.cancel(handle)  # idempotent


def test_reattach_from_handle_in_new_process(platform, tmp_path):
    go = tmp_path / "job" / "go"
    code = f"""
        import os, time
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
        raise SystemExit(7)
    """
    handle = platform.submit(_task(tmp_path, code))
    probe = textwrap.dedent(f"""
        import json, sys
        from tao_sdk.platforms import get_platform
        handle = json.loads(sys.argv[1])
        p = get_platform({platform.name!r}, **json.loads(sys.argv[2]))
        print(p.poll(handle).state)
        open({str(go)!r}, "w").close()
        s = p.wait(handle, timeout=60, interval=0.1)
        print(s.state, s.exit_code)
    """)
    options = getattr(platform, "settings", {})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", probe, json.dumps(handle), json.dumps(options)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["running", "exited 7"], out.stdout


def _files_with(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


def test_secrets_never_land_in_files(platform, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)  # from the submitting process too
    code = """
        import hashlib, os
        seen = [os.environ.get(k, "") for k in ("TAO_ENCRYPTION_KEY", "AWS_SECRET_ACCESS_KEY")]
        print("digests", [hashlib.sha256(v.encode()).hexdigest()[:12] for v in seen])
    """
    handle = platform.submit(_task(tmp_path, code, env={"TAO_ENCRYPTION_KEY": KEY}))
    state = platform.wait(handle, timeout=60, interval=0.2)
    assert state.exit_code == 0, Path(platform.logs_path(handle)).read_text()
    import hashlib

    digests = [hashlib.sha256(v.encode()).hexdigest()[:12] for v in (KEY, AWS_SECRET)]
    assert f"digests {digests}" in Path(platform.logs_path(handle)).read_text()  # the job got both
    assert _files_with(tmp_path, [KEY, AWS_SECRET]) == []
    if platform.name == "slurm":
        cluster = Path(os.environ["SLURM_CONF"]).parent  # controller state, spool, daemon logs
        assert _files_with(cluster, [KEY, AWS_SECRET]) == []
        record = subprocess.run(["scontrol", "-dd", "show", "job", handle["slurm_job_id"]],
                                capture_output=True, text=True).stdout
        assert "JobState=COMPLETED" in record and KEY not in record and AWS_SECRET not in record
        assert not any(Path(handle["workdir"]).glob(".tao-secrets-*"))


# --------------------------------------------------------------------------- slurm specifics
def test_slurm_config_sources_and_errors(tmp_path, monkeypatch):
    cfg_file = tmp_path / "slurm.yaml"
    cfg_file.write_text("partition: gpu\naccount: proj\nnodes: 2\n")
    monkeypatch.setenv("TAO_SLURM_CONFIG", str(cfg_file))
    monkeypatch.setenv("TAO_SLURM_ACCOUNT", "other")
    monkeypatch.setenv("TAO_SLURM_SHARED_PATHS", "/lustre:/home")
    cfg = load_config(time="01:00:00")
    assert cfg["partition"] == "gpu" and cfg["account"] == "other" and cfg["nodes"] == 2
    assert cfg["shared_paths"] == ["/lustre", "/home"] and cfg["time"] == "01:00:00"
    with pytest.raises(PlatformError, match="did you mean 'partition'"):
        load_config(partiton="x")
    cfg_file.write_text("gpus_per_node: many\n")
    with pytest.raises(PlatformError, match="gpus_per_node='many' must be an integer"):
        load_config()


def test_slurm_refuses_paths_nodes_cannot_see(tmp_path):
    platform = get_platform("slurm", shared_paths=[str(tmp_path / "shared")])
    task = _task(tmp_path / "shared", "pass")
    task.data_paths = {"dataset.train_data_sources": "/home/me/local-only/images",
                       "results_dir": "s3://bucket/results"}
    with pytest.raises(PlatformError, match=r"dataset.train_data_sources = /home/me/local-only/"
                                            r"images is not on a filesystem the Slurm nodes share"):
        platform.submit(task)
    assert not (tmp_path / "shared" / "job").exists()  # refused before anything was written


def test_secret_env_split():
    plain, secret = split_secret_env({"TAO_ENCRYPTION_KEY": "k", "AWS_ACCESS_KEY_ID": "a",
                                      "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t",
                                      "PYTHONPATH": "/x", "TAO_SKILLS_JOB_ID": "job-1"})
    assert set(secret) == {"TAO_ENCRYPTION_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                           "AWS_SESSION_TOKEN"}
    assert plain == {"PYTHONPATH": "/x", "TAO_SKILLS_JOB_ID": "job-1"}


@pytest.mark.slurm
def test_slurm_adopts_or_blocks_a_job_whose_submitter_died(slurm_cluster, tmp_path):
    """What the job store needs when the SDK died between sbatch and saving the handle."""
    platform = get_platform("slurm", python=sys.executable, shared_paths=[str(tmp_path)])
    assert platform.recover_handle(str(tmp_path / "nothing")) is None
    handle = platform.submit(_task(tmp_path, "print('adopted')", name="a"))
    (tmp_path / "a" / "handle.json").unlink()  # as if the SDK died right after sbatch
    found = platform.recover_handle(str(tmp_path / "a"))
    assert found["slurm_job_id"] == handle["slurm_job_id"]  # found by the job's Slurm name
    assert platform.wait(found, timeout=60, interval=0.2).exit_code == 0
    # a submission given up before the job started: it never runs its command
    platform.block_start(str(tmp_path / "b"))
    with pytest.raises(PlatformError, match="submission was given up"):
        platform.submit(_task(tmp_path, "print('ran')", name="b"))
    held = get_platform("slurm", python=sys.executable, shared_paths=[str(tmp_path)],
                        extra_sbatch_args=["--hold"])
    handle = held.submit(_task(tmp_path, f"open({str(tmp_path / 'ran')!r}, 'w')", name="c"))
    held.block_start(str(tmp_path / "c"))  # the submission is given up while the job is pending
    subprocess.run(["scontrol", "release", handle["slurm_job_id"]], check=True)
    state = held.wait(handle, timeout=60, interval=0.2)
    assert state.exit_code == 125 and not (tmp_path / "ran").exists()
    assert "given up before it started" in Path(handle["log_path"]).read_text()


def test_slurm_batch_script_maps_launch_variables_and_holds_no_secret(tmp_path):
    from tao_sdk.platforms.slurm import _batch_script

    task = JobTask("job-l", [NODE_PYTHON, "-m", "tao_sdk.worker", "deformable_detr", "train", "-e", "/s/spec.yaml"],
                   {"TAO_ENCRYPTION_KEY": KEY}, str(tmp_path), num_gpus=4, num_nodes=2,
                   visible_devices_env="TAO_VISIBLE_DEVICES", image="nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt")
    script = _batch_script(task, task.argv("/opt/py/bin/python"), str(tmp_path / "exit_status"),
                           str(tmp_path / ".tao-secrets-x"), 4, 4, {"master_port": 29500,
                                                                   "container_mounts": "/lustre:/lustre"})
    assert KEY not in script and "/opt/py/bin/python -m tao_sdk.worker deformable_detr train" in script
    assert 'export WORLD_SIZE="$SLURM_JOB_NUM_NODES" NUM_GPU_PER_NODE=4' in script
    assert 'export NODE_RANK="$SLURM_NODEID"; export RANK="${RANK:-$NODE_RANK}"' in script
    assert "export TAO_VISIBLE_DEVICES=0,1,2,3" in script and 'MASTER_PORT="29500"' in script
    assert "--container-image=nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt --container-mounts=/lustre:/lustre" in script
    task.visible_devices_env = "CUDA_VISIBLE_DEVICES"  # torchrun networks: Slurm's own CUDA_VISIBLE_DEVICES
    assert "TAO_VISIBLE_DEVICES" not in _batch_script(task, task.argv("python3"), "/x", None, 4, 4, {})
