"""TAO's checkpoint layout, against the manifests recorded from TAO 7.3.0's own code
(``tools/tao_manifests.py``): the key tables map one to one, TAO checkpoints load with
nothing missing, the worker's checkpoints round-trip through TAO's layout, encrypted
checkpoints are refused. No TAO code is needed."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from tao_sdk.worker.registry import get as plugin_of
from tao_sdk.worker.registry import preflight
from tao_sdk.worker.weights.manifests import coverage_problems, manifest_paths, read_manifest

REPO = Path(__file__).resolve().parents[2]
SKILLS = {"rtdetr": "tao-train-rtdetr", "deformable_detr": "tao-train-deformable-detr",
          "oneformer": "tao-train-oneformer", "depth_net": "tao-train-fast-foundation-stereo"}


def manifest_spec(manifest: dict) -> dict:
    """The skill's train template with the manifest's model section and class count."""
    skill = SKILLS[manifest["network"]]
    spec = yaml.safe_load((REPO / "skills" / skill / "references" /
                           "spec_template_train.yaml").read_text(encoding="utf-8"))
    spec["model"] = copy.deepcopy(manifest["spec"]["model"])
    if manifest["spec"]["dataset.num_classes"] is not None:  # OneFormer: model.sem_seg_head
        spec["dataset"]["num_classes"] = manifest["spec"]["dataset.num_classes"]
    return spec


def full_model(network: str, spec: dict, device: str, monkeypatch):
    """The worker's full-size model of ``spec`` (``meta``: shapes only, no memory)."""
    import torch

    plugin = plugin_of(network)
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "full")
    with torch.device(device):
        return plugin, plugin.build_model(plugin.build_arch(spec))


MANIFESTS = [p for net in SKILLS for p in manifest_paths(net)]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: f"{p.parent.name}-{p.name[:-8]}")
def test_key_table_covers_tao_manifest_one_to_one(path, monkeypatch):
    manifest = read_manifest(path)
    spec = manifest_spec(manifest)
    plugin, model = full_model(manifest["network"], spec, "meta", monkeypatch)
    assert coverage_problems(plugin.tao_keys, manifest, model.state_dict()) == []


def test_backbone_the_worker_does_not_build_is_refused_at_plan_time():
    from tao_sdk.worker.errors import SpecError

    import copy

    from tao_sdk.bank import get_bank

    template = get_bank().get("rtdetr").template("train")  # the rest of the spec passes the train checks
    spec = copy.deepcopy(template)
    spec["model"]["backbone"] = "efficientvit_b0"
    with pytest.raises(SpecError, match="efficientvit_b0.*use one of: resnet_18, resnet_34, "
                                        "resnet_50, resnet_101, convnext_tiny"):
        preflight("rtdetr", "train", spec)
    large = copy.deepcopy(template)
    large["model"]["backbone"] = "convnext_large"
    preflight("rtdetr", "train", large)
    preflight("rtdetr", "evaluate", spec)  # the checkpoint's architecture is used


@pytest.mark.parametrize("network,backbone", [("rtdetr", "resnet_50"),
                                              ("rtdetr", "convnext_tiny"),
                                              ("deformable_detr", "gc_vit_tiny"),
                                              ("oneformer", "template"),
                                              ("depth_net", "bp2")])
