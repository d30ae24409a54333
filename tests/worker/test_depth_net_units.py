"""Unit tests of FastFoundationStereo (depth_net): the compact stereo network and the stereo
task (annotations.txt + images.tar.gz, disparity files, metrics, inference writers)."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tao_sdk.worker.errors import DatasetError, SpecError  # noqa: E402
from tao_sdk.worker.networks import depth_net as N  # noqa: E402
from tao_sdk.worker.tasks import stereo as T  # noqa: E402

#: A small architecture (the tiny preset's widths) for the CPU tests.
SMALL = {**N.TINY_MODEL, "train_iters": 3, "valid_iters": 2}


@pytest.fixture(autouse=True)
def _tiny_backbone(monkeypatch):
    """The worker's one-block EdgeNeXt stand-in (TAO's full encoder is covered by
    ``tests/worker/test_tao_keys.py`` and ``tools/tao_manifests.py --parity``)."""
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")


def _arch(**model):
    return N.build_arch({"model": {**SMALL, **model}})


# --------------------------------------------------------------------------- network


def test_arch_defaults_are_the_bp2_block():
    arch = N.build_arch({})
    assert arch["max_disparity"] == 192 and arch["volume_dim"] == 28
    assert arch["gru_hidden"] == 60 and arch["motion_widths"] == [56, 96, 16, 12]
    assert arch["spx_widths"] == [16, 12, 16, 24] and arch["valid_iters"] == 8


@pytest.mark.parametrize("model, key", [
    ({"max_disparity": 30}, "model.max_disparity"),
    ({"n_gru_layers": 2}, "model.n_gru_layers"),
    ({"n_downsample": 1}, "model.n_downsample"),
    ({"encoder": "vitg"}, "model.encoder"),
    ({"volume_dim": 10}, "model.volume_dim"),
    ({"mask_widths": [16, 4]}, "model.spx_2_gru_widths"),
    ({"cv_group": 5}, "model.cv_group"),
    ({"model_type": "MetricDepthAnything"}, "model.model_type"),
    ({"disp_head_input_dim": 20}, "model.disp_head_input_dim"),
    ({"spx_gru_out": 4}, "model.spx_gru_out"),
    ({"motion_encoder_widths": [8, 8]}, "model.motion_encoder_widths"),
])
def test_arch_errors_name_the_field(model, key):
    with pytest.raises(SpecError, match=key.replace(".", r"\.")):
        _arch(**model)


@pytest.mark.parametrize("encoder, levels", [("vits", 2), ("vitl", 1)])
def test_forward_shapes_and_iterations(encoder, levels):
    arch = _arch(encoder=encoder, corr_levels=levels)
    model = N.build_model(arch)
    left, right = torch.randn(2, 3, 32, 64), torch.randn(2, 3, 32, 64)
    model.train()
    init, outs = model(left, right)
    assert len(outs) == arch["train_iters"]
    assert init.shape == (2, 1, 32 // 4, 64 // 4)
    assert all(o.shape == (2, 1, 32, 64) for o in outs)
    model.eval()
    _init, outs = model(left, right)
    assert len(outs) == 1  # only the final (convex-upsampled) disparity outside training


def test_predict_pads_any_size_and_crops_back():
    model = N.build_model(_arch()).eval()
    out = N.predict(model, torch.randn(1, 3, 30, 50), torch.randn(1, 3, 30, 50))
    assert out.shape == (1, 1, 30, 50) and torch.isfinite(out).all()


def test_sequence_loss_masks_and_trains():
    torch.manual_seed(0)
    model = N.build_model(_arch())
    left = torch.rand(1, 3, 64, 64)  # 1/32 features of 2x2 (BatchNorm needs > 1 value)
    right = torch.roll(left, -4, dims=3)  # constant disparity 4
    gt = torch.full((1, 1, 64, 64), 4.0)
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[..., -4:] = False
    init, outs = model(left, right)
    none = N.sequence_loss(init, outs, gt, torch.zeros_like(valid))
    assert float(none) == 0.0
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(5):
        init, outs = model(left, right)
        loss = N.sequence_loss(init, outs, gt, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_onnx_two_inputs_parity_with_dynamic_size(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = N.build_model(_arch()).eval()
    module = N.onnx_module(model, 2)
    path = tmp_path / "ffs.onnx"
    axes = {n: {0: "batch", 2: "height", 3: "width"} for n in (*N.ONNX_INPUTS, *N.ONNX_OUTPUTS)}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(1, 3, 32, 64), torch.randn(1, 3, 32, 64)),
                          str(path), input_names=list(N.ONNX_INPUTS),
                          output_names=list(N.ONNX_OUTPUTS), opset_version=17,
                          dynamic_axes=axes, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(N.ONNX_INPUTS)
    left, right = torch.randn(2, 3, 64, 96), torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref = module(left, right).numpy()
    got = sess.run(None, {"left_image": left.numpy(), "right_image": right.numpy()})[0]
    assert got.shape == (2, 1, 64, 96)
    assert np.abs(got - ref).max() < 1e-3


def test_unhonoured_fields_are_reported():
    spec = {"model": {"encoder": "vitl", "low_memory": 0, "gru_gating_conv_widths": [100, 168]},
            "dataset": {"train_dataset": {"augmentation": {"h_flip_prob": 0.5,
                                                           "crop_size": [64, 128]}}}}
    out = N.unhonoured_fields("train", spec)
    assert "model.encoder=vitl" in out
    assert "model.gru_gating_conv_widths=[100, 168]" in out
    assert "dataset.train_dataset.augmentation.h_flip_prob=0.5" in out
    assert not any("low_memory" in o or "crop_size" in o for o in out)
    assert not any("augmentation" in o for o in N.unhonoured_fields("evaluate", spec))


# --------------------------------------------------------------------------- stereo task


def test_pfm_round_trip(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    T.write_pfm(tmp_path / "d.pfm", arr)
    assert np.array_equal(T.read_pfm(tmp_path / "d.pfm"), arr)
    (tmp_path / "bad.pfm").write_bytes(b"P6\n")
    with pytest.raises(DatasetError, match="not a PFM"):
        T.read_pfm(tmp_path / "bad.pfm")


@pytest.mark.parametrize("fmt, divisor", [("Kitti", 256), ("GenericDataset", 256),
                                          ("Crestereo", 32)])
def test_png16_disparity_scale(tmp_path, fmt, divisor):
    from PIL import Image

    raw = np.array([[0, 512], [1024, 64]], dtype=np.uint16)
    Image.fromarray(raw).save(tmp_path / "d.png")
    disp, valid = T.read_disparity(tmp_path / "d.png", fmt)
    assert np.allclose(disp, raw / divisor) and valid.tolist() == [[False, True], [True, True]]


def test_fsd_rgb_disparity_and_errors(tmp_path):
    from PIL import Image

    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1] = [0, 10, 20]  # (10 * 255 + 20) / 1000 = 2.57
    Image.fromarray(rgb).save(tmp_path / "d.png")
    disp, _ = T.read_disparity(tmp_path / "d.png", "fsd")
    assert disp[0, 1] == pytest.approx(2.57)
    with pytest.raises(DatasetError, match="16-bit"):
        T.read_disparity(tmp_path / "d.png", "Kitti")
    with pytest.raises(SpecError, match="GenericDataset"):
        T.read_disparity(tmp_path / "d.png", "coco")


def test_annotations_read_archive_members(tmp_path):
    root = T.make_stereo_dataset(tmp_path / "ds", 2, height=32, width=64, max_disparity=8)
    samples = T.stage_sources([{"data_file": str(root / "annotations.txt"),
                                "dataset_name": "genericdataset"}],
                              "dataset.test_dataset.data_sources", need_gt=True)
    assert [s.name for s in samples] == ["left/0000", "left/0001"]
    assert samples[0].dataset_name == "GenericDataset"
    assert samples[0].disparity.name == "0000.pfm" and samples[0].left.is_file()
    item = T.StereoDataset(samples, [0.5] * 3, [0.25] * 3, 192)[0]
    assert item["left"].shape == (3, 32, 64) and item["valid"].all()


def test_annotations_errors_name_file_and_line(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "annotations.txt").write_text("left/a.png right/a.png\n", encoding="utf-8")
    entry = [{"data_file": str(root / "annotations.txt"), "dataset_name": "GenericDataset"}]
    with pytest.raises(DatasetError, match="line 1: no disparity column"):
        T.stage_sources(entry, "k", need_gt=True)
    with pytest.raises(DatasetError, match="does not exist"):
        T.stage_sources(entry, "k", need_gt=False)
    with tarfile.open(root / "images.tar.gz", "w:gz"):
        pass
    with pytest.raises(DatasetError, match="not a member of .*images.tar.gz"):
        T.stage_sources(entry, "k", need_gt=False)
    with pytest.raises(SpecError, match=r"k\[0\] needs data_file and dataset_name"):
        T.stage_sources([{"data_file": "x"}], "k", need_gt=False)


def test_loose_files_without_archive(tmp_path):
    from PIL import Image

    root = tmp_path / "loose"
    (root / "l").mkdir(parents=True)
    Image.new("RGB", (8, 4)).save(root / "l" / "x.png")
    (root / "annotations.txt").write_text("l/x.png l/x.png\n", encoding="utf-8")
    samples = T.stage_sources([{"data_file": str(root / "annotations.txt"),
                                "dataset_name": "GenericDataset"}], "k", need_gt=False)
    assert samples[0].left == root / "l" / "x.png" and samples[0].disparity is None


def test_metrics_known_values():
    gt = torch.tensor([[10.0, 10.0, 10.0, 100.0, 5.0]])
    pred = torch.tensor([[10.5, 11.5, 12.5, 104.0, 0.0]])
    valid = torch.tensor([[True, True, True, True, False]])
    m = T.DisparityMetrics()
    m.update(pred, gt, valid)
    r = m.result()
    assert r["epe"] == pytest.approx((0.5 + 1.5 + 2.5 + 4.0) / 4)
    assert (r["bp1"], r["bp2"], r["bp3"]) == (0.75, 0.5, 0.25)
    assert r["d1"] == 0.0  # 4 px on 100 px is under 5%
    with pytest.raises(DatasetError, match="no pixel"):
        T.DisparityMetrics().result()


def test_write_prediction_files(tmp_path):
    from PIL import Image

    disp = np.array([[1.5, 2.25], [0.0, 40.0]], np.float32)
    files = T.write_prediction(tmp_path, "left/0001", disp, save_npy=True)
    png, pfm, colour, npy = files
    assert np.array_equal(np.asarray(Image.open(png)), (disp * 256).astype(np.uint16))
    assert np.array_equal(T.read_pfm(pfm), disp) and np.array_equal(np.load(npy), disp)
    assert np.asarray(Image.open(colour)).shape == (2, 2, 3)


def test_synthetic_pairs_are_geometrically_consistent():
    rng = np.random.default_rng(3)
    left, right, disp = T._stereo_pair(rng, 32, 64, 12.0)
    # Right pixel x - d shows the left pixel x wherever that point is visible in both views.
    cols = np.arange(64, dtype=np.float64)

    def error(offset: float) -> float:
        errs = []
        for y in range(32):
            xr = cols - disp[y] - offset
            warped = np.interp(xr, cols, right[y, :, 0])
            errs.append(np.abs(warped - left[y, :, 0])[xr >= 0])
        return float(np.median(np.concatenate(errs)))

    assert error(0.0) < 0.4 * min(error(-3.0), error(3.0))


def test_train_augmentation_keeps_disparity_consistent(tmp_path):
    root = T.make_stereo_dataset(tmp_path / "ds", 1, height=32, width=64, max_disparity=8)
    samples = T.stage_sources([{"data_file": str(root / "annotations.txt"),
                                "dataset_name": "GenericDataset"}], "k", need_gt=True)
    aug = {"crop_size": [32, 48], "spatial_aug_prob": 1.0, "min_scale": 1.0, "max_scale": 1.0,
           "stretch_prob": 0.0, "yjitter_prob": 1.0, "color_aug_prob": 1.0,
           "color_aug_brightness": 0.2, "eraser_aug_prob": 1.0, "v_flip_prob": 0.5}
    plain = T.StereoDataset(samples, [0.0] * 3, [1.0] * 3, 192)[0]
    item = T.StereoDataset(samples, [0.0] * 3, [1.0] * 3, 192, train=True, aug=aug)[0]
    assert item["left"].shape == (3, 32, 48) and item["disparity"].shape == (1, 32, 48)
    # Scale 2 (2 ** 1.0) doubles every disparity (nearest resampling keeps the values).
    doubled = set(np.unique(np.round(plain["disparity"].numpy() * 2, 3)).tolist())
    assert set(np.unique(np.round(item["disparity"][item["valid"]].numpy(), 3))) <= doubled


def test_worker_supports_only_the_stereo_model_types():
    """depth_net is shared with TAO's mono models: the worker claims only stereo skills."""
    from tao_sdk import SkillBank
    from tao_sdk.backends import skill_backend
    from tao_sdk.worker import supports

    assert supports("depth_net", "train", "FastFoundationStereo")
    assert not supports("depth_net", "export", "FoundationStereo")  # the ViT model: TAO's container
    assert not supports("depth_net", "train", None)
    assert not supports("depth_net", "train", "MetricDepthAnything")
    bank = SkillBank()
    assert skill_backend(bank.get("tao-train-fast-foundation-stereo"), "train").kind == "worker"
    mono = [s for s in bank.skills() if s.network == "depth_net" and not s.info.get("model_type")]
    assert mono  # tao-train-depth-net-mono
    assert all(skill_backend(s, "train").kind != "worker" for s in mono)


