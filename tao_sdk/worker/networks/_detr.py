"""What the DETR-family detection plugins share: backbones, common ``model`` fields, the
transformers forward call, ONNX export and parity check, TensorRT I/O.

Backbones are passed to transformers as config objects, so nothing is downloaded. Backbone
scale: ``TAO_WORKER_BACKBONE_SCALE=tiny`` builds the named family with one block per stage
and narrow stages (ResNet basic blocks 32/64/128/256 channels, ConvNeXt 32/64/128/256) for CPU
smoke runs and demos; ``full`` (default) builds the real architecture (ResNet-18/34/50/101,
ConvNeXt-T/S/B/L/XL). The scale used is recorded in the checkpoint and reported in
``status.json``.
"""

from __future__ import annotations

from typing import Any

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError, WorkerError
from tao_sdk.worker.networks.backbones import CONVNEXTS as _CONVNEXTS
from tao_sdk.worker.networks.backbones import RESNETS as _RESNETS
from tao_sdk.worker.plugin import (
    NetworkPlugin,
    OnnxExport,
    backbone_scale,
    spec_float,
    spec_int,
    to_device,
)
from tao_sdk.worker.tasks.detection import TASK

__all__ = ["DetrPlugin", "backbone_config", "parity_inputs"]

_TINY = ("basic", [1, 1, 1, 1], [32, 64, 128, 256])

#: transformers config key -> TAO spec key (for architecture differences).
_ARCH_KEYS = {
    "num_queries": "model.num_queries", "d_model": "model.hidden_dim",
    "encoder_layers": "model.enc_layers", "decoder_layers": "model.dec_layers",
    "num_feature_levels": "model.num_feature_levels", "encoder_ffn_dim": "model.dim_feedforward",
    "encoder_attention_heads": "model.nheads",
}


def backbone_config(name: str, stages: list[int], scale: str,
                    convnext: bool) -> tuple[dict, list[int], str]:
    """``(backbone config dict, channels of the selected stages, description)`` of
    ``model.backbone=name``; ``convnext`` whether ConvNeXt backbones are offered.

    ResNets are the plain (torchvision / timm) networks TAO builds: 7x7 stem, stride in the
    3x3 convolution, built as transformers' ``ResNetBackbone`` (not RT-DETR's ResNet-vd)."""
    out_features = [f"stage{i}" for i in stages]
    tiny = ", TAO_WORKER_BACKBONE_SCALE=tiny"
    if name in _RESNETS:
        layer_type, depths, widths = _RESNETS[name] if scale == "full" else _TINY
        desc = (f"{name} ({layer_type} blocks, depths {depths}, widths {widths}"
                + (f"{tiny})" if scale == "tiny" else ")"))
        cfg = {"model_type": "resnet", "embedding_size": 64 if scale == "full" else widths[0],
               "hidden_sizes": widths, "depths": depths, "layer_type": layer_type,
               "out_features": out_features, "downsample_in_first_stage": False}
        return cfg, [widths[i - 1] for i in stages], desc
    if name in _CONVNEXTS and convnext:
        if len(stages) != 3:
            raise SpecError(f"model.return_interm_indices must select 3 stages with "
                            f"model.backbone={name} (TAO's ConvNeXt FPN returns three)")
        depths, widths = _CONVNEXTS[name] if scale == "full" else ([1, 1, 1, 1],
                                                                    [32, 64, 128, 256])
        desc = (f"{name} (ConvNeXt depths {depths}, widths {widths}, projected"
                + (f"{tiny})" if scale == "tiny" else " to 512/1024/2048)"))
        cfg = {"model_type": "convnext", "depths": depths, "hidden_sizes": widths,
               "layer_scale_init_value": 1e-6, "out_features": out_features}
        # TAO projects the three stages to 512/1024/2048 channels (tiny: the stage widths)
        out = [512, 1024, 2048] if scale == "full" else [widths[i - 1] for i in stages]
        return cfg, out, desc
    raise SpecError(
        f"model.backbone={name!r} is not available in this worker; use one of: "
        f"{', '.join(sorted(_RESNETS) + (sorted(_CONVNEXTS) if convnext else []))}"
    )


def _backbone_object(bb: dict):
    """The transformers backbone config object of a stored backbone config dict."""
    import transformers

    bb = dict(bb)
    model_type = bb.pop("model_type")
    classes = {"rt_detr_resnet": transformers.RTDetrResNetConfig,
               "resnet": transformers.ResNetConfig, "convnext": transformers.ConvNextConfig}
    if model_type not in classes:
        raise WorkerError(f"checkpoint architecture has an unknown backbone type {model_type!r}")
    return classes[model_type](**bb)