def test_tao_checkpoint_from_manifest_loads_every_tensor(network, backbone, monkeypatch):
    """A checkpoint laid out as TAO's trainer saves it (default template) loads into the
    worker's model with 0 missing and 0 unexpected tensors (shapes only: meta tensors;
    reading real files is covered with tiny models)."""
    import torch

    from tao_sdk.worker.weights import checkpoint_state

    manifest = read_manifest(next(p for p in manifest_paths(network)
                                  if p.name == f"{backbone}.json.gz"))
    state = {k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
             for k, shape, dtype in manifest["state_dict"]}
    ckpt = {"layout": "tao", "state_dict": state, "tao_model": network}
    plugin, model = full_model(network, manifest_spec(manifest), "meta", monkeypatch)
    result = model.load_state_dict(checkpoint_state(ckpt, plugin, model, "evaluate.checkpoint"),
                                   strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def _tiny(network: str, **model):
    """A tiny worker model of ``network`` (TAO_WORKER_BACKBONE_SCALE=tiny)."""
    from tao_sdk.worker import spec as S

    plugin = plugin_of(network)
    spec: dict = {"model": {}}
    classes = model.pop("num_classes", 3)
    for key, value in {**plugin.tiny_overrides(64),
                       **{f"model.{k}": v for k, v in model.items()},
                       "dataset.num_classes": classes}.items():
        if key.startswith(("model.", "dataset.")):
            S.set_value(spec, key, value)
    return plugin, plugin.build_model(plugin.build_arch(spec))


@pytest.mark.parametrize("backbone", ["resnet_18", "convnext_tiny"])
def test_worker_checkpoint_round_trips_through_tao_layout(backbone):
    import torch

    from tao_sdk.worker.weights import tao_state

    plugin, model = _tiny("rtdetr", backbone=backbone)
    layout, tao = tao_state(plugin, model.state_dict())
    assert layout == "tao" and all(k.startswith("model.model.") for k in tao)
    assert any(k.endswith("in_proj_weight") for k in tao)  # q/k/v fused as TAO's
    assert any(k.startswith("model.model.backbone.") and k.endswith("num_batches_tracked")
               for k in tao) or backbone.startswith("convnext")
    back, skipped = plugin.tao_keys.to_worker(tao, model.state_dict())
    assert set(skipped) <= {"BatchNorm counter"}
    own = model.state_dict()
    assert set(back) == set(own) and all(torch.equal(back[k], own[k]) for k in own)


def test_deformable_detr_gcvit_backbones_pass_plan_time():
    import copy

    from tao_sdk.bank import get_bank
    from tao_sdk.worker.errors import SpecError

    spec = copy.deepcopy(get_bank().get("deformable_detr").template("train"))
    spec["model"]["backbone"] = "gc_vit_large_384"
    preflight("deformable_detr", "train", spec)
    spec["model"]["backbone"] = "fan_tiny"
    with pytest.raises(SpecError, match="fan_tiny.*use one of: .*resnet_50.*gc_vit_xxtiny.*"
                                        "gc_vit_large_384"):
        preflight("deformable_detr", "train", spec)


def test_deformable_detr_gcvit_tiny_forward_and_tao_layout(monkeypatch, tmp_path):
    """The GC-ViT stand-in (TAO_WORKER_BACKBONE_SCALE=tiny) runs a padded batch (sides not
    multiples of the windows), its stage widths feed the input projections, and its weights
    round-trip through TAO's layout (``backbone.0.body.levels...`` keys, as the manifest's) and
    load from a GC-ViT backbone PTM."""
    import torch

    from tao_sdk.worker.engine.checkpoint import load_pretrained
    from tao_sdk.worker.weights import tao_state

    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    plugin, model = _tiny("deformable_detr", backbone="gc_vit_small")
    model.eval()
    body = "model.model.backbone.0.body."
    with torch.no_grad():
        out = model(pixel_values=torch.randn(2, 3, 72, 100),
                    pixel_mask=torch.ones(2, 72, 100, dtype=torch.long))
    assert out.logits.shape == (2, 100, 3) and torch.isfinite(out.pred_boxes).all()
    assert [p.weight.shape[1] for p in (m[0] for m in model.model.input_proj)] == [32, 64, 128]
    layout, tao = tao_state(plugin, model.state_dict())
    manifest = read_manifest(next(p for p in manifest_paths("deformable_detr")
                                  if p.name == "gc_vit_small.json.gz"))
    assert {_pattern(k) for k in tao if k.startswith(body)} == {
        _pattern(k) for k, _s, _d in manifest["state_dict"] if k.startswith(body)}
    back, _skipped = plugin.tao_keys.to_worker(tao, model.state_dict())
    own = model.state_dict()
    assert set(back) == set(own) and all(torch.equal(back[k], own[k]) for k in own)
    # a GC-ViT ImageNet PTM (the backbone's keys + its classifier's norm / head, which TAO's
    # non-strict load leaves out) fills the backbone as model.pretrained_backbone_path
    ptm = {k[len(body):]: v for k, v in tao.items() if k.startswith(body)}
    torch.save({**ptm, "norm.weight": torch.ones(128), "head.weight": torch.zeros(10, 128)},
               tmp_path / "gcvit.pth")
    _plugin, fresh = _tiny("deformable_detr", backbone="gc_vit_small")
    report = load_pretrained(fresh, tmp_path / "gcvit.pth", "model.pretrained_backbone_path",
                             plugin, prefix="model.backbone")
    assert report.loaded == len(ptm) and not report.initial
    qkv = "model.backbone.model.levels.1.blocks.1.attn.qkv.weight"
    assert torch.equal(fresh.state_dict()[qkv], own[qkv])


def _pattern(key: str) -> str:
    import re

    return re.sub(r"\.\d+\.", ".N.", key)


def test_oneformer_checkpoint_round_trips_through_tao_layout():
    """The tiny OneFormer written in TAO's layout has TAO's key families (those of the
    recorded manifest: fused Swin ``qkv``, ``in_proj``, ``norm0..3``, the text branch) and
    reads back bit for bit."""
    import torch

    from tao_sdk.worker.weights import tao_state

    plugin, model = _tiny("oneformer")
    layout, tao = tao_state(plugin, model.state_dict())
    manifest = read_manifest(manifest_paths("oneformer")[0])
    assert layout == "tao"
    assert {_pattern(k) for k in tao} == {_pattern(k) for k, _s, _d in manifest["state_dict"]}
    back, skipped = plugin.tao_keys.to_worker(tao, model.state_dict())
    own = model.state_dict()
    assert not skipped and set(back) == set(own)
    bad = [(k, torch.isnan(own[k]).any().item()) for k in own if not torch.equal(back[k], own[k])]
    assert not bad, bad[:5]


def test_encrypted_tao_checkpoint_is_refused(tmp_path):
    import torch

    from tao_sdk.worker.engine.checkpoint import load_checkpoint, load_pretrained
    from tao_sdk.worker.errors import WorkerError

    path = tmp_path / "model.pth"
    torch.save({"state_dict_encrypted": True, "state_dict": b"\x00" * 16,
                "tao_model": "rtdetr"}, path)
    with pytest.raises(WorkerError, match="encrypted TAO checkpoint.*cannot read it"):
        load_checkpoint(path, "evaluate.checkpoint")
    plugin, model = _tiny("rtdetr")
    with pytest.raises(WorkerError, match="train.pretrained_model_path: .*encrypted"):
        load_pretrained(model, path, "train.pretrained_model_path", plugin)


class _Hyper:
    """Stands for the OmegaConf objects TAO's checkpoints pickle (not weights_only-safe)."""

    def __reduce__(self):
        return (Path.touch, (Path(os.environ["I17_MARKER"]),))


def test_tao_backbone_ptm_of_deformable_detr(tmp_path):
    """A torchvision-keyed ResNet PTM (``conv1.weight``, ``layer1...``) fills the backbone."""
    import torch

    from tao_sdk.worker.engine.checkpoint import load_pretrained
    from tao_sdk.worker.weights import tao_state

    plugin, source = _tiny("deformable_detr")
    head = "model.model." + plugin.tao_keys.tao_backbone
    ptm = {k[len(head):]: v for k, v in tao_state(plugin, source.state_dict())[1].items()
           if k.startswith(head)}
    torch.save({"state_dict": {f"module.{k}": v for k, v in ptm.items()}}, tmp_path / "r.pth")
    report = load_pretrained(source, tmp_path / "r.pth", "model.pretrained_backbone_path",
                             plugin, prefix="model.backbone")
    assert report.loaded == len(ptm) > 0 and not report.initial


def test_tao_backbone_ptm_lightning_pickles_and_class_heads(tmp_path, monkeypatch):
    """A timm-keyed backbone PTM loads every backbone tensor; a Lightning file pickling
    other objects is read without running them; other class counts reinitialise only the
    class heads, and the report says so."""
    import torch

    from tao_sdk.worker.engine.checkpoint import load_pretrained
    from tao_sdk.worker.weights import tao_state

    plugin, source = _tiny("rtdetr", num_classes=3)
    _layout, tao = tao_state(plugin, source.state_dict())
    head = "model.model.backbone."
    ptm = {"model": {k[len(head):]: v for k, v in tao.items() if k.startswith(head)}}
    torch.save(ptm, tmp_path / "resnet.pth")
    _p, target = _tiny("rtdetr", num_classes=5)
    report = load_pretrained(target, tmp_path / "resnet.pth", "model.pretrained_backbone_path",
                             plugin, prefix="model.backbone")
    n_backbone = sum(1 for k in target.state_dict() if k.startswith("model.backbone"))
    assert report.loaded == n_backbone and report.layout == "TAO backbone PTM"

    marker = tmp_path / "executed"
    monkeypatch.setenv("I17_MARKER", str(marker))
    torch.save({"state_dict": tao, "tao_model": "rtdetr", "pytorch-lightning_version": "2.4.0",
                "hyper_parameters": {"experiment_spec": _Hyper()}}, tmp_path / "tao.pth")
    report = load_pretrained(target, tmp_path / "tao.pth", "train.pretrained_model_path", plugin)
    assert not marker.exists()  # the pickled call was not made
    assert report.layout == "tao" and report.skipped.keys() == {"shape mismatch",
                                                                "BatchNorm counter"}
    assert "class heads reinitialised: the checkpoint has 3 classes, this model 5" in (
        report.message())
    assert all("score_head" in k or "class_embed" in k or "denoising_class_embed" in k
               for k in report.skipped["shape mismatch"])


def test_postprocess_is_taos():
    """Sigmoid, top-num_select over queries x classes, label = class index, cxcywh -> xyxy
    scaled to the image, not clipped (TAO's PostProcess)."""
    import torch

    from tao_sdk.worker.tasks.detection.metrics import postprocess

    logits = torch.full((1, 3, 4), -9.0)
    logits[0, 2, 1], logits[0, 0, 3] = 3.0, 2.0
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 1.0, 1.0], [0.95, 0.5, 0.3, 0.4]]])
    (scores, labels, xyxy), = postprocess(logits, boxes, [(100, 200)], num_select=2)
    assert labels.tolist() == [1, 3]
    assert scores.tolist() == pytest.approx([torch.sigmoid(torch.tensor(3.0)).item(),
                                             torch.sigmoid(torch.tensor(2.0)).item()])
    assert xyxy.ravel().tolist() == pytest.approx([160.0, 30.0, 220.0, 70.0, 80.0, 40.0, 120.0, 60.0])


