#!/usr/bin/env python3
"""Maintainer tool: record TAO's own state_dict manifests and check the worker against them.

Builds TAO 7.3.0's networks from NVIDIA's published ``nvidia-tao-pytorch`` wheel (the
Lightning module TAO's train action saves, from the skill's default train template with one
``model.backbone`` per manifest) and writes, per network and backbone,
``tools/manifests/<network>/<backbone>.json.gz``: the checkpoint keys with shapes and dtypes,
the spec fields used, tensor / value counts and, with ``--parity``, the largest relative
difference between TAO's outputs and the worker's on the same seeded random weights (mapped
with the network's conversion table, :attr:`NetworkPlugin.tao_keys`); networks whose settings
are not a ``model.backbone`` name (FastFoundationStereo: ``bp2`` = the template, ``vits`` /
``vitb`` = TAO's other ``model.encoder`` values) name them in :data:`_MODEL_SETTINGS`. CI
(``tests/worker/test_tao_keys.py``) checks the tables against these files without TAO code.

TAO is never a runtime dependency. Set up a maintainer venv outside the repository::

    python3 -m venv /work/wt/taovenv/venv          # torch 2.13.0 CPU: reuse the worker venv's
    echo <worker venv>/lib/python3.11/site-packages > .../site-packages/zz_worker.pth
    pip download --no-deps --python-version 3.12 --only-binary :all: \\
        nvidia-tao-pytorch==7.3.0 nvidia-tao-core==7.3.0 -d dl
    unzip dl/nvidia_tao_pytorch-*.whl -d src; unzip dl/nvidia_tao_core-*.whl -d src
    pip install --no-deps timm fvcore iopath yacs tabulate termcolor portalocker einops \\
        pytorch_lightning lightning_utilities torchmetrics h5py beartype ruamel.yaml \\
        open_clip_torch torchvision==0.28.0 addict ftfy wcwidth hydra-core fairscale

then ``PYTHONPATH=<repo> venv/bin/python tools/tao_manifests.py --tao-src src [--parity]
[--network rtdetr] [--backbone resnet_50]``. Import shims (this file only): a stand-in for
NVIDIA's ``eff`` package (encryption; not on the public index: its functions refuse), no
fake-tensor registration for torchvision's CUDA-built ops, a no-op loader for TAO's compiled
deformable-attention op (TAO's CPU forward uses its PyTorch path), and for OneFormer's
hub-downloaded CLIP tokenizer the same tokenizer class over open_clip's bundled BPE vocabulary
(:func:`_clip_tokenizer`), so TAO tokenises its own task text at parity time.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tools" / "manifests"

#: network -> (skill, TAO Lightning module "module:Class", backbones recorded, parity backbone)
NETWORKS = {
    "rtdetr": ("tao-train-rtdetr", "nvidia_tao_pytorch.cv.rtdetr.model.pl_rtdetr_model:RTDETRPlModel",
               ["resnet_18", "resnet_34", "resnet_50", "resnet_101", "convnext_tiny",
                "convnext_small", "convnext_base", "convnext_large", "convnext_xlarge"],
               "resnet_50"),
    "deformable_detr": (
        "tao-train-deformable-detr",
        "nvidia_tao_pytorch.cv.deformable_detr.model.pl_dd_model:DeformableDETRModel",
        ["resnet_50", "gc_vit_xxtiny", "gc_vit_xtiny", "gc_vit_tiny", "gc_vit_small",
         "gc_vit_base", "gc_vit_large", "gc_vit_large_384"], "resnet_50"),
    # the template's Swin (OneFormer's backbone is a section, not a name)
    "oneformer": ("tao-train-oneformer",
                  "nvidia_tao_pytorch.cv.oneformer.model.pl_oneformer:OneformerPlModule",
                  ["template", "swin_tiny", "swin_base"], "template"),
    # FastFoundationStereo: the template's bp2 widths; TAO's other encoder settings (vitg has
    # no FFS layout in TAO) change Feature.conv4's (phantom ViT) width band only
    "depth_net": ("tao-train-fast-foundation-stereo",
                  "nvidia_tao_pytorch.cv.depth_net.model.stereo_depth.pl_stereo_model:"
                  "StereoDepthNetPlModel", ["bp2", "vits", "vitb"], "bp2"),
}

#: setting name -> ``model.*`` overrides (dotted below ``model``) of the template (networks
#: whose settings are not a ``model.backbone`` name; ``bp2`` is the template as it is; the
#: OneFormer template is Swin-L, ``swin_tiny`` / ``swin_base`` TAO's other published Swins)
_MODEL_SETTINGS = {
    "bp2": {}, "vits": {"encoder": "vits"}, "vitb": {"encoder": "vitb"},
    "swin_tiny": {"backbone.swin.embed_dim": 96, "backbone.swin.depths": [2, 2, 6, 2],
                  "backbone.swin.num_heads": [3, 6, 12, 24], "backbone.swin.window_size": 7},
    "swin_base": {"backbone.swin.embed_dim": 128, "backbone.swin.depths": [2, 2, 18, 2],
                  "backbone.swin.num_heads": [4, 8, 16, 32], "backbone.swin.window_size": 12},
}


def _detr_inputs(image, _model):
    """RT-DETR: the image, both sides."""
    return (image,), {"pixel_values": image}


def _dd_inputs(image, _model):
    """Deformable DETR: TAO takes RGB + a padding-mask channel (1 = padding), transformers
    a ``pixel_mask`` (1 = image)."""
    import torch

    mask = torch.zeros_like(image[:, :1])
    return (torch.cat([image, mask], dim=1),), {
        "pixel_values": image, "pixel_mask": torch.ones_like(mask[:, 0]).long()}


def _oneformer_inputs(image, model):
    """OneFormer: the image; TAO gets the task text as its data loader builds it and
    tokenises it itself (its CLIP tokenizer, :func:`_clip_tokenizer`), the worker its own
    task token ids."""
    from tao_sdk.worker.networks.oneformer import _task_inputs

    return (image, ["The task is semantic"] * len(image)), {
        "pixel_values": image, "task_inputs": _task_inputs(model, image)}


def _oneformer_checks(spec: dict, pl_model, ours, image, ref) -> dict:
    """OneFormer: the worker's task token ids against TAO's tokenizer for every task text
    (at ``dataset.task_seq_len`` and at 8), and the post-processed semantic prediction
    (TAO's ``batch_semantic_inference`` + upsampling + argmax vs the worker's
    ``predict_labels``): share of equal pixels, in percent."""
    import torch

    from nvidia_tao_pytorch.cv.oneformer.model.tokenizer import Tokenize
    from tao_sdk.worker.networks.oneformer import forward, predict_labels, task_tokens

    seq_len = int(spec["dataset"].get("task_seq_len", 77))
    texts = {t: f"The task is {t}" for t in ("semantic", "instance", "panoptic")}
    agree = sum(Tokenize(n)(text).tolist() == task_tokens(task, n)
                for task, text in texts.items() for n in (seq_len, 8))
    scores = pl_model.batch_semantic_inference(ref["pred_logits"], ref["pred_masks"])
    tao = torch.nn.functional.interpolate(scores, size=image.shape[-2:], mode="bilinear",
                                          align_corners=False).argmax(1)[0].numpy()
    with torch.no_grad():
        logits, masks = forward(ours, image)
    got = predict_labels(logits, masks, [tuple(image.shape[-2:])])[0]
    return {"task_ids_agree": f"{agree}/{2 * len(texts)}",
            "semantic_argmax_agree_pct": float((tao == got).mean() * 100)}


def _clip_tokenizer():
    """TAO's OneFormer tokenizer without the hub: transformers' ``CLIPTokenizer`` (what
    ``AutoTokenizer.from_pretrained("openai/clip-vit-base-patch32")`` returns; its pad token
    is ``<|endoftext|>``, the class default) over CLIP's BPE merges as open_clip bundles them
    (``bpe_simple_vocab_16e6.txt.gz``, the file OpenAI published), with CLIP's vocabulary
    order: 256 byte symbols, the same with ``</w>``, one per merge, the two special tokens."""
    import gzip as _gzip

    import importlib.util

    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    package = importlib.util.find_spec("open_clip").submodule_search_locations[0]
    bpe = Path(package) / "bpe_simple_vocab_16e6.txt.gz"
    lines = _gzip.open(bpe, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = [*symbols, *(v + "</w>" for v in symbols), *("".join(m) for m in merges),
             "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)


def _detection_outputs(got, ref) -> dict:
    """Logits and boxes, and (RT-DETR picks its decoder queries by a top-k over encoder
    scores: near-ties may pick them in another order or swap one) the same after pairing
    the queries."""
    from tao_sdk.worker.networks.rtdetr import _matched_diff

    out = _compare((("logits", got.logits, ref["pred_logits"]),
                    ("boxes", got.pred_boxes, ref["pred_boxes"])))
    out["matched_max_abs"] = _matched_diff(got.logits.numpy(), got.pred_boxes.numpy(),
                                           ref["pred_logits"].numpy(),
                                           ref["pred_boxes"].numpy())
    scale = max(float(ref["pred_logits"].abs().max()), float(ref["pred_boxes"].abs().max()))
    out["matched_max_rel"] = out["matched_max_abs"] / scale
    return out


def _segmentation_outputs(got, ref) -> dict:
    """Class logits and mask logits of the last decoder layer."""
    return _compare((("logits", got.class_queries_logits, ref["pred_logits"]),
                     ("masks", got.masks_queries_logits, ref["pred_masks"])))


def _compare(pairs) -> dict:
    """Per ``(name, ours, TAO's)``: largest difference relative to TAO's largest magnitude,
    and TAO's spread (the outputs are not degenerate)."""
    out = {}
    for name, a, b in pairs:
        out[f"{name}_max_rel"] = float((a - b).abs().max() / b.abs().max())
        out[f"{name}_std"] = float(b.std())
    return out


#: FastFoundationStereo's parity pair (a crop of the random image, multiples of 32: TAO's 3D
#: volumes at 640x640 take minutes on CPU) and GRU iterations.
_STEREO_CROP = (256, 320)
_STEREO_ITERS = 4


def _stereo_inputs(image, _model):
    """FastFoundationStereo: a left crop and the same crop 8 px to the right as the right
    view; TAO's forward in training form (``test_mode=False``: initial and per-iteration
    disparities), the worker's in eval form (initial and last)."""
    h, w = _STEREO_CROP
    left = image[..., :h, :w]
    right = image[..., :h, 8:w + 8]
    return (left, right, _STEREO_ITERS), {"left": left, "right": right,
                                          "iters": _STEREO_ITERS}


def _stereo_outputs(got, ref) -> dict:
    """Initial disparity (TAO's at 1/4 in 1/4-resolution pixels, the worker's in full-resolution
    pixels: TAO's x 4) and the full-resolution disparity after the last iteration."""
    out = _compare((("init_disp", got[0], ref[0] * 4), ("disparity", got[1][-1], ref[1][-1])))
    out["input"] = [1, 3, *_STEREO_CROP]
    out["iters"] = _STEREO_ITERS
    return out


#: network -> (the (TAO positional inputs, worker keyword inputs) of one image, the output
#: comparison), for :func:`parity` and :func:`check_load`.
_INPUTS = {"rtdetr": (_detr_inputs, _detection_outputs),
           "deformable_detr": (_dd_inputs, _detection_outputs),
           "oneformer": (_oneformer_inputs, _segmentation_outputs),
           "depth_net": (_stereo_inputs, _stereo_outputs)}


def _label_map_file() -> str:
    """A one-category label map (OneFormer's module reads one when built)."""
    import tempfile

    fh = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump([{"name": "thing", "id": 1, "isthing": 1, "color": [0, 0, 0]}], fh)
    fh.close()
    return fh.name


#: network -> dataset fields TAO's module needs to be built at all.
_DATASET_FIELDS: dict[str, dict] = {}


class _Stub(types.ModuleType):
    """Stand-in module of NVIDIA's ``eff``: every name is a class whose calls refuse."""

    __path__: list[str] = []

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)

        class Refuse:
            def __init__(self, *args, **kwargs) -> None:
                pass

            def __call__(self, *args, **kwargs):
                raise RuntimeError("eff stand-in: encrypted checkpoints cannot be read")

        Refuse.__name__ = attr
        return Refuse


