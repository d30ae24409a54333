"""Unit tests of the semantic segmentation task module and the OneFormer network module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tao_sdk.worker.errors import DatasetError, SpecError
from tao_sdk.worker.networks import oneformer as OF
from tao_sdk.worker.staging import stage_image_dir
from tao_sdk.worker.tasks import segmentation as SEG


def tiny_spec(num_classes: int = 4, size: int = 64) -> dict:
    """The smallest OneFormer spec: 1-block Swin stages, 64-wide head, 8 queries."""
    return {
        "model": {
            "sem_seg_head": {"num_classes": num_classes, "convs_dim": 32, "mask_dim": 32,
                             "transformer_enc_layers": 1},
            "one_former": {"hidden_dim": 32, "nheads": 4, "dim_feedforward": 64,
                           "dec_layers": 2, "class_dec_layers": 1, "num_object_queries": 8,
                           "train_num_points": 256, "contrastive_weight": 0.0},
            "backbone": {"name": "D2SwinTransformer",
                         "swin": {"embed_dim": 16, "depths": [1, 1, 1, 1],
                                  "num_heads": [1, 2, 4, 8], "window_size": 4,
                                  "drop_path_rate": 0.0}},
        },
        "dataset": {"augmentation": {"train_crop_size": [size, size]}, "task_seq_len": 8,
                    "task_prob_train": {"semantic": 1.0, "instance": 0.0, "panoptic": 0.0}},
    }


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory):
    """A synthetic COCO panoptic dataset (8 train + 4 val images of 64 px) and its samples."""
    root = tmp_path_factory.mktemp("segdata")
    ds = SEG.make_segmentation_dataset(root, n_train=8, n_val=4, size=64, seed=1)
    lm = SEG.read_label_map(ds["train"]["label_map"], 4)
    samples = {split: SEG.load_panoptic(ds[split]["annotations"],
                                        stage_image_dir(str(ds[split]["images"]), "images"),
                                        stage_image_dir(str(ds[split]["panoptic"]), "panoptic"),
                                        lm, split) for split in ("train", "val")}
    return ds, lm, samples


def test_label_map_contiguous_and_by_id(tmp_path):
    path = tmp_path / "label_map.json"
    path.write_text(json.dumps([{"id": 7, "name": "sky", "isthing": 0, "color": [0, 0, 255]},
                                {"id": 3, "name": "car", "isthing": 1}]))
    lm = SEG.read_label_map(path, 2)
    assert lm.names == ["sky", "car"] and lm.id_to_class == {7: 0, 3: 1}
    assert lm.colors[0].tolist() == [0, 0, 255]
    by_id = SEG.read_label_map(path, 8, contiguous=False)
    assert by_id.id_to_class == {7: 7, 3: 3} and by_id.names[3] == "car"
    assert by_id.names[0] == "class_0"
    with pytest.raises(DatasetError, match=r"num_classes: 2"):
        SEG.read_label_map(path, 5)
    with pytest.raises(DatasetError, match=r"set num_classes to 8"):
        SEG.read_label_map(path, 4, contiguous=False)
    path.write_text(json.dumps([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]))
    with pytest.raises(DatasetError, match=r"more than once"):
        SEG.read_label_map(path, 2)
    path.write_text(json.dumps([{"name": "a"}]))
    with pytest.raises(DatasetError, match=r"label_map\[0\].*\"id\""):
        SEG.read_label_map(path, 1)


def test_panoptic_split_gives_semantic_targets(seg_data):
    ds, lm, samples = seg_data
    assert len(samples["train"]) == 8 and len(samples["val"]) == 4
    target = SEG.semantic_target(samples["train"][0])
    assert target.shape == (64, 64)
    assert set(np.unique(target)) <= {0, 1, 2, 3}
    assert 0 in target  # background stuff segment
    assert len(set(np.unique(target))) >= 2
    data = SEG.SegmentationDataset(samples["train"], (32, 32), [123.7] * 3, [58.4] * 3,
                                   train=True)
    batch = SEG.collate([data[0], data[1]])
    assert tuple(batch["pixel_values"].shape) == (2, 3, 32, 32)
    assert tuple(batch["labels"].shape) == (2, 32, 32) and batch["target"][0].shape == (64, 64)
    masks, classes = SEG.mask_targets(batch["labels"])
    assert masks[0].shape[0] == len(classes[0]) and masks[0].sum() == 32 * 32


def test_panoptic_errors_name_the_key(seg_data, tmp_path):
    ds, lm, _ = seg_data
    ann = json.loads(Path(ds["val"]["annotations"]).read_text())
    ann["annotations"] = ann["annotations"][1:]
    bad = tmp_path / "annotations.json"
    bad.write_text(json.dumps(ann))
    img_dir = stage_image_dir(str(ds["val"]["images"]), "images")
    pan_dir = stage_image_dir(str(ds["val"]["panoptic"]), "panoptic")
    with pytest.raises(DatasetError, match=r"dataset.val.annotations: image id 1"):
        SEG.load_panoptic(bad, img_dir, pan_dir, lm, "val")
    with pytest.raises(DatasetError, match=r"dataset.val.panoptic: img_00000.png is not in"):
        (tmp_path / "empty").mkdir()
        SEG.load_panoptic(ds["val"]["annotations"], img_dir, tmp_path / "empty", lm, "val")


def test_confusion_matrix_metrics():
    cm = SEG.ConfusionMatrix(3)
    target = np.array([[0, 0, 1, 1], [0, 0, 1, SEG.IGNORE_VALUE]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 2]])
    cm.update(pred, target)
    m = cm.metrics(["bg", "a", "b"])
    # bg: tp 3, fn 1 -> 3/4; a: tp 3, fp 1 -> 3/4; b: no ground truth -> excluded
    assert m["iou_per_class"] == {"bg": 75.0, "a": 75.0, "b": None}
    assert m["mIoU"] == pytest.approx(75.0)
    assert m["ACC_all"] == pytest.approx(100 * 6 / 7)


def test_miou_counts_predicted_classes_absent_from_ground_truth_as_tao():
    # golden values from TAO 7.3.0's own evaluator on these maps (mask2former
    # total_intersect_over_union, ignore_index 255, then oneformer summarize_semantic_iou):
    # iou [0.75, 1.0, 0.0, nan], mIoU 0.58333, all_acc 0.857143 -- class 2 is predicted on a
    # labelled pixel but absent from the ground truth: IoU 0, counted in the mean
    cm = SEG.ConfusionMatrix(4)
    target = np.array([[0, 0, 1, 1], [0, 0, 1, SEG.IGNORE_VALUE]])
    pred = np.array([[0, 2, 1, 1], [0, 0, 1, 2]])
    cm.update(pred, target)
    m = cm.metrics(["bg", "a", "b", "c"])
    assert m["iou_per_class"] == {"bg": 75.0, "a": 100.0, "b": 0.0, "c": None}
    assert m["mIoU"] == pytest.approx(100 * 0.5833333333333334)
    assert m["ACC_all"] == pytest.approx(100 * 0.8571428571428571)


def test_pixel_decoder_feedforward_is_taos_fixed_1024():
    # TAO 7.3.0 build_pixel_decoder: MSDeformAttnPixelDecoder(transformer_dim_feedforward=1024)
    # whatever model.one_former.dim_feedforward is (64 here): TAO's strict load of a small
    # worker checkpoint failed on pixel_decoder.transformer.encoder.layers.0.linear1 before
    arch = OF.build_arch(tiny_spec())
    assert arch["head"]["encoder_feedforward_dim"] == 1024
    assert arch["head"]["dim_feedforward"] == 64  # the transformer decoder's own width
    model = OF.model_from_arch(arch)
    fc1 = [m for n, m in model.named_modules()
           if n.startswith("model.pixel_level_module.decoder.") and n.endswith("fc1")]
    assert fc1 and all(m.out_features == 1024 for m in fc1)


def test_write_prediction(tmp_path, seg_data):
    _, lm, samples = seg_data
    pred = np.zeros((64, 64), dtype=np.int64)
    pred[10:20, 10:20] = 2
    out = SEG.write_prediction(tmp_path, samples["val"][0].image, pred, lm.colors)
    raw = np.asarray(Image.open(out["labels"]))
    assert raw.dtype == np.uint8 and raw[15, 15] == 2 and raw[0, 0] == 0
    color = np.asarray(Image.open(out["masks"]).convert("RGB"))
    assert color[15, 15].tolist() == lm.colors[2].tolist()
    assert Image.open(out["overlays"]).size == (64, 64)


def test_task_tokens_and_arch_errors():
    # TAO's CLIP ids of "The task is <task>", padded / truncated as its HF tokenizer does
    assert OF.task_tokens("semantic", 9) == [49406, 518, 10549, 533, 29119, 1550, 49407,
                                             49407, 49407]
    assert OF.task_tokens("instance", 6) == [49406, 518, 10549, 533, 34572, 49407]
    assert OF.task_tokens("panoptic", 7) == [49406, 518, 10549, 533, 1072, 24755, 49407]
    assert OF.task_tokens("semantic", 4) == [49406, 518, 10549, 49407]
    with pytest.raises(SpecError, match="task_seq_len"):
        OF.task_tokens("semantic", 1)
    with pytest.raises(SpecError, match="semantic / instance / panoptic"):
        OF.task_tokens("prefix", 8)
    # a checkpoint of an earlier worker keeps its recorded word vocabulary
    arch = OF.build_arch(tiny_spec())
    assert arch["task_tokenizer"] == "clip" and OF.arch_task_tokens(arch)[0] == 49406
    legacy = {**arch, "task_vocab": list(OF.TASK_VOCAB)}
    assert OF.arch_task_tokens(legacy)[:6] == [1, 3, 4, 5, 6, 2]
    with pytest.raises(SpecError, match="task_seq_len"):
        OF.legacy_task_tokens("semantic", 4)
    spec = tiny_spec()
    spec["model"]["backbone"]["name"] = "D2DiNAT"
    with pytest.raises(SpecError, match="model.backbone.name"):
        OF.build_arch(spec)
    with pytest.raises(SpecError, match="train_crop_size.*multiple of 32"):
        OF.build_arch(tiny_spec(size=50))
    spec = tiny_spec()
    spec["model"]["one_former"]["nheads"] = 5
    with pytest.raises(SpecError, match="hidden_dim .32. must be a multiple of"):
        OF.build_arch(spec)
    notes = OF.unhonoured_fields({"dataset": {"task_prob_train": {"instance": 0.66}}})
    assert any(n.startswith("dataset.task_prob_train") for n in notes)


@pytest.mark.slow
def test_oneformer_learns_and_exports_with_parity(seg_data, tmp_path):
    import torch

    _, lm, samples = seg_data
    torch.manual_seed(0)
    arch = OF.build_arch(tiny_spec(num_classes=lm.num_classes))
    model = OF.model_from_arch(arch)
    data = SEG.SegmentationDataset(samples["train"], arch["input_size"], arch["pixel_mean"],
                                   arch["pixel_std"])
    batch = SEG.collate([data[i] for i in range(4)])

    def miou() -> float:
        model.eval()
        with torch.no_grad():
            logits, masks = OF.forward(model, batch["pixel_values"])
        cm = SEG.ConfusionMatrix(lm.num_classes)
        for p, t in zip(OF.predict_labels(logits, masks, batch["orig_size"]), batch["target"]):
            cm.update(p, t)
        return cm.metrics()["mIoU"]

    before = miou()
    model.train()
    opt = torch.optim.AdamW(OF.param_groups(model, 1e-3, 0.1, 0.0))
    losses = []
    for _ in range(25):
        value, parts = OF.loss(model, batch["pixel_values"], batch["labels"], 255)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(float(value))
    assert "loss_dice" in parts
    # TAO feeds the task token's raw CLIP ids (~5e4) to the task MLP: learning is slower
    # at first than with small ids, so the tiny model only needs to be clearly learning
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    assert miou() > before + 5

    wrapper = OF.export_module(model)
    path = tmp_path / "model.onnx"
    torch.onnx.export(wrapper, (batch["pixel_values"][:1],), str(path),
                      input_names=OF.ONNX_INPUTS, output_names=OF.ONNX_OUTPUTS,
                      opset_version=17, dynamic_axes={"inputs": {0: "batch"}}, dynamo=False)
    parity = OF.onnx_parity(wrapper, path, batch["pixel_values"])  # batch 4 vs exported 1
    assert parity["checked_batch"] == 4 and parity["max_abs_diff"] < 1e-3
    assert parity["label_mismatch"] < 0.01
    with pytest.raises(SpecError, match="export.task"):
        OF.export_module(model, "panoptic")


def test_schedule_and_unhonoured_report():
    f = OF._poly_factor({"train": {"optim": {"lr_scheduler": "Warmuppoly", "warmup_iters": 10,
                                             "warmup_factor": 0.1, "max_iter": 100}}}, 5)
    assert f(0) == pytest.approx(0.1) and f(5) == pytest.approx(0.55 * 0.95 ** 0.9)
    assert f(50) == pytest.approx(0.5 ** 0.9) and f(100) == 0.0
    m = OF._poly_factor({"train": {"optim": {"lr_scheduler": "MultiStep", "warmup_iters": 0,
                                             "milestones": [2], "gamma": 0.5}}}, 5)
    assert m(9) == 1.0 and m(10) == 0.5
    with pytest.raises(SpecError, match="Warmuppoly or MultiStep"):
        OF._poly_factor({"train": {"optim": {"lr_scheduler": "Cosine"}}}, 5)
    spec = {"train": {"pretrained_model": "/ptm/x.pth", "clip_gradients": {"enabled": True}},
            "model": {"test": {"panoptic_on": True}}}
    notes = OF.PLUGIN.unhonoured("train", spec)
    assert not any(n.startswith("train.pretrained_model") for n in notes)  # loaded now
    assert "model.test.panoptic_on=True" in notes
    assert any(n.startswith("dataset.augmentation.train_min_size") for n in notes)


def test_container_ptm_destination_is_reported_not_loaded():
    """The skill's mapping fills train.pretrained_backbone with TAO's container download
    destination (/ptm/...): the worker does not have that file, so it says so and starts
    without it (a real path is still required to exist)."""
    from tao_sdk.worker.staging import stage_spec

    lines = []
    out = stage_spec({"train": {"pretrained_backbone": "/ptm/swin_tiny_22k.pth"}}, "train",
                     progress=lambda message, fields: lines.append(message))
    assert out["train"]["pretrained_backbone"] is None
    assert lines and "train.pretrained_backbone: /ptm/swin_tiny_22k.pth" in lines[0]
    with pytest.raises(Exception, match="train.pretrained_model"):
        stage_spec({"train": {"pretrained_model": "/nowhere/x.pth"}}, "train")