def transformer_sizes(f: dict[str, Any]) -> dict[str, Any]:
    """The encoder/decoder size entries of a transformers DETR-family config, from the fields
    :meth:`DetrPlugin.common_fields` read (layers, feed-forward width, heads, dropout)."""
    return {
        "encoder_layers": f["enc_layers"], "decoder_layers": f["dec_layers"],
        "encoder_ffn_dim": f["ffn"], "decoder_ffn_dim": f["ffn"],
        "encoder_attention_heads": f["nheads"], "decoder_attention_heads": f["nheads"],
        "dropout": f["dropout"],
    }


def parity_inputs(arch: dict, batch: int, height: int, width: int):
    """Random normalised images ``[batch, 3, height, width]`` (seeded) for a parity check."""
    import torch

    gen = torch.Generator().manual_seed(0)
    mean = torch.tensor(arch["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(arch["std"]).view(1, 3, 1, 1)
    return (torch.rand(batch, 3, height, width, generator=gen) - mean) / std


class _Wrapper:
    """Factory of the module exported to ONNX: ``inputs -> (pred_logits, pred_boxes)``; with
    ``extra`` also the named extra output attributes of the model output."""

    @staticmethod
    def wrap(model, extra: tuple[str, ...] = ()):
        """The export module around ``model``."""
        import torch

        class Wrapper(torch.nn.Module):
            """The exported module (input ``inputs``, preprocessed images)."""

            def __init__(self, inner) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, inputs):
                """Run the detector; return its class logits and boxes (+ extra outputs)."""
                out = self.inner(pixel_values=inputs)
                return (out.logits, out.pred_boxes, *(getattr(out, n) for n in extra))

        return Wrapper(model).eval()


class DetrPlugin(NetworkPlugin):
    """Base of the DETR-family plugins (transformers ``*ForObjectDetection`` models)."""

    task = TASK
    trt_outputs = ("pred_logits", "pred_boxes")
    silent_fields = frozenset({"train.activation_checkpoint"})
    channels_last = True  # ResNet / ConvNeXt backbones
    #: Whether the model takes ``pixel_mask`` (padded batches).
    pass_mask: bool = False
    #: Defaults of fields whose TAO default differs per network.
    default_num_classes: int = 91
    default_levels: int = 4
    default_dropout: float = 0.0
    default_enc_layers: int = 6

    # ------------------------------------------------------------------ arch

    def mean_std(self, spec: dict) -> tuple[list[float], list[float]]:
        """Input normalisation (after scaling to 0..1)."""
        return ([float(v) for v in S.get(spec, "dataset.augmentation.input_mean",
                                         [0.485, 0.456, 0.406])],
                [float(v) for v in S.get(spec, "dataset.augmentation.input_std",
                                         [0.229, 0.224, 0.225])])

    def common_fields(self, spec: dict) -> dict[str, Any]:
        """The validated ``model`` / ``dataset`` fields every DETR network reads."""
        num_classes = spec_int(spec, "dataset.num_classes", self.default_num_classes)
        if num_classes < 1:
            raise SpecError(f"dataset.num_classes={num_classes} must be >= 1")
        hidden = spec_int(spec, "model.hidden_dim", 256)
        nheads = spec_int(spec, "model.nheads", 8)
        if hidden < 1 or nheads < 1 or hidden % nheads:
            raise SpecError(f"model.hidden_dim={hidden} must be a positive multiple of "
                            f"model.nheads={nheads}")
        num_queries = spec_int(spec, "model.num_queries", 300)
        if num_queries < 1:
            raise SpecError(f"model.num_queries={num_queries} must be >= 1")
        num_select = spec_int(spec, "model.num_select", 300)
        if num_select < 1:
            raise SpecError(f"model.num_select={num_select} must be >= 1")
        if num_select > num_queries * num_classes:
            raise SpecError(
                f"model.num_select={num_select} must be <= model.num_queries x "
                f"dataset.num_classes = {num_queries * num_classes}; lower model.num_select")
        enc_layers = spec_int(spec, "model.enc_layers", self.default_enc_layers)
        dec_layers = spec_int(spec, "model.dec_layers", 6)
        if enc_layers < 1 or dec_layers < 1:
            raise SpecError("model.enc_layers and model.dec_layers must be >= 1")
        return {
            "num_classes": num_classes, "hidden": hidden, "nheads": nheads,
            "num_queries": num_queries, "num_select": num_select,
            "levels": spec_int(spec, "model.num_feature_levels", self.default_levels),
            "backbone": str(S.get(spec, "model.backbone", "resnet_50")),
            "scale": backbone_scale(),
            "ffn": spec_int(spec, "model.dim_feedforward", 1024),
            "dropout": spec_float(spec, "model.dropout_ratio", self.default_dropout),
            "enc_layers": enc_layers, "dec_layers": dec_layers,
        }

    def stages(self, spec: dict, default: list[int], zero_based: bool) -> list[int]:
        """Backbone stages (1..4) selected by ``model.return_interm_indices``."""
        idx = S.get(spec, "model.return_interm_indices", default)
        if not isinstance(idx, list) or not idx or not all(isinstance(i, int) for i in idx):
            raise SpecError(f"model.return_interm_indices={idx!r} must be a non-empty list of "
                            "ints")
        stages = [i + 1 for i in idx] if zero_based else list(idx)
        if any(s < 1 or s > 4 for s in stages) or sorted(set(stages)) != stages:
            raise SpecError(
                f"model.return_interm_indices={idx!r}: use increasing, distinct stage indices "
                f"in {'0..3' if zero_based else '1..4'}")
        return stages

    def arch_record(self, spec: dict, f: dict, hf: dict, desc: str, mean, std,
                    loss_weights) -> dict[str, Any]:
        """The architecture record saved in checkpoints."""
        return {
            "network": self.name, "hf_config": hf, "num_classes": f["num_classes"],
            "num_select": f["num_select"], "mean": mean, "std": std, "backbone": f["backbone"],
            "backbone_scale": f["scale"], "backbone_desc": desc, "loss_weights": loss_weights,
            "train_backbone": bool(S.get(spec, "model.train_backbone", True)),
        }

    def postprocess_arch(self, spec):
        """``network``, ``num_classes``, ``num_select``, ``mean``, ``std`` of the spec."""
        mean, std = self.mean_std(spec)
        return {"network": self.name,
                "num_classes": spec_int(spec, "dataset.num_classes", self.default_num_classes),
                "num_select": spec_int(spec, "model.num_select", 300), "mean": mean, "std": std,
                "backbone_desc": "TensorRT engine", "loss_weights": None}

    def checkpoint_arch(self, ckpt_arch, spec_arch):
        """The checkpoint's architecture with the spec's ``model.num_select`` (capped at
        queries x classes)."""
        arch = dict(ckpt_arch)
        if spec_arch is not None:
            arch["num_select"] = min(spec_arch["num_select"],
                                     arch["hf_config"]["num_queries"] * arch["num_classes"])
        return arch

    def arch_diff(self, ckpt_arch, spec_arch):
        """Differences in queries, widths, layers, levels, backbone and backbone scale."""
        out = []
        for key, dotted in _ARCH_KEYS.items():
            a = ckpt_arch["hf_config"].get(key)
            b = spec_arch["hf_config"].get(key)
            if a != b:
                out.append(f"{dotted} (checkpoint {a}, spec {b})")
        if ckpt_arch.get("backbone") != spec_arch.get("backbone"):
            out.append(f"model.backbone (checkpoint {ckpt_arch.get('backbone')}, spec "
                       f"{spec_arch.get('backbone')})")
        if ckpt_arch.get("backbone_scale") != spec_arch.get("backbone_scale"):
            out.append(f"backbone scale (checkpoint {ckpt_arch.get('backbone_scale')}, "
                       f"TAO_WORKER_BACKBONE_SCALE {spec_arch.get('backbone_scale')})")
        return out

    def build_model(self, arch):
        """The transformers model of ``arch`` (randomly initialised)."""
        hf = dict(arch["hf_config"])
        return self.hf_model(_backbone_object(hf.pop("backbone_config")), hf)

    def hf_model(self, backbone, hf: dict):
        """The transformers model from the backbone config object and the other kwargs."""
        raise NotImplementedError

    # ------------------------------------------------------------------ data / step

    def flip_prob(self, spec: dict) -> float:
        """Horizontal flip probability of training images."""
        return float(S.get(spec, "dataset.augmentation.horizontal_flip_prob", 0.5))

    def distortion_prob(self, spec: dict) -> float:
        """Photometric distortion probability of training images."""
        return 0.0

    def forward(self, model, batch, device, with_labels):
        """``model(pixel_values=[, pixel_mask=][, labels=])``."""
        from tao_sdk.worker.tasks.detection.data import device_pixels

        kwargs: dict[str, Any] = {"pixel_values": device_pixels(batch, device,
                                                                self.channels_last)}
        if self.pass_mask:
            kwargs["pixel_mask"] = to_device(batch["pixel_mask"], device)
        if with_labels:
            kwargs["labels"] = [{k: to_device(v, device) for k, v in t.items()}
                                for t in batch["labels"]]
        return model(**kwargs)

    # ------------------------------------------------------------------ demo

    def demo_plan(self, quick):
        """``--quick``: 20 epochs over 48 images (240 steps; 8 epochs over 24 gave RT-DETR
        val_mAP50 ~0.06 and Deformable DETR ~0.002; 40 over 24 generalised worse: Deformable
        DETR held-out test_mAP50 0.50-0.62 against 0.74-0.79), validated on 16 images so that
        the metric is not decided by one or two boxes; full: 40 epochs over 64 images."""
        return ({"epochs": 20, "n_train": 48, "n_val": 16, "size": 128} if quick
                else super().demo_plan(quick))

    def demo_train_overrides(self, epochs, size):
        """The base settings, the backbone at the network's learning rate."""
        return {**super().demo_train_overrides(epochs, size), "train.optim.lr_backbone": 5e-4}

    def demo_untrained_overrides(self):
        """The base baseline, the backbone at 1e-12 too."""
        return {**super().demo_untrained_overrides(), "train.optim.lr_backbone": 1e-12}

    # ------------------------------------------------------------------ export

    def check_export(self, spec):
        """See :meth:`NetworkPlugin.check_export` (:func:`_export_settings`)."""
        _export_settings(spec)

    def onnx_export(self, model, arch, spec):
        """``inputs [batch, 3, H, W] -> pred_logits, pred_boxes`` (``export.*`` validated)."""
        import torch

        height, width, opset, batch = _export_settings(spec)
        names = ["pred_logits", "pred_boxes"]
        example = torch.rand(batch if batch > 0 else 1, 3, height, width,
                             generator=torch.Generator().manual_seed(1))
        check_batch = 2 if batch == -1 else batch
        info = {
            "input": {"name": "inputs", "shape": ["batch" if batch == -1 else batch, 3, height,
                                                    width],
                      "preprocessing": {"scale": "1/255", "mean": arch["mean"],
                                        "std": arch["std"], "channel_order": "RGB"}},
            "outputs": {"pred_logits": "[batch, num_queries, num_classes] (sigmoid -> scores)",
                        "pred_boxes": "[batch, num_queries, 4] normalised cx, cy, w, h"},
            "num_classes": arch["num_classes"], "num_select": arch["num_select"],
        }
        metadata = {"tao_worker.mean": _json(arch["mean"]), "tao_worker.std": _json(arch["std"]),
                    "tao_worker.scale": "1/255",
                    "tao_worker.num_classes": str(arch["num_classes"]),
                    "tao_worker.num_select": str(arch["num_select"])}
        check_inputs = parity_inputs(arch, check_batch, height, width)
        job = OnnxExport(
            module=_Wrapper.wrap(model), example_inputs=(example,), input_names=["inputs"],
            output_names=names,
            dynamic_axes={n: {0: "batch"} for n in ["inputs", *names]} if batch == -1 else None,
            metadata=metadata, info=info, describe=f"{height}x{width}")
        job.checker = lambda path, task_dir: self.onnx_parity(
            model, job, path, task_dir, check_inputs, opset)
        return job

    def onnx_parity(self, model, job: OnnxExport, path, task_dir, inputs, opset: int
                    ) -> dict[str, Any]:
        """Every output of onnxruntime vs PyTorch, position by position."""
        import numpy as np
        import onnxruntime as ort
        import torch

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got_logits, got_boxes = sess.run(None, {"inputs": inputs.numpy()})
        with torch.no_grad():
            ref_logits, ref_boxes = (t.numpy() for t in job.module(inputs))
        out: dict[str, Any] = {"checked_batch": int(inputs.shape[0])}
        out["logits"] = float(np.abs(got_logits - ref_logits).max())
        out["boxes"] = float(np.abs(got_boxes - ref_boxes).max())
        out["max_abs_diff"] = max(out["logits"], out["boxes"])
        return out


def _json(value) -> str:
    import json

    return json.dumps(value)


def _export_settings(spec: dict) -> tuple[int, int, int, int]:
    """``(height, width, opset, batch)`` of ``export.*``, validated (torch-free: the plan runs
    it too); raises :class:`SpecError` naming the key and the fix."""
    height = int(S.get(spec, "export.input_height", 640))
    width = int(S.get(spec, "export.input_width", 640))
    channels = int(S.get(spec, "export.input_channel", 3))
    opset = int(S.get(spec, "export.opset_version", 17))
    batch = int(S.get(spec, "export.batch_size", -1))
    if channels != 3:
        raise SpecError(f"export.input_channel={channels}: the model takes RGB input; set 3")
    if height < 32 or width < 32 or height % 32 or width % 32:
        raise SpecError(f"export.input_height/input_width={height}x{width} must be multiples"
                        " of 32 (the backbone stride), e.g. 640x640")
    if batch == 0 or batch < -1:
        raise SpecError(f"export.batch_size={batch}: use -1 (dynamic) or a positive batch "
                        "size")
    if opset < 16:
        raise SpecError(f"export.opset_version={opset}: the deformable attention needs "
                        "GridSample from opset 16; use 17")
    return height, width, opset, batch