def _research_name(key: str) -> str:
    """A worker (= TAO) FastFoundationStereo key as NVIDIA's research checkpoint names it
    (the inverse of the renames TAO's ``fast_foundation_stereo/ckpt_utils.py`` applies)."""
    import re

    key = re.sub(r"^cost_agg\.atts\.cost_vol_disp\.", "cost_agg.atts.4.", key)
    key = re.sub(r"^(corr_feature_att|classifier)\.", r"\1.layers.", key)
    key = re.sub(r"^feature\.downsample_layers\.0\.", "feature.stem.", key)
    key = re.sub(r"^feature\.downsample_layers\.(\d)\.", r"feature.stages.\1.downsample.", key)
    m = re.match(r"^feature\.stages\.(\d)\.(\d+)\.(.*)$", key)
    if m:
        rest = {"dwconv.": "conv_dw.", "pwconv1.": "mlp.fc1.", "pwconv2.": "mlp.fc2."}
        tail = m.group(3)
        for ours, theirs in rest.items():
            if tail.startswith(ours):
                tail = theirs + tail[len(ours):]
        key = f"feature.stages.{m.group(1)}.blocks.{m.group(2)}.{tail}"
    return key


def test_ffs_research_checkpoint_loads(tmp_path, monkeypatch):
    """NVIDIA's research layout of FastFoundationStereo (``module.``-prefixed, timm EdgeNeXt
    names, ``cost_agg.atts.4``, ``*.layers.``; no ``dx`` buffer) loads every tensor it has
    into the worker's model (tiny backbone: the same names, fewer blocks)."""
    import torch

    from tao_sdk.worker.weights import load_weights

    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    plugin, model = _tiny("depth_net")
    _p2, source = _tiny("depth_net")
    research = {"module." + _research_name(k): v for k, v in source.state_dict().items()
                if k != "dx"}
    assert any(".blocks.0.conv_dw." in k for k in research)
    path = tmp_path / "model_best_bp2_serialize.pth"
    torch.save({"model": research}, path)
    report = load_weights(model, path, plugin, "train.pretrained_model_path")
    assert report.layout == "research checkpoint"
    assert report.loaded == report.total == len(research) and report.initial == ["dx"]
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in source.state_dict().items())


