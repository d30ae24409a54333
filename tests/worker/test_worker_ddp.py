"""Multi-process data-parallel training (DDP): launch planning, torchrun / spawn launches on
CPU with gloo, rank-0-only results, failures on one rank.

The end-to-end tests start real processes (2 ranks on the CPU) on the tiny synthetic dataset:
12 train images of 64 px, batch 4 per process -> 2 steps per epoch per rank.
"""

from __future__ import annotations

import json
import sys
import tarfile
import time
from pathlib import Path

import pytest

_LAUNCH_VARS = ("WORLD_SIZE", "NODE_RANK", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT", "NUM_GPU_PER_NODE",
                "TORCHELASTIC_RUN_ID", "TAO_VISIBLE_DEVICES", "TAO_WORKER_LAUNCH")


@pytest.fixture(autouse=True)
def clean_launch_env(monkeypatch):
    """No launcher / orchestrator variables leak in from the machine running the tests."""
    for var in _LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cpu_ranks():
    """These tests run their ranks on the CPU with gloo. On a CUDA machine the worker puts the
    ranks on GPUs (one per rank, NCCL), so they are skipped there with the reason (a 1-GPU
    node cannot hold 2 GPU ranks: ``gpu_ids [1] but only 1 GPU(s)``)."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip(f"CPU/gloo rank test: CUDA is available here ({torch.cuda.device_count()} "
                    "GPU(s)), so the worker would run the ranks on GPUs with NCCL")


def _statuses(lines):
    return [ln["status"] for ln in lines]


def _epoch_lines(lines):
    return [ln for ln in lines if "time_per_epoch" in ln]


# --------------------------------------------------------------------------- planning (fast)


def _plan(network, spec, env, action="train"):
    from tao_sdk.worker.distributed import plan_launch

    return plan_launch(network, action, spec, env)


def test_plan_single_process_needs_no_launch():
    spec = {"train": {"num_gpus": 1, "gpu_ids": [0]}}
    assert _plan("rtdetr", spec, {}) is None
    assert _plan("rtdetr", {"train": {}}, {}) is None
    # Only train is data-parallel; a launched rank never launches again.
    assert _plan("rtdetr", {"train": {"num_gpus": 2}}, {}, action="evaluate") is None
    assert _plan("rtdetr", {"train": {"num_gpus": 2}}, {"LOCAL_RANK": "0",
                                                        "WORLD_SIZE": "2"}) is None


def test_plan_num_gpus_on_one_node(cpu_ranks):
    rt = _plan("rtdetr", {"train": {"num_gpus": 2}}, {})
    dd = _plan("deformable_detr", {"train": {"num_gpus": 2}}, {})
    assert (rt.launcher, dd.launcher) == ("torchrun", "spawn")
    for plan in (rt, dd):
        assert (plan.nnodes, plan.node_rank, plan.nproc_per_node) == (1, 0, 2)
        assert plan.world_size == 2 and plan.device == "cpu" and plan.backend == "gloo"
        assert plan.master_addr == "127.0.0.1"
        assert any("gloo" in n for n in plan.notes)
    assert 0 < rt.master_port < 65536  # a free port for torchrun's agent
    assert dd.master_port == 0  # the spawn launcher binds the store on a system-picked port
    # MASTER_PORT is honoured; TAO's gpu_ids rule: the longer of num_gpus / gpu_ids wins.
    plan = _plan("rtdetr", {"train": {"num_gpus": 1, "gpu_ids": [0, 1]}},
                 {"MASTER_PORT": "29612"})
    assert plan.nproc_per_node == 2 and plan.master_port == 29612
    plan = _plan("rtdetr", {"train": {"num_gpus": 2, "num_nodes": 2}}, {})
    assert plan.nnodes == 1 and any("train.num_nodes=2" in n for n in plan.notes)


def test_plan_multinode_environment(cpu_ranks):
    from tao_sdk.worker.errors import SpecError, WorkerError

    env = {"WORLD_SIZE": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.7",
           "NUM_GPU_PER_NODE": "3"}
    plan = _plan("rtdetr", {"train": {"num_gpus": 1, "num_nodes": 1}}, env)
    assert (plan.nnodes, plan.node_rank, plan.nproc_per_node) == (2, 1, 3)
    assert (plan.master_addr, plan.master_port) == ("10.0.0.7", 29500)  # TAO's default port
    assert plan.world_size == 6
    assert any("WORLD_SIZE=2" in n for n in plan.notes)
    # RANK stands in for NODE_RANK; one node per process count from the spec without
    # NUM_GPU_PER_NODE (no GPU here).
    plan = _plan("deformable_detr", {"train": {"num_gpus": 2}},
                 {"WORLD_SIZE": "2", "RANK": "1", "MASTER_PORT": "4000"})
    assert (plan.node_rank, plan.nproc_per_node, plan.master_port) == (1, 2, 4000)
    with pytest.raises(WorkerError, match="NODE_RANK=2 must be below WORLD_SIZE=2"):
        _plan("rtdetr", {"train": {}}, {"WORLD_SIZE": "2", "NODE_RANK": "2"})
    with pytest.raises(WorkerError, match="WORLD_SIZE='two'"):
        _plan("rtdetr", {"train": {}}, {"WORLD_SIZE": "two"})
    with pytest.raises(SpecError, match="train.num_gpus=0"):
        _plan("rtdetr", {"train": {"num_gpus": 0}}, {})


def test_torchrun_command_line(cpu_ranks, monkeypatch, tmp_path):
    from tao_sdk.worker import distributed as D

    calls = []

    class FakeProc:
        def __init__(self, cmd, env, **_kw):
            calls.append((cmd, env))

        def wait(self):
            return 0

        def poll(self):
            return 0

    monkeypatch.setattr(D.subprocess, "Popen", FakeProc)
    env = {"WORLD_SIZE": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.7",
           "NUM_GPU_PER_NODE": "2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = {"results_dir": str(tmp_path / "r"), "train": {"num_gpus": 2}}
    plan = D.plan_launch("rtdetr", "train", spec)
    assert D.launch(plan, "rtdetr", "train", spec, "/specs/train.yaml",
                    ["train.num_epochs=3"]) == 0
    (cmd, child_env), = calls
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[3:8] == ["--nnodes=2", "--node-rank=1", "--nproc-per-node=2",
                        "--master-addr=10.0.0.7", "--master-port=29500"]
    assert cmd[8:] == ["-m", "tao_sdk.worker", "rtdetr", "train", "-e", "/specs/train.yaml",
                       "train.num_epochs=3"]
    assert child_env["RANK"] == "1"  # TAO copies NODE_RANK into an unset RANK
    assert json.loads(child_env["TAO_WORKER_LAUNCH"])["nproc_per_node"] == 2
    import tao_sdk

    assert str(Path(tao_sdk.__file__).resolve().parents[1]) in child_env["PYTHONPATH"]


def test_gpu_environment_of_the_ranks(monkeypatch):
    from tao_sdk.worker.distributed import LaunchPlan, _child_env

    plan = LaunchPlan(launcher="torchrun", nnodes=1, node_rank=0, nproc_per_node=2,
                      master_addr="127.0.0.1", master_port=1234, device="cuda", gpu_ids=[1, 2])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    env = _child_env(plan)
    assert env["CUDA_VISIBLE_DEVICES"] == "1,2" and env["TAO_VISIBLE_DEVICES"] == "1, 2"
    # GPU ids index what the orchestrator made visible.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    assert _child_env(plan)["CUDA_VISIBLE_DEVICES"] == "5,6"
    plan.launcher = "spawn"  # Lightning style: devices through TAO_VISIBLE_DEVICES only
    env = _child_env(plan)
    assert env["CUDA_VISIBLE_DEVICES"] == "4,5,6" and env["TAO_VISIBLE_DEVICES"] == "1, 2"


def test_rank_env_and_other_actions_under_a_launcher(monkeypatch, make_spec, run_worker):
    from tao_sdk.worker.distributed import rank_env

    assert rank_env({"WORLD_SIZE": "2"}) is None  # orchestrator level: number of nodes
    assert rank_env({"LOCAL_RANK": "0", "WORLD_SIZE": "1"}) is None
    st = rank_env({"LOCAL_RANK": "1", "RANK": "3", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2",
                   "GROUP_RANK": "1", "TORCHELASTIC_RUN_ID": "x"})
    assert (st.rank, st.local_rank, st.world_size, st.nnodes, st.node_rank) == (3, 1, 4, 2, 1)
    assert st.launcher == "torchrun" and not st.is_main
    # Evaluate under a multi-node launcher: only rank 0 runs it, the others exit at once.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("NODE_RANK", "1")
    spec = make_spec("rtdetr")
    code, lines = run_worker("rtdetr", "evaluate", spec)
    assert code == 0 and lines == []


# --------------------------------------------------------------------------- end to end (slow)


def _check_rank0_results(spec, lines, launcher, ckpts, latest):
    assert _statuses(lines)[0] == "STARTED" and _statuses(lines)[-1] == "SUCCESS"
    assert _statuses(lines).count("STARTED") == 1 and _statuses(lines).count("SUCCESS") == 1
    started = lines[0]["message"]
    assert "world_size 2" in started and launcher in started and "gloo" in started
    report = [ln["message"] for ln in lines if ln["message"].startswith("model:")]
    assert len(report) == 1 and "effective batch 8" in report[0]
    epochs = _epoch_lines(lines)
    # Written once per epoch (rank 0 only); 12 images / 2 ranks / batch 4 -> 2 steps per epoch.
    assert [ln["epoch"] for ln in epochs] == [0, 1]
    assert [ln["step"] for ln in epochs] == [2, 4] and epochs[-1]["max_step"] == 4
    assert {"train_loss", "val_mAP", "val_mAP50", "val_loss"} <= set(epochs[-1]["kpi"])
    assert "on 2 processes" in lines[-1]["message"]
    train_dir = Path(spec["results_dir"]) / "train"
    names = {p.name for p in train_dir.iterdir()}
    assert names == {"status.json", "log.txt", "experiment.yaml", "tensorboard", latest, *ckpts}
    assert len(list((train_dir / "tensorboard").iterdir())) == 1  # rank 0's event file only
    assert (train_dir / latest).resolve().name == ckpts[-1]
    import torch

    ckpt = torch.load(train_dir / ckpts[-1], map_location="cpu", weights_only=False)
    assert ckpt["world_size"] == 2 and ckpt["global_step"] == 4
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # unwrapped weights
    log = (train_dir / "log.txt").read_text()
    assert "world_size 2" in log and "[rank 1]" not in log  # rank 0 writes the log


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_rtdetr_ddp_through_torchrun(cpu_ranks, make_spec, run_worker, tmp_path):
    spec = make_spec("rtdetr")
    spec["train"]["num_gpus"] = 2
    t0 = time.monotonic()
    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 0, lines[-1] if lines else "no status.json"
    _check_rank0_results(spec, lines, "torchrun",
                         ["model_epoch_000.pth", "model_epoch_001.pth"],
                         "rtdetr_model_latest.pth")
    print(f"rtdetr 2-process train: {time.monotonic() - t0:.1f} s")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_deformable_detr_ddp_through_spawn(cpu_ranks, make_spec, run_worker, tmp_path):
    spec = make_spec("deformable_detr")
    spec["train"]["num_gpus"] = 2
    t0 = time.monotonic()
    code, lines = run_worker("deformable_detr", "train", spec)
    assert code == 0, lines[-1] if lines else "no status.json"
    _check_rank0_results(spec, lines, "spawn",
                         ["model_epoch_000_step_00002.pth", "model_epoch_001_step_00004.pth"],
                         "dd_model_latest.pth")
    print(f"deformable_detr 2-process train: {time.monotonic() - t0:.1f} s")


def _corrupt_image_of_rank(tiny_dataset, tmp_path, rank: int, seed: int = 1234) -> tuple[Path,
                                                                                          str]:
    """An image folder copy of the train split where the first image rank ``rank`` reads in
    epoch 0 (DistributedSampler order) is not an image; returns (folder, file name)."""
    import torch

    from tao_sdk.worker.tasks.detection.coco import load_coco

    folder = tmp_path / "train_images"
    with tarfile.open(tiny_dataset["train"]["images"]) as tf:
        tf.extractall(folder, filter="data")
    data = load_coco(Path(tiny_dataset["train"]["annotations"]), folder, 3)
    sampler = torch.utils.data.DistributedSampler(range(len(data.images)), num_replicas=2,
                                                  rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(0)
    victim = data.images[next(iter(sampler))].path
    victim.write_bytes(b"this is not a JPEG")
    return folder, victim.name


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("network", ["rtdetr", "deformable_detr"])  # torchrun, spawn
def test_ddp_failure_on_one_rank_is_reported_by_rank0(cpu_ranks, network, make_spec, run_worker,
                                                      tiny_dataset, tmp_path):
    """Rank 1 alone hits an unreadable image: every rank exits non-zero, rank 0 writes one
    FAILURE line that names rank 1 and the file, and no checkpoint is written."""
    folder, name = _corrupt_image_of_rank(tiny_dataset, tmp_path, rank=1)
    spec = make_spec(network)
    spec["train"].update(num_gpus=2, num_epochs=1)
    spec["dataset"]["train_data_sources"][0]["image_dir"] = str(folder)
    code, lines = run_worker(network, "train", spec)
    assert code == 1
    assert _statuses(lines).count("FAILURE") == 1 and _statuses(lines)[-1] == "FAILURE"
    msg = lines[-1]["message"]
    assert "failed on rank 1" in msg and name in msg and "cannot read image" in msg, msg
    assert not _epoch_lines(lines)
    train_dir = Path(spec["results_dir"]) / "train"
    assert not list(train_dir.glob("model_epoch_*.pth"))
    assert "cannot read image" in (train_dir / "log.txt").read_text()