class _EffFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "eff" or name.startswith("eff."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Stub(spec.name)

    def exec_module(self, module):
        pass


def install_shims(tao_src: Path) -> None:
    """Make TAO's model code importable on CPU (see the module docstring)."""
    import torch.library

    sys.path.insert(0, str(tao_src))
    sys.meta_path.insert(0, _EffFinder())
    original = torch.library.register_fake

    def register_fake(op, *args, **kwargs):
        if isinstance(op, str) and op.startswith("torchvision::"):
            return (lambda fn: fn) if not args else None
        return original(op, *args, **kwargs)

    torch.library.register_fake = register_fake
    import torchvision  # noqa: F401 - imported once with the shim in place

    for name in ("functions", "modules"):  # before any module imports load_ops by name
        ops = importlib.import_module(f"nvidia_tao_pytorch.cv.deformable_detr.model.ops.{name}")
        ops.load_ops = lambda *a, **k: None
    import transformers  # OneFormer's tokenizer module downloads CLIP's tokenizer at import

    transformers.AutoTokenizer.from_pretrained = lambda *a, **k: _clip_tokenizer()


def template_spec(skill: str, backbone: str) -> dict:
    """The skill's default train template with ``model.backbone`` set."""
    import yaml

    path = REPO / "skills" / skill / "references" / "spec_template_train.yaml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if backbone in _MODEL_SETTINGS:  # a named setting of the template's model section
        from tao_sdk.dotted import set_path

        for dotted, value in _MODEL_SETTINGS[backbone].items():
            set_path(spec["model"], dotted, value)
    elif backbone != "template":  # DETR family: model.backbone names the backbone
        spec["model"]["backbone"] = backbone
        spec["model"]["pretrained_backbone_path"] = None
    return spec


def tao_model(network: str, spec: dict):
    """TAO's Lightning module of ``network`` built from ``spec`` (TAO Core's config merged)."""
    from omegaconf import OmegaConf

    core = importlib.import_module(f"nvidia_tao_core.config.{network}.default_config")
    fields = {"model": spec["model"], "dataset": dict(_DATASET_FIELDS.get(network, {}))}
    if "num_classes" in spec.get("dataset", {}):
        fields["dataset"]["num_classes"] = spec["dataset"]["num_classes"]
    cfg = OmegaConf.merge(OmegaConf.structured(core.ExperimentConfig), fields)
    module, cls = NETWORKS[network][1].split(":")
    return getattr(importlib.import_module(module), cls)(cfg)


def manifest(network: str, backbone: str, spec: dict, state_dict: dict) -> dict:
    """The manifest record of one TAO model."""
    tensors = [[k, list(v.shape), str(v.dtype).replace("torch.", "")]
               for k, v in state_dict.items()]
    return {"network": network, "backbone": backbone, "tao": "nvidia-tao-pytorch 7.3.0",
            "spec": {"model": spec["model"],
                     "dataset.num_classes": spec.get("dataset", {}).get("num_classes")},
            "tensors": len(tensors), "values": int(sum(v.numel() for v in state_dict.values())),
            "state_dict": tensors}


def perturb(model) -> None:
    """Seeded random weights (from torch's global generator): N(0, 0.02) added to every
    parameter, BatchNorm running means N(0, 0.1) and variances U(0.5, 1.5)."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn_like(buf) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)


def parity(network: str, spec: dict, pl_model) -> dict:
    """Seeded random weights in TAO's model (its initialisation + N(0, 0.02) noise, random
    BatchNorm statistics), mapped into the worker's: largest difference of the outputs
    (detection: logits and boxes) on one random 640x640 image (``$PARITY_SIZE`` for another
    square size, e.g. 896 = 7 x 32 x 4, where a Swin with window 7 pads no stage), relative to
    the largest output magnitude; the outputs' spread is recorded too."""
    import torch

    from tao_sdk.worker.registry import get as plugin_for

    plugin = plugin_for(network)
    torch.manual_seed(0)
    perturb(pl_model)  # TAO's initialisation, perturbed; BatchNorm statistics random
    ours = plugin.build_model(plugin.build_arch(spec))
    converted, skipped = plugin.tao_keys.to_worker(pl_model.state_dict(), ours.state_dict())
    missing = sorted(set(ours.state_dict()) - set(converted))
    ours.load_state_dict(converted, strict=False)
    pl_model.eval()
    ours.eval()
    size = int(os.environ.get("PARITY_SIZE", 640))
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    make_inputs, compare = _INPUTS[network]
    tao_inputs, our_inputs = make_inputs(image, ours)
    with torch.no_grad():
        ref = pl_model.model(*tao_inputs)
        got = ours(**our_inputs)
    checks = _CHECKS.get(network)
    return {"input": [1, 3, size, size], "missing": len(missing),
            "skipped": {k: len(v) for k, v in skipped.items()}, **compare(got, ref),
            **(checks(spec, pl_model, ours, image, ref) if checks else {})}