def _pickled_research_model(path: Path, state: dict) -> None:
    """Save ``state`` as NVIDIA's research ``*_serialize.pth`` does: a whole pickled model of
    classes from the research tree (``core.*``), gone when the file is read again."""
    import sys
    import types

    import torch
    from torch import nn

    pkg, mod = types.ModuleType("core"), types.ModuleType("core.foundation_stereo")
    pkg.__path__ = []
    node = type("BasicConv", (nn.Module,), {"__module__": "core.foundation_stereo"})
    mod.BasicConv = node
    sys.modules.update({"core": pkg, "core.foundation_stereo": mod})
    try:
        root = node()
        for key, value in state.items():
            *parents, leaf = key.split(".")
            at = root
            for name in parents:
                if name not in at._modules:
                    at.add_module(name, node())
                at = at._modules[name]
            if value.is_floating_point():
                at.register_parameter(leaf, nn.Parameter(value.clone()))
            else:
                at.register_buffer(leaf, value.clone())
        root.register_buffer("scratch", torch.zeros(2), persistent=False)
        torch.save(root, path)
    finally:
        del sys.modules["core"], sys.modules["core.foundation_stereo"]


def test_ffs_pickled_research_model_loads_for_training_and_evaluation(tmp_path, monkeypatch):
    """The research bp2 file as NVIDIA publishes it (a pickled model whose classes are not
    importable here, convolution norms named ``.bn.``) loads every parameter without running
    its code: as train.pretrained_model_path, and as an evaluate checkpoint (layout
    ``research``; the constant ``dx`` keeps its built value)."""
    import torch

    from tao_sdk.worker.engine.checkpoint import load_checkpoint
    from tao_sdk.worker.weights import checkpoint_state, load_weights

    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    plugin, model = _tiny("depth_net")
    _p2, source = _tiny("depth_net")
    research = {_research_name(k).replace(".norm.", ".bn."): v
                for k, v in source.state_dict().items() if k != "dx"}
    assert any(".bn." in k for k in research)
    path = tmp_path / "model_best_bp2_serialize.pth"
    _pickled_research_model(path, research)
    report = load_weights(model, path, plugin, "train.pretrained_model_path")
    assert report.layout == "research checkpoint" and report.initial == ["dx"]
    assert report.loaded == report.total == len(research)
    ckpt = load_checkpoint(path, "evaluate.checkpoint", research=True)
    assert ckpt["layout"] == "research" and ckpt["arch"] is None
    _p3, fresh = _tiny("depth_net")
    fresh.load_state_dict(checkpoint_state(ckpt, plugin, fresh, "evaluate.checkpoint"))
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in source.state_dict().items())
    with pytest.raises(Exception, match="neither a checkpoint of this worker"):
        load_checkpoint(path, "evaluate.checkpoint")  # networks without research_keys


