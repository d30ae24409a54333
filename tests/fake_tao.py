"""A test double for a TAO container entrypoint: ``fake_tao.py <network> <action> -e spec.yaml``.

It honours the results-folder contract (status.json JSON Lines, checkpoints with TAO names,
model.onnx / model.engine) so the SDK's tracking, KPI parsing and parent-model selection can be
tested without torch. Behaviour knobs come from the environment:

- FAKE_TAO_EPOCHS: epochs to simulate (default: spec train.num_epochs, capped at 5)
- FAKE_TAO_SLEEP: seconds to sleep per epoch (default 0)
- FAKE_TAO_FAIL: "1" -> write a FAILURE line after the first epoch and exit 1
- FAKE_TAO_MAP: comma-separated val_mAP50 per epoch (default rises then dips: best is not last)
- FAKE_TAO_OBJECTIVE: "lr" -> val_mAP50 peaks at train.optim.lr = 2e-4 and grows with epochs
- FAKE_TAO_FAIL_LR_ABOVE: fail trials whose train.optim.lr is above this value
- FAKE_TAO_DUMP_ENV: a path; the job's environment is written there (to check secrets travel by env)
- FAKE_TAO_EPOCH_CAP: cap on simulated epochs when FAKE_TAO_EPOCHS is unset (default 5)
- FAKE_TAO_EPOCH_LOG: a path; one line ``<results_dir> <epoch>`` is appended per epoch really trained
  (to check that resumed / promoted trials never retrain an epoch)

Train honours ``train.resume_training_checkpoint_path``: a checkpoint written here records its
epoch, and a resumed run continues at the next epoch (nothing to do when it is already complete).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tao_sdk.storage import storage_for  # noqa: E402


def main(argv: list[str]) -> int:
    network, action = argv[0], argv[1]
    spec_path = argv[argv.index("-e") + 1]
    with open(spec_path, encoding="utf-8") as fh:
        spec = yaml.safe_load(fh)
    results_dir = spec["results_dir"]
    store = storage_for(results_dir)
    task = action
    if action in ("evaluate", "inference") and (spec.get(action) or {}).get("trt_engine"):
        task = f"trt_{action}"
    lines: list[dict] = []

    def status(**kw: object) -> None:
        now = datetime.datetime.now()
        lines.append({"date": now.strftime("%-m/%-d/%Y"), "time": now.strftime("%H:%M:%S"), "verbosity": "INFO", **kw})
        store.write_text(store.join(results_dir, task, "status.json"), "\n".join(json.dumps(x) for x in lines) + "\n")

    if os.environ.get("FAKE_TAO_DUMP_ENV"):
        with open(os.environ["FAKE_TAO_DUMP_ENV"], "w", encoding="utf-8") as fh:
            json.dump(dict(os.environ), fh)
    print(f"fake {network} {action} starting, results in {results_dir}", flush=True)
    status(status="STARTED", message=f"Starting {network} {action}.")
    if action == "train":
        cap = int(os.environ.get("FAKE_TAO_EPOCH_CAP") or 5)
        epochs = int(os.environ.get("FAKE_TAO_EPOCHS") or min(int(spec["train"]["num_epochs"]), cap))
        start = _resume_epoch(store, spec["train"].get("resume_training_checkpoint_path"))
        maps = [float(x) for x in os.environ.get("FAKE_TAO_MAP", "0.2,0.5,0.7,0.6,0.55").split(",")]
        lr = float(spec["train"]["optim"]["lr"])
        if os.environ.get("FAKE_TAO_OBJECTIVE") == "lr":
            import math

            peak = max(0.0, 1.0 - abs(math.log10(lr) - math.log10(2e-4)) / 3.0)
            maps = [round(peak * (e + 1) / epochs, 6) for e in range(epochs)]
        limit = os.environ.get("FAKE_TAO_FAIL_LR_ABOVE")
        if limit and lr > float(limit):
            status(status="FAILURE", message=f"Simulated divergence: loss is NaN at lr={lr}.")
            return 1
        sleep = float(os.environ.get("FAKE_TAO_SLEEP", "0"))
        for epoch in range(start, epochs):
            time.sleep(sleep)
            kpi = {"train_loss": 1.0 / (epoch + 1), "val_mAP50": str(maps[epoch % len(maps)])}
            store.write_bytes(store.join(results_dir, "train", f"model_epoch_{epoch:03d}.pth"),
                              json.dumps({"epoch": epoch, "lr": lr}).encode())
            if os.environ.get("FAKE_TAO_EPOCH_LOG"):
                with open(os.environ["FAKE_TAO_EPOCH_LOG"], "a", encoding="utf-8") as fh:
                    fh.write(f"{results_dir} {epoch}\n")
            status(status="RUNNING", message="Train metrics generated.", epoch=epoch, max_epoch=epochs - 1,
                   time_per_epoch="0:00:01", eta=str(datetime.timedelta(seconds=epochs - epoch - 1)), kpi=kpi)
            print(f"epoch {epoch} done", flush=True)
            if os.environ.get("FAKE_TAO_FAIL") == "1":
                status(status="FAILURE", message="Simulated CUDA out of memory at epoch 0.")
                return 1
        status(status="SUCCESS", message="Train finished successfully.")
        return 0
    if action == "export":
        store.write_bytes(spec["export"]["onnx_file"], b"onnx")
    elif action == "gen_trt_engine":
        store.write_bytes(spec["gen_trt_engine"]["trt_engine"], b"engine")
    elif action == "evaluate":
        status(status="RUNNING", message="Evaluation metrics generated.", kpi={"test_mAP50": 0.61, "test_mAP": 0.4})
    status(status="SUCCESS", message=f"{action} finished successfully.")
    return 0


def _resume_epoch(store, checkpoint: str | None) -> int:
    """The first epoch to train: 0, or the epoch after the one stored in the resume checkpoint."""
    if not checkpoint:
        return 0
    return int(json.loads(store.read_bytes(checkpoint))["epoch"]) + 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