def test_predict_pads_centred_and_crops_back_as_tao_input_padder():
    """TAO's InputPadder (divis_by=32, 'sintel' mode) on 30 x 50: pad [left 7, right 7,
    top 1, bottom 1], replicate; unpad crops [1:31, 7:57]."""
    seen = {}

    class Echo:  # no ``arch``: padded to multiples of 32, like a dynamic engine
        def __call__(self, left, right, iters=None):
            seen["left"] = left
            return None, [left[:, :1] * 2]

    x = torch.randn(1, 3, 30, 50)
    out = N.predict(Echo(), x, x.clone())
    padded = seen["left"]
    assert padded.shape == (1, 3, 32, 64)
    assert torch.equal(padded[..., 1:31, 7:57], x)
    assert torch.equal(padded[..., 0, 7:57], x[..., 0, :])  # replicate above
    assert torch.equal(padded[..., 1:31, :7], x[..., :, :1].expand(-1, -1, -1, 7))
    assert torch.equal(out, x[:, :1] * 2)  # the crop undoes the padding exactly


def test_metrics_average_per_image_as_tao_stereo_evaluator():
    """TAO's StereoDepthEvaluator (batch 1): per image, the mean over its valid pixels, then
    the mean over images; a 1-pixel image weighs as much as a 3-pixel one."""
    gt = torch.tensor([[[10.0, 10.0, 10.0]], [[100.0, 50.0, 50.0]]])
    pred = torch.tensor([[[10.5, 11.5, 14.0]], [[90.0, 0.0, 0.0]]])
    valid = torch.tensor([[[True, True, True]], [[True, False, False]]])
    m = T.DisparityMetrics()
    m.update(pred, gt, valid)
    r = m.result()
    assert r["epe"] == pytest.approx(((0.5 + 1.5 + 4.0) / 3 + 10.0) / 2)
    assert r["bp1"] == pytest.approx((2 / 3 + 1) / 2)
    assert r["bp3"] == pytest.approx((1 / 3 + 1) / 2)
    assert r["d1"] == pytest.approx((1 / 3 + 1) / 2)  # 4 px > 5% of 10; 10 px > 5% of 100
    assert r["rmse"] == pytest.approx(((0.25 + 2.25 + 16 + 100) / 4) ** 0.5)
    assert (m.count, m.images) == (4, 2)


def test_evaluate_and_inference_run_the_model_in_eval_mode(tmp_path):
    """TAO's Lightning test / predict loops run the model in eval mode (BatchNorm running
    statistics, one output after valid_iters); a train-mode model handed to evaluate /
    inference is switched, and predicts what the eval-mode model predicts."""
    from tao_sdk.worker.registry import get

    root = T.make_stereo_dataset(tmp_path / "ds", 2, height=32, width=64, max_disparity=8)
    samples = T.stage_sources([{"data_file": str(root / "annotations.txt"),
                                "dataset_name": "GenericDataset"}], "x", need_gt=True)
    ds = T.StereoDataset(samples, [0.5] * 3, [0.25] * 3, 192)
    torch.manual_seed(0)
    model = N.build_model(_arch())
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.fill_(4.0)  # running statistics far from a batch's
    seen = []
    model.train()
    T.TASK._run(get("depth_net"), model, ds, 2, on_batch=lambda b, d: seen.append(d))
    assert not model.training
    want = N.predict(model, ds[0]["left"][None], ds[0]["right"][None])
    assert torch.allclose(seen[0][:1], want, atol=1e-4)
