"""Issue 24, a full or read-only disk: on a real small filesystem (a tmpfs mounted by the test,
see conftest.tmpfs) the job ends with one line naming the folder, its free space, the bytes
needed and the setting to change; no partial or temporary file stays behind; a job that cannot
write its own status.json still ends FAILURE in the store; a read-only results folder says to
point TAO_SKILLS_STORAGE at a writable one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tao_sdk import Workspace, create_job, get_job, wait_for_job
from tao_sdk.errors import DiskFullError

SIZE = 64


def _leftovers(root: Path) -> list[str]:
    """Temporary / partial files of a failed write below ``root``."""
    return [str(p) for p in root.rglob("*") if p.name.startswith(".tao-") or p.name.endswith(".tmp")]


def _fill(root: Path) -> None:
    """Write a filler file into ``root`` until its filesystem is full."""
    with open(root / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


@pytest.fixture
def worker_env(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    monkeypatch.setenv("TAO_WORKER_CACHE", str(tmp_path / "cache"))
    from tao_sdk.worker.tasks.detection.synthetic import make_coco_dataset

    ds = make_coco_dataset(tmp_path / "data", n_train=4, n_val=2, size=SIZE, seed=1)
    return {"train_datasets": [str(ds["train"]["root"])], "eval_dataset": str(ds["val"]["root"])}


def _train(ws: Workspace, datasets: dict, **extra):
    from tao_sdk.worker import registry

    over = {**registry.get("rtdetr").demo_train_overrides(1, SIZE), "dataset.num_classes": 3, **extra}
    job = create_job("rtdetr", "train", automl_policy="off", workspace=ws, spec_overrides=over, datasets=datasets)
    return wait_for_job(job.id, timeout=120, poll_interval=0.2, workspace=ws)


@pytest.mark.slow
def test_checkpoint_that_does_not_fit_says_so_and_leaves_no_partial_file(tmpfs, tmp_path, worker_env):
    small = tmpfs("2m")
    ws = Workspace(tmp_path / "ws", storage_root=str(small))
    job = _train(ws, worker_env)
    folder = f"{small}/results/{job.id}/train"
    message = job.result["message"]
    assert job.status.value == "FAILURE"
    assert message.startswith(f"no space left in {folder}: "), message
    assert " free, " in message and "needed to write checkpoint model_epoch_000.pth" in message
    assert "TAO_SKILLS_STORAGE" in message and "\n" not in message
    assert _leftovers(small) == []
    assert job.progress.status == "FAILURE" and job.progress.message == message


def test_job_that_cannot_write_its_status_still_ends_failure(tmpfs, tmp_path, worker_env):
    full = tmpfs("1m")
    _fill(full)
    ws = Workspace(tmp_path / "ws", storage_root=str(tmp_path / "storage"))
    job = _train(ws, worker_env, **{"train.results_dir": str(full / "train")})
    assert job.status.value == "FAILURE"
    first = job.result["message"].splitlines()[0]
    assert first.startswith(f"no space left in {full}"), job.result["message"]
    assert "exit code 1" in first and "status.json" in first
    assert get_job(job.id, workspace=ws).status.value == "FAILURE"
    assert _leftovers(full) == []


def test_read_only_results_folder_suggests_a_writable_storage(tmpfs, tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_ENTRYPOINT", "true")
    ro = tmpfs("1m", read_only=True)
    ws = Workspace(tmp_path / "ws", storage_root=str(ro))
    with pytest.raises(DiskFullError) as err:
        create_job("rtdetr", "train", automl_policy="off", workspace=ws,
                   datasets={"train_datasets": ["/data/train"], "eval_dataset": "/data/eval"},
                   spec_overrides={"dataset.num_classes": 3})
    message = str(err.value)
    assert message.startswith(f"{ro} is on a read-only filesystem"), message
    assert "set TAO_SKILLS_STORAGE (or the spec's results_dir) to a writable folder" in message
    [record] = ws.store.list()
    assert record.status.value == "FAILURE" and not (ws.job_dir(record.id) / "handle.json").exists()


def test_writes_that_do_not_fit_raise_disk_full_and_remove_their_temporary_file(tmpfs):
    torch = pytest.importorskip("torch")
    from tao_sdk.diskspace import guarded_write
    from tao_sdk.storage import storage_for

    small = tmpfs("1m")
    tmp = small / ".tao-tmp-big.pth"
    with pytest.raises(DiskFullError) as err:  # no size given: torch's own error, on a full disk
        with guarded_write(tmp, "checkpoint big.pth"):
            torch.save({"w": torch.zeros(1 << 20)}, tmp)
    assert str(err.value).startswith(f"no space left in {small}: ") and "to write checkpoint big.pth" in str(err.value)
    with pytest.raises(DiskFullError) as err:  # the SDK's storage layer: checked before writing
        storage_for(str(small)).write_bytes(f"{small}/results/blob.bin", os.urandom(3 << 20))
    assert "3.0 MiB needed" in str(err.value)
    assert _leftovers(small) == [] and not (small / "results" / "blob.bin").exists()
