"""train.precision for every worker network: fp32 / bf16 / fp16, CPU rules, the vectorised
collate; CUDA-only paths (fp16 + gradient scaler, channels-last, fused AdamW) are gpu-marked."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


def test_precision_from_spec_on_cpu():
    from tao_sdk.worker.engine.precision import precision_from_spec
    from tao_sdk.worker.errors import SpecError

    cpu = torch.device("cpu")
    assert precision_from_spec({}, cpu).name == "fp32"
    bf16 = precision_from_spec({"train": {"precision": "BF16"}}, cpu)
    assert bf16.name == "bf16" and bf16.grad_scaler() is None
    with bf16.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(SpecError, match="train.precision=fp16 needs a CUDA GPU.*bf16"):
        precision_from_spec({"train": {"precision": "fp16"}}, cpu)
    with pytest.raises(SpecError, match="train.precision='fp8'.*fp32, bf16, fp16"):
        precision_from_spec({"train": {"precision": "fp8"}}, cpu)


def test_vectorised_collate_matches_per_image_normalisation(tiny_dataset):
    """The batch is normalised in one pass; values equal the per-image reference exactly and
    padding stays 0 (shorter-side resize gives padded batches)."""
    from tao_sdk.worker.staging import stage_image_dir
    from tao_sdk.worker.tasks.detection.coco import load_coco
    from tao_sdk.worker.tasks.detection.data import (Collator, DetectionDataset, ResizePolicy,
                                                     to_tensor)

    val = tiny_dataset["val"]
    data = load_coco(val["annotations"], stage_image_dir(str(val["images"]), "val"), 3)
    items = [DetectionDataset(data.images, train=False)[i] for i in range(4)]
    items[1] = (items[1][0].crop((0, 0, 64, 40)), items[1][1], items[1][2])  # another aspect
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    batch = Collator(ResizePolicy("shorter", [48], 48, 64), mean, std, train=False)(items)
    for i, (h, w) in enumerate(batch["sizes"]):
        from PIL import Image

        ref = to_tensor(items[i][0].resize((w, h), Image.Resampling.BILINEAR), mean, std)
        assert torch.equal(batch["pixel_values"][i, :, :h, :w], ref)
        assert batch["pixel_values"][i, :, h:, :].abs().sum() == 0
        assert batch["pixel_mask"][i, :h, :w].all() and not batch["pixel_mask"][i, h:].any()


def test_deferred_normalisation_gives_the_collators_batch(tiny_dataset):
    """``defer_normalize`` (the CUDA train loader): uint8 pixels leave the loader and
    ``device_pixels`` normalises them where the model runs - the same floats, padding 0, as
    the collator's own normalisation (checked here on the CPU device)."""
    from tao_sdk.worker.staging import stage_image_dir
    from tao_sdk.worker.tasks.detection.coco import load_coco
    from tao_sdk.worker.tasks.detection.data import Collator, DetectionDataset, ResizePolicy, device_pixels

    val = tiny_dataset["val"]
    data = load_coco(val["annotations"], stage_image_dir(str(val["images"]), "val"), 3)
    items = [DetectionDataset(data.images, train=False)[i] for i in range(4)]
    items[1] = (items[1][0].crop((0, 0, 64, 40)), items[1][1], items[1][2])  # padded batch
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    for policy in (ResizePolicy("shorter", [48], 48, 64), ResizePolicy("fixed", [(48, 48)], (48, 48))):
        eager = Collator(policy, mean, std, train=False)(items)
        deferred_collate = Collator(policy, mean, std, train=False)
        deferred_collate.defer_normalize = True
        deferred = deferred_collate(items)
        assert deferred["pixel_values"].dtype == torch.uint8
        moved = device_pixels(deferred, torch.device("cpu"))
        assert moved.is_contiguous() and torch.equal(moved, eager["pixel_values"])
        assert torch.equal(device_pixels(eager, torch.device("cpu")), eager["pixel_values"])


def test_fp16_on_cpu_fails_before_training(make_spec, run_worker):
    spec = make_spec("rtdetr")
    spec["train"]["precision"] = "fp16"
    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 1 and lines[-1]["status"] == "FAILURE"
    assert "needs a CUDA GPU" in lines[-1]["message"] and "bf16" in lines[-1]["message"]