#: network -> further checks of :func:`parity` (``(spec, TAO's module, ours, image, TAO's
#: outputs) -> figures``).
_CHECKS = {"oneformer": _oneformer_checks}


#: network -> the keyword (and attribute) of the experiment config of TAO's Lightning module.
_CONFIG_ARG = {"oneformer": "cfg"}


def check_load(network: str, backbone: str, tmp: Path) -> dict:
    """A checkpoint the worker writes (its save path's keys and TAO layout, full-size model
    of the template) loaded by TAO's own ``load_from_checkpoint`` (strict); the outputs of
    the two models on one image are compared too."""
    import torch

    from tao_sdk.worker.engine.checkpoint import CHECKPOINT_FORMAT, _lightning_keys
    from tao_sdk.worker.registry import get as plugin_for
    from tao_sdk.worker.weights import tao_state

    plugin = plugin_for(network)
    spec = template_spec(NETWORKS[network][0], backbone)
    torch.manual_seed(1)
    arch = plugin.build_arch(spec)
    ours = plugin.build_model(arch).eval()
    layout, state = tao_state(plugin, ours.state_dict())
    path = tmp / f"{network}_{backbone}_model_epoch_000.pth"
    torch.save({**_lightning_keys(plugin, 0, 0, layout, state), "format": CHECKPOINT_FORMAT,
                "arch": arch, "optimizer_states": [], "lr_schedulers": []}, path)
    pl_model = tao_model(network, spec)
    module, cls = NETWORKS[network][1].split(":")
    arg = _CONFIG_ARG.get(network, "experiment_spec")  # as TAO's evaluate passes it
    loaded = getattr(importlib.import_module(module), cls).load_from_checkpoint(
        str(path), map_location="cpu", strict=True, **{arg: getattr(pl_model, arg)})
    image = torch.rand(1, 3, 640, 640, generator=torch.Generator().manual_seed(1))
    make_inputs, compare = _INPUTS[network]
    tao_inputs, our_inputs = make_inputs(image, ours)
    with torch.no_grad():
        ref = loaded.eval().model(*tao_inputs)
        got = ours(**our_inputs)
    return {"strict_load": "ok", "tensors": len(state), **compare(got, ref)}