def test_ffs_research_checkpoint_of_other_settings_is_refused_for_evaluation(tmp_path, monkeypatch):
    import torch

    from tao_sdk.worker.engine.checkpoint import load_checkpoint
    from tao_sdk.worker.errors import WorkerError
    from tao_sdk.worker.weights import checkpoint_state

    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    plugin, model = _tiny("depth_net")
    research = {_research_name(k): v for k, v in model.state_dict().items() if k != "dx"}
    dropped = next(k for k in research if k.startswith("update_block."))
    del research[dropped]
    path = tmp_path / "other.pth"
    torch.save({"model": research}, path)
    ckpt = load_checkpoint(path, "evaluate.checkpoint", research=True)
    with pytest.raises(WorkerError, match="research checkpoint does not fit.*1 missing"):
        checkpoint_state(ckpt, plugin, model, "evaluate.checkpoint")


def test_ffs_edgenext_ptm_loads_into_the_backbone(tmp_path, monkeypatch):
    """TAO's EdgeNeXt ImageNet PTM (``model.stereo_backbone.edgenext_pretrained_path``: a
    ``state_dict`` under ``model.``, with the classifier TAO's Feature does not keep) loads
    into the full-size FastFoundationStereo's ``feature`` EdgeNeXt, every backbone tensor."""
    import torch

    from tao_sdk.bank import get_bank
    from tao_sdk.worker.engine.checkpoint import load_pretrained

    monkeypatch.delenv("TAO_WORKER_BACKBONE_SCALE", raising=False)
    plugin = plugin_of("depth_net")
    assert plugin.pretrained_backbone_key == "model.stereo_backbone.edgenext_pretrained_path"
    arch = plugin.build_arch(get_bank().get("depth_net").template("train"))
    torch.manual_seed(0)
    source = plugin.build_model(arch).state_dict()
    edgenext = {k: v for k, v in source.items()
                if k.startswith(("feature.downsample_layers.", "feature.stages."))}
    ptm = {"model." + k[len("feature."):]: v for k, v in edgenext.items()}
    ptm.update({"model.head.weight": torch.zeros(1000, 304), "model.norm.weight": torch.ones(304)})
    path = tmp_path / "edgenext_small.pth"
    torch.save({"state_dict": ptm, "epoch": 300}, path)
    model = plugin.build_model(arch)
    report = load_pretrained(model, path, plugin.pretrained_backbone_key, plugin,
                             prefix=plugin.backbone_prefix)
    assert report.loaded == len(edgenext) > 100 and report.skipped == {
        "not in this model": ["model.feature.head.weight", "model.feature.norm.weight"]}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in edgenext.items())
    assert not any(k.startswith("feature.") and k in edgenext for k in report.initial)