@pytest.mark.slow
def test_bf16_train_and_evaluate_on_cpu(make_spec, run_worker):
    """bf16 autocast through the engine (network-generic; Deformable DETR is the cheaper of
    the two detectors in bf16 on CPUs without AVX512-BF16)."""
    network = "deformable_detr"
    spec = make_spec(network)
    spec["train"].update(num_epochs=1, precision="bf16")
    code, lines = run_worker(network, "train", spec)
    assert code == 0, lines[-1]
    started = next(ln["message"] for ln in lines if ln["message"].startswith("model:"))
    assert "precision bf16 (autocast)" in started and "train.precision" not in started
    epoch = [ln for ln in lines if "time_per_epoch" in ln][-1]
    assert epoch["kpi"]["train_loss"] > 0 and "val_mAP50" in epoch["kpi"]
    ckpt = next((spec["results_dir"] + "/train/" + p.name)
                for p in sorted(__import__("pathlib").Path(spec["results_dir"], "train")
                                .glob("model_epoch_*.pth")))
    spec["evaluate"]["checkpoint"] = ckpt
    code, lines = run_worker(network, "evaluate", spec)
    assert code == 0, lines[-1]
    assert any("precision bf16" in ln["message"] for ln in lines)


def _cuda_reason() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (fp16 + gradient scaler, channels-last, fused AdamW)"
    return None


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(_cuda_reason() is not None, reason=_cuda_reason() or "")
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_cuda_precisions_train(precision, make_spec, run_worker):
    spec = make_spec("rtdetr")
    spec["train"].update(num_epochs=2, precision=precision)
    code, lines = run_worker("rtdetr", "train", spec)
    assert code == 0, lines[-1]
    started = next(ln["message"] for ln in lines if ln["message"].startswith("model:"))
    assert f"precision {precision}" in started and "device cuda" in started
    losses = [ln["kpi"]["train_loss"] for ln in lines if "time_per_epoch" in ln]
    assert all(v == v and v < 1e4 for v in losses)  # finite
    if precision == "fp16":  # the loss scale travels with the checkpoint and is restored on resume
        ckpt = sorted(Path(spec["results_dir"], "train").glob("model_epoch_*.pth"))[0]
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["native_amp_scaling_state"]
        assert state["scale"] > 0
        spec["train"].update(num_epochs=3, resume_training_checkpoint_path=str(ckpt))
        code, lines = run_worker("rtdetr", "train", spec)
        assert code == 0, lines[-1]


def test_fp16_loss_scale_is_saved_and_restored_with_the_checkpoint(tmp_path):
    """The checkpoint plumbing of the fp16 gradient scaler, on CPU (torch's GradScaler works on
    the CPU device; the worker only refuses fp16 *autocast* there)."""
    from types import SimpleNamespace

    from tao_sdk.worker.engine import checkpoint as C
    from tao_sdk.worker.engine.train import _resume

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale(model(torch.ones(1, 2)).sum()).backward()
    scaler.step(optimizer)
    scaler.update()
    plugin = SimpleNamespace(name="linear", tao_keys=None, latest_link="model_latest.pth", arch_diff=lambda a, b: [],
                             checkpoint_name=lambda epoch, step, ema=False: f"model_epoch_{epoch:03d}.pth")
    ctx = SimpleNamespace(main=True, plugin=plugin, network="rtdetr", spec={}, task_dir=tmp_path,
                          log=SimpleNamespace(info=lambda *a: None), upload_now=lambda: None,
                          status=SimpleNamespace(running=lambda *a, **k: None))
    path = C.save_checkpoint(ctx, model, optimizer, scheduler, None, {"num_classes": 2}, 0, 1, {},
                             scaler=scaler)
    restored = torch.amp.GradScaler("cpu", init_scale=1.0)
    ctx.spec = {"train": {"resume_training_checkpoint_path": str(path)}}
    start = _resume(ctx, {"num_classes": 2}, {"train.resume_training_checkpoint_path": str(path)}, model,
                    optimizer, scheduler, None, steps_per_epoch=1, scaler=restored)
    assert start == (1, 1, 0) and restored.get_scale() == scaler.get_scale() == 1024.0
