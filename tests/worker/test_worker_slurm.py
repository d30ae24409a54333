"""Multi-node DDP on the REAL Slurm test cluster: one sbatch job on two nodes (n1, n2), one
torchrun per node fed by the platform's SLURM_* -> WORLD_SIZE / NODE_RANK / MASTER_ADDR /
MASTER_PORT / NUM_GPU_PER_NODE mapping, a tiny RT-DETR trained with gloo over 2 ranks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tao_sdk.platforms import NODE_PYTHON, JobTask, get_platform

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_rtdetr_two_node_ddp_on_slurm(slurm_cluster, make_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    spec = make_spec("rtdetr")
    spec["train"]["num_gpus"] = 1  # one process per node, two nodes: world size 2
    spec["train"]["num_nodes"] = 2
    spec["train"]["num_epochs"] = 1
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    platform = get_platform("slurm", python=sys.executable, gpus_per_node=0,
                            shared_paths=[str(tmp_path), str(Path(spec["dataset"]["train_data_sources"][0]
                                                                     ["image_dir"]).parents[2])])
    task = JobTask(job_id="job-ddp", command=[NODE_PYTHON, "-m", "tao_sdk.worker", "rtdetr", "train", "-e",
                                              str(spec_file)],
                   env={}, workdir=str(tmp_path / "job"), num_nodes=2, visible_devices_env="CUDA_VISIBLE_DEVICES")
    t0 = time.monotonic()
    handle = platform.submit(task)
    state = platform.wait(handle, timeout=280, interval=0.5)
    log = Path(handle["log_path"]).read_text()
    status_file = Path(spec["results_dir"]) / "train" / "status.json"
    assert state.exit_code == 0, (status_file.read_text()[-2000:] if status_file.exists() else "") + log[-3000:]
    record = subprocess.run(["scontrol", "show", "job", "-o", handle["slurm_job_id"]], capture_output=True,
                            text=True).stdout
    assert "NumNodes=2 " in record and "NodeList=n[1-2]" in record
    assert "(2 node(s))" in log
    lines = [json.loads(ln) for ln in (Path(spec["results_dir"]) / "train" / "status.json").read_text().splitlines()]
    started = lines[0]["message"]
    assert "world_size 2 (2 node(s) x 1 process(es) per node, torchrun" in started and "gloo" in started
    assert [ln["status"] for ln in lines][-1] == "SUCCESS"
    epochs = [ln for ln in lines if "epoch" in ln and ln.get("kpi")]
    assert epochs and epochs[-1]["step"] == 2  # 12 images / 2 ranks / batch 4 = 2 steps per epoch
    import torch

    ckpt = torch.load(Path(spec["results_dir"]) / "train" / "model_epoch_000.pth", map_location="cpu",
                      weights_only=False)
    assert ckpt["world_size"] == 2
    print(f"rtdetr 2-node DDP on Slurm: {time.monotonic() - t0:.1f} s")