def test_ffs_worker_checkpoint_round_trips_through_tao_layout(monkeypatch):
    import torch

    from tao_sdk.worker.weights import tao_state

    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    plugin, model = _tiny("depth_net")
    layout, tao = tao_state(plugin, model.state_dict())
    assert layout == "tao" and set(tao) == {f"model.{k}" for k in model.state_dict()}
    back, skipped = plugin.tao_keys.to_worker(tao, model.state_dict())
    assert not skipped and all(torch.equal(back[k], v) for k, v in model.state_dict().items())


def test_ffs_setting_the_worker_does_not_build_is_refused_at_plan_time():
    from tao_sdk.bank import get_bank
    from tao_sdk.worker.errors import SpecError

    template = get_bank().get("depth_net").template("train")
    for field, value, allowed in (("encoder", "vitg", "vits, vitb, vitl"),
                                  ("n_gru_layers", 3, "1")):
        spec = copy.deepcopy(template)
        spec["model"][field] = value
        with pytest.raises(SpecError, match=f"model.{field}={value!r}.*use one of: {allowed}"
                           .replace("'", "'?")):
            preflight("depth_net", "train", spec)
    preflight("depth_net", "train", copy.deepcopy(template))


def test_rtdetr_decoder_has_taos_fixed_heads_and_width(monkeypatch):
    """TAO's RT-DETR builds its decoder with RTDETRTransformer's defaults (8 heads, 1024
    feed-forward); model.nheads / model.dim_feedforward size the encoder only. The demo's
    small spec (4 heads, 128) once built a 4-head decoder that TAO could not load (shapes
    below are those TAO's module has for this spec); a hidden size 8 heads cannot split is
    refused."""
    from tao_sdk.worker.errors import SpecError

    spec = manifest_spec(read_manifest(manifest_paths("rtdetr")[0]))
    spec["model"].update(backbone="resnet_18", hidden_dim=64, nheads=4, dim_feedforward=128,
                         enc_layers=1, dec_layers=1, feat_channels=[64, 64, 64], num_queries=20)
    plugin, model = full_model("rtdetr", spec, "meta", monkeypatch)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["model.decoder.layers.0.encoder_attn.sampling_offsets.weight"] == (
        8 * 3 * 4 * 2, 64)  # heads x levels x points x 2, as TAO's cross_attn
    assert shapes["model.decoder.layers.0.mlp.fc1.weight"] == (1024, 64)
    encoder_ffn = {v for k, v in shapes.items() if ".encoder." in k and k.endswith("fc1.weight")}
    assert encoder_ffn == {(128, 64)}
    spec["model"].update(hidden_dim=60, feat_channels=[60, 60, 60], nheads=4)
    with pytest.raises(SpecError, match="model.hidden_dim=60 must be a multiple of 8"):
        plugin.build_arch(spec)