def record(network: str, backbone: str, with_parity: bool) -> dict:
    """Build, write ``tools/manifests/<network>/<backbone>.json.gz`` (a parity figure measured
    before is kept when ``with_parity`` is false); return the record."""
    import torch

    spec = template_spec(NETWORKS[network][0], backbone)
    torch.manual_seed(0)  # TAO's initialisation, reproducibly
    pl_model = tao_model(network, spec)
    data = manifest(network, backbone, spec, pl_model.state_dict())
    path = OUT / network / f"{backbone}.json.gz"
    if with_parity and NETWORKS[network][3] is not None:
        data["parity"] = parity(network, spec, pl_model)
    elif path.exists():  # keep the figure measured before
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            old = json.load(fh)
        if "parity" in old:
            data["parity"] = old["parity"]
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, indent=0, sort_keys=True).encode()
    with gzip.GzipFile(path, "wb", mtime=0) as fh:  # deterministic bytes
        fh.write(raw)
    return data


def _figure(value) -> str:
    return "-" if value is None else f"{value:.1e}"


def _read(path: Path) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def write_index() -> Path:
    """``tools/manifests/README.md``: one row per recorded manifest (sizes, parity)."""
    rows = ["# TAO 7.3.0 state_dict manifests", "",
            "Recorded by `tools/tao_manifests.py` from NVIDIA's `nvidia-tao-pytorch` 7.3.0 (the "
            "Lightning module TAO's train action saves, built from the skill's default train "
            "template with this `model.backbone`); checked against the worker's key tables by "
            "`tests/worker/test_tao_keys.py`. Parity: TAO's initialisation + N(0, 0.02) noise "
            "and random BatchNorm statistics (seed 0), mapped into the worker's model, one "
            "random 640x640 image; largest output difference relative to the largest output "
            "magnitude (detection: class logits and boxes; OneFormer, TAO tokenising its task "
            "text with its CLIP tokenizer and the worker with its own ids: class logits and "
            "mask logits of the last decoder layer), "
            "and (RT-DETR selects its decoder queries by a top-k whose near-ties under "
            "random weights may order them differently) the same after pairing queries; "
            "FastFoundationStereo (`depth_net`; settings: the template's bp2 widths and TAO's "
            "other `model.encoder` values): the full-resolution disparity after 4 GRU "
            "iterations on a 256x320 crop and the crop shifted by 8 px.", "",
            "| network | backbone | tensors | values | logits rel | boxes rel | masks rel "
            "| matched rel | disparity rel |",
            "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(OUT.glob("*/*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        par = data.get("parity", {})
        figures = " | ".join(_figure(par.get(f"{k}_max_rel"))
                             for k in ("logits", "boxes", "masks", "matched", "disparity"))
        rows.append(f"| {data['network']} | {data['backbone']} | {data['tensors']} | "
                    f"{data['values']:,} | {figures} |")
    rows += [f"\n{d['network']} {d['backbone']}: task token ids equal to TAO's tokenizer "
             f"{d['parity']['task_ids_agree']}, semantic prediction (argmax map) equal on "
             f"{d['parity']['semantic_argmax_agree_pct']:.2f}% of pixels"
             for d in map(_read, sorted(OUT.glob("oneformer/*.json.gz")))
             if "task_ids_agree" in d.get("parity", {})]
    path = OUT / "README.md"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    kept = old[old.find("\n## "):] if "\n## " in old else ""  # other tools' sections
    path.write_text("\n".join(rows) + "\n" + kept, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tao-src", type=Path, required=True,
                    help="folder holding the unzipped nvidia_tao_pytorch / nvidia_tao_core")
    ap.add_argument("--network", choices=sorted(NETWORKS), action="append")
    ap.add_argument("--backbone", action="append")
    ap.add_argument("--parity", action="store_true",
                    help="also measure output parity (every backbone recorded; the default "
                         "backbone at least: " + ", ".join(f"{n} {v[3]}" for n, v in
                                                            NETWORKS.items()) + ")")
    ap.add_argument("--check-load", action="store_true",
                    help="instead of recording: a checkpoint the worker writes, loaded by TAO's "
                         "load_from_checkpoint (strict), per network / backbone")
    args = ap.parse_args(argv)
    install_shims(args.tao_src)
    _DATASET_FIELDS["oneformer"] = {"label_map": _label_map_file()}
    if args.check_load:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for network in args.network or sorted(NETWORKS):
                for backbone in args.backbone or [NETWORKS[network][3]] * bool(
                        NETWORKS[network][3]):
                    print(json.dumps({"network": network, "backbone": backbone,
                                      **check_load(network, backbone, Path(tmp))}))
        return 0
    for network in args.network or sorted(NETWORKS):
        for backbone in args.backbone or NETWORKS[network][2]:
            data = record(network, backbone, args.parity)
            print(json.dumps({"network": network, "backbone": backbone,
                              "tensors": data["tensors"], "values": data["values"],
                              **({"parity": data["parity"]} if "parity" in data else {})}))
    write_index()
    return 0


if __name__ == "__main__":
    sys.exit(main())