@pytest.mark.parametrize("wh,size,max_size,expected", [
    ((1000, 200), 800, 1333, (267, 1335)),  # capped: shorter side round(1333*200/1000), long truncated
    ((640, 480), 800, 1333, (800, 1066)),   # int(1066.7), not round
    ((480, 640), 800, 1333, (1066, 800)),
    ((333, 500), 800, 1333, (1201, 800)),
    ((500, 375), 128, 128, (96, 128)),
    ((2000, 1999), 800, 1333, (800, 800)),
    ((640, 427), 480, 640, (427, 640)),     # already at the capped size: unchanged
])
def test_deformable_detr_resize_is_taos(wh, size, max_size, expected):
    """Deformable DETR's shorter-side resize gives the sizes TAO's ``resize`` gives (the
    expected (h, w) were measured with TAO 7.3.0's transforms; the worker once scaled both
    sides by one factor and rounded, 1067 instead of TAO's 1066 for 640x480 at 800)."""
    from tao_sdk.worker.tasks.detection.data import ResizePolicy

    assert ResizePolicy("shorter", [size], size, max_size).target(*wh, size) == expected


@pytest.mark.parametrize("wh,fixed_padding,canvas", [
    ((200, 150), True, (96, 160)),   # landscape: padded to test_random_resize x max size
    ((150, 200), True, (160, 96)),   # portrait: the long side is the height
    ((200, 150), False, (96, 128)),  # no fixed padding: the resized image itself
])
def test_deformable_detr_fixed_padding_is_taos(wh, fixed_padding, canvas):
    """TAO's Deformable DETR eval pads each resized image to a fixed canvas (``FixedPad``,
    ``dataset.augmentation.fixed_padding`` default true) with the padding masked; the worker
    pads the same (canvas shapes as TAO 7.3.0's eval transforms give for a 200x150 image at
    test_random_resize 96, random_resize_max_size 160; padded pixels 0, mask 0 there)."""
    import numpy as np
    from PIL import Image

    from tao_sdk.worker.registry import get
    from tao_sdk.worker.tasks.detection.data import Collator

    plugin = get("deformable_detr")
    spec = {"dataset": {"augmentation": {"test_random_resize": 96, "random_resize_max_size": 160,
                                         "fixed_padding": fixed_padding}}}
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (wh[1], wh[0], 3), np.uint8))
    mean, std = plugin.mean_std(spec)
    batch = Collator(plugin.resize_policy(spec), mean, std, train=False)([(img, {}, {})])
    assert tuple(batch["pixel_values"].shape) == (1, 3, *canvas)
    h, w = batch["sizes"][0]
    assert (h, w) == ((96, 128) if wh[0] > wh[1] else (128, 96))
    assert int(batch["pixel_mask"].sum()) == h * w
    assert float(batch["pixel_values"][0, :, h:, :].abs().sum()) == 0.0
    assert float(batch["pixel_values"][0, :, :, w:].abs().sum()) == 0.0


def test_coco_map_without_detections_is_pycocotools_zero():
    """Only class-0 detections (the unused id below the category ids: no category) leave
    nothing to evaluate: AP and the PR curve are 0 for each category with ground truth, as
    pycocotools gives them (it cannot load an empty result list), so evaluate still writes
    its PR curves."""
    import numpy as np

    from tao_sdk.worker.tasks.detection.metrics import coco_map

    gt = {"images": [{"id": 1, "width": 10, "height": 10}],
          "annotations": [{"image_id": 1, "category_id": 2, "bbox": [1, 1, 4, 4]}],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    results = [({"image_id": 1}, np.array([0.9]), np.array([0]), np.array([[1., 1., 5., 5.]]))]
    got = coco_map(gt, results, {1: 1, 2: 2})
    assert (got["mAP"], got["mAP50"], got["per_class"]) == (0.0, 0.0, {2: 0.0})
    assert got["pr"]["precision"] == {2: [0.0] * 101} and len(got["pr"]["recall"]) == 101
