"""OneFormer (TAO network ``oneformer``) on :class:`transformers.OneFormerForUniversalSegmentation`.

The model is built from a config (Swin backbone as a ``SwinConfig`` object), so nothing is
downloaded. Every architecture-defining spec value goes into an ``arch`` dict that is saved in
the checkpoint, so evaluate / inference / export rebuild exactly the trained network.

Task text, offline, as TAO tokenises it: OneFormer conditions its queries on a task token,
the text ``"The task is semantic"`` tokenised and fed as float ids to an MLP
(``dataset.task_seq_len`` inputs). TAO 7.3.0 tokenises it with Hugging Face's CLIP tokenizer
(``openai/clip-vit-base-patch32``: CLIP's BPE, lower-cased, ``<|startoftext|>`` ... text ...
``<|endoftext|>``, padded with ``<|endoftext|>`` to ``task_seq_len``; a hub download). The
three task texts need five BPE words, so this module keeps their CLIP ids
(:data:`CLIP_TASK_IDS`, checked against CLIP's own BPE vocabulary by
``tools/tao_manifests.py --parity``) instead of the 49408-entry vocabulary: a TAO checkpoint's
task MLP gets the inputs it was trained on. Checkpoints of earlier worker versions recorded a
word vocabulary (``arch["task_vocab"]``) and keep their own ids (:func:`legacy_task_tokens`).
The text branch (``model.text_encoder.*``, TAO's query texts ``"a photo with a <class>"``) is
built with TAO's sizes but not run: this worker trains OneFormer's mask-classification losses
(class, mask BCE, dice, with deep supervision) for the semantic task, not the query-text
contrastive loss, so no class-name text is tokenised.

TAO's layout: the model has TAO 7.3.0's parameters and buffers one to one (:func:`_as_taos`,
:data:`TAO_KEYS`; checked against ``tools/manifests/oneformer/``); checkpoints are written in
TAO's keys and TAO's checkpoints load.

ONNX: input ``inputs`` ``[B, 3, H, W]`` (normalised image; the task token of ``export.task`` is
a constant of the graph), outputs ``pred_logits`` ``[B, Q, C + 1]`` and ``pred_masks``
``[B, Q, H/4, W/4]``; :func:`semantic_probs` turns them into per-class maps the same way for
PyTorch, ONNX Runtime and TensorRT outputs.
"""

from __future__ import annotations

from typing import Any, Sequence

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError
from tao_sdk.worker.plugin import NetworkPlugin, OnnxExport
from tao_sdk.worker.tasks.segmentation import TASK, check_size
from tao_sdk.worker.tasks.segmentation.geometry import test_size_overrides
from tao_sdk.worker.weights.keymap import Fused, KeyMap, Rule

__all__ = [
    "NAME",
    "CLIP_TASK_IDS",
    "TASK_VOCAB",
    "ONNX_INPUTS",
    "ONNX_OUTPUTS",
    "task_tokens",
    "legacy_task_tokens",
    "arch_task_tokens",
    "build_arch",
    "unhonoured_fields",
    "model_from_arch",
    "loss",
    "semantic_probs",
    "predict_labels",
    "param_groups",
    "export_module",
    "onnx_parity",
    "OneFormer",
    "PLUGIN",
    "TAO_KEYS",
]

NAME = "oneformer"
#: CLIP BPE ids (``openai/clip-vit-base-patch32``'s tokenizer, TAO 7.3.0's
#: ``model/tokenizer.py``) of TAO's task text ``"The task is <task>"``: the common prefix
#: ``<|startoftext|> the task is`` and each task word ("seman"+"tic", "pan"+"optic").
CLIP_TASK_IDS = {"prefix": (49406, 518, 10549, 533), "semantic": (29119, 1550),
                 "instance": (34572,), "panoptic": (1072, 24755)}
#: CLIP's ``<|endoftext|>``: ends the text and pads it (the tokenizer's ``pad_token``).
CLIP_END = 49407
#: Word vocabulary of worker checkpoints before CLIP ids (``arch["task_vocab"]``; ``<pad>`` = 0).
TASK_VOCAB = ("<pad>", "<start>", "<end>", "the", "task", "is", "semantic", "instance",
              "panoptic")
ONNX_INPUTS = ["inputs"]
ONNX_OUTPUTS = ["pred_logits", "pred_masks"]
#: Tasks this worker trains / runs (``inference.mode``, ``export.task``).
SUPPORTED_TASKS = ("semantic",)
_TAO_FEATURES = ["res2", "res3", "res4", "res5"]
#: Parameter-name prefix of the Swin backbone in the transformers model.
_BACKBONE_PREFIX = "model.pixel_level_module.encoder."


def task_tokens(task: str, seq_len: int) -> list[int]:
    """TAO's token ids of ``"The task is <task>"`` (CLIP BPE), ``seq_len`` long
    (``dataset.task_seq_len``): truncated keeping ``<|endoftext|>`` last, padded with it."""
    if task not in CLIP_TASK_IDS or task == "prefix":
        raise SpecError(f"task {task!r} is not one of TAO's tasks semantic / instance / panoptic")
    if seq_len < 2:
        raise SpecError(f"dataset.task_seq_len is {seq_len}; it must be at least 2 (TAO's "
                        "default is 77)")
    body = [*CLIP_TASK_IDS["prefix"][1:], *CLIP_TASK_IDS[task]][:seq_len - 2]
    ids = [CLIP_TASK_IDS["prefix"][0], *body, CLIP_END]
    return ids + [CLIP_END] * (seq_len - len(ids))


def legacy_task_tokens(task: str, seq_len: int, vocab: Sequence[str] = TASK_VOCAB) -> list[int]:
    """Token ids of ``"the task is <task>"`` in a worker checkpoint's own word vocabulary
    (``arch["task_vocab"]``, written before the worker used TAO's CLIP ids), padded with 0."""
    words = ["<start>", "the", "task", "is", task, "<end>"]
    index = {w: i for i, w in enumerate(vocab)}
    missing = [w for w in words if w not in index]
    if missing:
        raise SpecError(f"task {task!r} is not in the task vocabulary {list(vocab)[6:]}")
    if seq_len < len(words):
        raise SpecError(f"dataset.task_seq_len is {seq_len}; it must be at least {len(words)} "
                        "to hold the task text")
    ids = [index[w] for w in words]
    return ids + [0] * (seq_len - len(ids))


def arch_task_tokens(arch: dict[str, Any], task: str = "semantic") -> list[int]:
    """The task token ids the model of ``arch`` was trained with: TAO's CLIP ids, or the
    word vocabulary an older worker checkpoint recorded (``arch["task_vocab"]``)."""
    seq_len = arch["head"]["task_seq_len"]
    if "task_vocab" in arch:
        return legacy_task_tokens(task, seq_len, arch["task_vocab"])
    return task_tokens(task, seq_len)


def _size(value: Any, key: str) -> list[int]:
    """A ``[H, W]`` size spec value, each side a multiple of 32 (``size_divisibility``)."""
    return list(check_size(value, key))


def _swin(spec: dict[str, Any]) -> dict[str, Any]:
    """``SwinConfig`` kwargs from ``model.backbone.swin.*``."""
    name = S.get(spec, "model.backbone.name", "D2SwinTransformer")
    if name != "D2SwinTransformer":
        raise SpecError(f"model.backbone.name is {name!r}: this worker builds OneFormer with "
                        "the Swin backbone only; set model.backbone.name: D2SwinTransformer "
                        "or run the TAO container for D2DiNAT / RADIO")
    sw = S.get(spec, "model.backbone.swin", {}) or {}
    depths = [int(d) for d in sw.get("depths", [2, 2, 18, 2])]
    heads = [int(h) for h in sw.get("num_heads", [6, 12, 24, 48])]
    embed = int(sw.get("embed_dim", 192))
    if len(depths) != 4 or len(heads) != 4:
        raise SpecError("model.backbone.swin.depths and num_heads need 4 values (one per "
                        f"stage), found {depths} and {heads}")
    for i, h in enumerate(heads):
        if (embed * 2 ** i) % h:
            raise SpecError(f"model.backbone.swin.num_heads[{i}] = {h} does not divide the "
                            f"stage width {embed * 2 ** i} (embed_dim * 2^{i}); pick heads "
                            "that divide it")
    return {"embed_dim": embed, "depths": depths, "num_heads": heads,
            "window_size": int(sw.get("window_size", 12)),
            "mlp_ratio": float(sw.get("mlp_ratio", 4.0)),
            "qkv_bias": bool(sw.get("qkv_bias", True)),
            "hidden_dropout_prob": float(sw.get("drop_rate", 0.0)),
            "attention_probs_dropout_prob": float(sw.get("attn_drop_rate", 0.0)),
            "drop_path_rate": float(sw.get("drop_path_rate", 0.3)),
            "use_absolute_embeddings": bool(sw.get("ape", False)),
            "patch_size": int(sw.get("patch_size", 4)),
            "image_size": int(sw.get("pretrain_img_size", 384)),
            "out_features": ["stage1", "stage2", "stage3", "stage4"]}


def _head(spec: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """``OneFormerConfig`` kwargs (without backbone) from ``model.sem_seg_head`` /
    ``model.one_former`` / ``dataset.task_seq_len``."""
    head = S.get(spec, "model.sem_seg_head", {}) or {}
    of = S.get(spec, "model.one_former", {}) or {}
    hidden, nheads = int(of.get("hidden_dim", 256)), int(of.get("nheads", 8))
    if hidden % nheads:
        raise SpecError(f"model.one_former.hidden_dim ({hidden}) must be a multiple of "
                        f"model.one_former.nheads ({nheads})")
    if str(head.get("norm", "GN")) != "GN":
        raise SpecError(f"model.sem_seg_head.norm is {head.get('norm')!r}: only GN is "
                        "available; set it to GN")
    return {
        "num_labels": num_classes, "ignore_value": int(head.get("ignore_value", 255)),
        "conv_dim": int(head.get("convs_dim", 256)), "mask_dim": int(head.get("mask_dim", 256)),
        "encoder_layers": int(head.get("transformer_enc_layers", 6)),
        "common_stride": int(head.get("common_stride", 4)),
        "hidden_dim": hidden, "num_attention_heads": nheads,
        "dim_feedforward": int(of.get("dim_feedforward", 2048)),
        # TAO's build_pixel_decoder gives MSDeformAttnPixelDecoder a fixed 1024 (not
        # model.one_former.dim_feedforward, which only the transformer decoder reads)
        "encoder_feedforward_dim": _PIXEL_DECODER_FFN,
        "decoder_layers": int(of.get("dec_layers", 10)),
        "query_dec_layers": int(of.get("class_dec_layers", 2)),
        "pre_norm": bool(of.get("pre_norm", False)),
        "enforce_input_proj": bool(of.get("enforce_input_proj", False)),
        "num_queries": int(of.get("num_object_queries", 150)),
        "train_num_points": int(of.get("train_num_points", 12544)),
        "oversample_ratio": float(of.get("oversample_ratio", 3.0)),
        "importance_sample_ratio": float(of.get("importance_sample_ratio", 0.75)),
        "mask_weight": float(of.get("mask_weight", 5.0)),
        "dice_weight": float(of.get("dice_weight", 5.0)),
        "class_weight": float(of.get("class_weight", 2.0)),
        "no_object_weight": float(of.get("no_object_weight", 0.1)),
        "use_auxiliary_loss": bool(of.get("deep_supervision", True)),
        "dropout": float(of.get("dropout", 0.1)),
        "use_task_norm": bool(of.get("use_task_norm", True)),
        "task_seq_len": int(S.get(spec, "dataset.task_seq_len", 77)),
        "contrastive_temperature": float(of.get("contrastive_temperature", 0.07)),
        **_text_encoder(spec),
        "is_training": False,
    }


def _text_encoder(spec: dict[str, Any]) -> dict[str, Any]:
    """``OneFormerConfig`` text-encoder kwargs from ``model.text_encoder.*`` (TAO builds the
    text branch when ``context_length`` > 0; so does :func:`model_from_arch`)."""
    te = S.get(spec, "model.text_encoder", {}) or {}
    out = {"text_encoder_context_length": int(te.get("context_length", 77)),
           "text_encoder_width": int(te.get("width", 256)),
           "text_encoder_num_layers": int(te.get("num_layers", 6)),
           "text_encoder_vocab_size": int(te.get("vocab_size", 49408)),
           "text_encoder_proj_layers": int(te.get("proj_num_layers", 2)),
           "text_encoder_n_ctx": int(te.get("n_ctx", 16))}
    if out["text_encoder_context_length"] > 0 and out["text_encoder_width"] % 64:
        raise SpecError(f"model.text_encoder.width is {out['text_encoder_width']}: it must be "
                        "a multiple of 64 (one attention head per 64 channels); use 64 or 256")
    return out


#: the feed-forward width of the pixel decoder's deformable encoder layers: TAO 7.3.0
#: hard-codes ``transformer_dim_feedforward=1024`` for ``MSDeformAttnPixelDecoder``
_PIXEL_DECODER_FFN = 1024


def build_arch(spec: dict[str, Any]) -> dict[str, Any]:
    """The architecture dict of a new OneFormer for ``spec`` (saved in every checkpoint).

    ``model.sem_seg_head.num_classes`` classes; the task adds ``class_names`` / ``colors``
    from the label map. Raises :class:`SpecError` naming the key for a value this
    implementation cannot build.
    """
    num_classes = int(S.get(spec, "model.sem_seg_head.num_classes", 133))
    if num_classes < 1:
        raise SpecError(f"model.sem_seg_head.num_classes={num_classes} must be >= 1")
    size = _size(S.get(spec, "dataset.augmentation.train_crop_size", [1024, 1024]),
                 "dataset.augmentation.train_crop_size")
    swin = _swin(spec)
    return {
        "network": NAME, "num_classes": num_classes, "input_size": size,
        "backbone_desc": f"Swin (embed_dim {swin['embed_dim']}, depths {swin['depths']})",
        "pixel_mean": [float(v) for v in S.get(spec, "dataset.pixel_mean",
                                               [123.675, 116.28, 103.53])],
        "pixel_std": [float(v) for v in S.get(spec, "dataset.pixel_std",
                                              [58.395, 57.12, 57.375])],
        "task_tokenizer": "clip", "swin": swin, "head": _head(spec, num_classes),
    }


def _differs(spec: dict[str, Any], key: str, expected: Any) -> bool:
    value = S.get(spec, key)
    return value is not None and value != expected


def unhonoured_fields(spec: dict[str, Any], action: str = "train") -> list[str]:
    """Spec fields this implementation reads but does not apply, each with the reason.

    Reported once at the start of a job (``status.json`` message and log).
    """
    out = []
    probs = S.get(spec, "dataset.task_prob_train", {}) or {}
    if action == "train" and any(float(probs.get(k, 0)) > 0 for k in ("instance", "panoptic")):
        out.append("dataset.task_prob_train: only the semantic task is trained (instance / "
                   "panoptic task sampling is not implemented)")
    if _differs(spec, "model.one_former.contrastive_weight", 0.0):
        out.append("model.one_former.contrastive_weight / contrastive_temperature and "
                   "model.text_encoder.*: the query-text contrastive branch is not built")
    checks = [
        ("model.sem_seg_head.in_features", _TAO_FEATURES[1:],
         "the pixel decoder always reads res3-res5 (+ res2 for the mask features)"),
        ("model.sem_seg_head.deformable_transformer_encoder_in_features", _TAO_FEATURES[1:],
         "the deformable encoder always reads res3-res5"),
        ("model.one_former.num_feature_levels", 3, "always 3 levels"),
        ("model.one_former.enc_layers", 0, "no extra transformer encoder"),
        ("model.backbone.freeze_at", 0, "no backbone stage is frozen"),
        ("model.precise_msda", False, "deformable attention runs in PyTorch"),
        ("dataset.cutmix_prob", 0.0, "no CutMix"),
    ]
    out += [f"{k}: {why}" for k, v, why in checks if _differs(spec, k, v)]
    if action == "train":
        out.append("dataset.augmentation.train_min_size / train_max_size, dataset.min_scale / "
                   "max_scale: training images are resized to "
                   "dataset.augmentation.train_crop_size (no multi-scale jitter or crop; random "
                   "horizontal flip only); validation runs at train_crop_size, not at TAO's "
                   "test geometry (dataset.image_size, test_min_size / test_max_size), which "
                   "evaluate follows")
    return out


def model_from_arch(arch: dict[str, Any]):
    """Build the (randomly initialised) ``OneFormerForUniversalSegmentation`` of ``arch``."""
    from transformers import OneFormerConfig, OneFormerForUniversalSegmentation, SwinConfig

    config = OneFormerConfig(backbone_config=SwinConfig(**arch["swin"]), **arch["head"])
    model = OneFormerForUniversalSegmentation(config)
    import torch

    _as_taos(model, config)
    model.register_buffer("task_semantic", torch.tensor(
        arch_task_tokens(arch),
        dtype=torch.float32), persistent=False)
    return model


#: Outputs of TAO's Swin classifier head (``backbone.head``; built, never used by OneFormer).
TAO_SWIN_HEAD = 1000


def _as_taos(model, config) -> None:
    """Give the transformers model the parameters and buffers TAO's OneFormer has, so that
    TAO's checkpoints map one to one (:data:`TAO_KEYS`): the text branch (text encoder,
    projector, prompt context; built when ``text_encoder_context_length`` > 0 and not run,
    as ``is_training`` stays off), the Swin's unused ImageNet head instead of its unused final
    LayerNorm, persistent ``[window², window²]`` relative position indices, a float32
    contrastive logit scale."""
    import torch
    from torch import nn
    from transformers.models.oneformer.modeling_oneformer import OneFormerTextMapper

    if config.text_encoder_context_length > 0:
        model.model.text_mapper = OneFormerTextMapper(config)
        # built after the model's own initialisation: transformers leaves this parameter as
        # torch.empty memory (sometimes NaN); TAO draws it from N(0, 0.01)
        nn.init.normal_(model.model.text_mapper.text_encoder.positional_embedding, std=0.01)
    encoder = model.model.pixel_level_module.encoder
    encoder.swin.layernorm = nn.Identity()  # its output is not used by the backbone
    encoder.head = nn.Linear(encoder.num_features[-1], TAO_SWIN_HEAD)
    for module in encoder.modules():
        if hasattr(module, "relative_position_index"):
            del module.relative_position_index
            module.register_buffer("relative_position_index",
                                   module._create_relative_position_index())
    scale = getattr(model.criterion, "logit_scale", None)
    if scale is not None:
        model.criterion.logit_scale = nn.Parameter(scale.detach().to(torch.float32))


def _task_inputs(model, pixel_values):
    """The semantic task token per image, ``[B, task_seq_len]``; made by broadcasting against
    ``pixel_values`` so that an exported graph keeps a dynamic batch dimension."""
    return model.task_semantic[None] + pixel_values[:, :1, 0, 0] * 0


def loss(model, pixel_values, labels, ignore_value: int):
    """Total OneFormer loss for a batch (``labels`` ``[B, H, W]`` class maps) and its parts."""
    from tao_sdk.worker.tasks.segmentation import mask_targets

    masks, classes = mask_targets(labels, ignore_value)
    out = model(pixel_values=pixel_values, task_inputs=_task_inputs(model, pixel_values),
                output_auxiliary_logits=True)
    parts = model.get_loss_dict(
        masks_queries_logits=out.masks_queries_logits,
        class_queries_logits=out.class_queries_logits,
        contrastive_queries_logits=out.transformer_decoder_contrastive_queries,
        mask_labels=masks, class_labels=classes, text_queries=None,
        auxiliary_predictions=out.auxiliary_predictions if model.config.use_auxiliary_loss
        else None, calculate_contrastive_loss=False)
    main = {k: float(v.detach()) for k, v in parts.items() if not k.rsplit("_", 1)[-1].isdigit()}
    return model.get_loss(parts), main


def semantic_probs(pred_logits, pred_masks):
    """``[B, C, h, w]`` semantic scores: class probabilities (without no-object) weighted by
    mask probabilities, summed over queries (OneFormer's semantic inference)."""
    import torch

    probs = torch.softmax(pred_logits, dim=-1)[..., :-1]
    return torch.einsum("bqc,bqhw->bchw", probs, torch.sigmoid(pred_masks))


def forward(model, pixel_values):
    """``(pred_logits, pred_masks)`` of ``model`` (the transformers model or a TensorRT
    adapter of the task) for normalised images."""
    if not hasattr(model, "config"):  # TensorRT adapter: the task token is in the engine
        return model(pixel_values)
    out = model(pixel_values=pixel_values, task_inputs=_task_inputs(model, pixel_values),
                output_auxiliary_logits=False)
    return out.class_queries_logits, out.masks_queries_logits


def predict_labels(pred_logits, pred_masks, sizes: Sequence[tuple[int, int]]):
    """Per image the ``[H, W]`` int64 numpy class map at its original ``(H, W)`` size."""
    import torch

    scores = semantic_probs(torch.as_tensor(pred_logits), torch.as_tensor(pred_masks))
    out = []
    for s, (h, w) in zip(scores, sizes):
        up = torch.nn.functional.interpolate(s[None], size=(h, w), mode="bilinear",
                                             align_corners=False)
        out.append(up[0].argmax(0).cpu().numpy().astype("int64"))
    return out


def inference_labels(pred_logits, pred_masks, padded: tuple[int, int], crop: tuple[int, int],
                     size: tuple[int, int]):
    """TAO's semantic inference post-processing (its ``predict_step`` and
    ``on_predict_batch_end``): per image, the mask logits bilinear to the ``padded`` network
    input (H, W), cropped to the test-resized image ``crop`` (H, W), bilinear to ``size`` (the
    image after ``inference.image_size``), then class probabilities (no-object dropped) times
    mask probabilities summed over queries, argmax: ``[H, W]`` int64 numpy maps."""
    import torch
    from torch.nn.functional import interpolate

    masks = interpolate(torch.as_tensor(pred_masks), size=tuple(padded), mode="bilinear",
                        align_corners=False)[..., :crop[0], :crop[1]]
    masks = interpolate(masks, size=tuple(size), mode="bilinear", align_corners=False)
    scores = semantic_probs(torch.as_tensor(pred_logits), masks)
    return [s.argmax(0).cpu().numpy().astype("int64") for s in scores]


def param_groups(model, lr: float, backbone_multiplier: float, weight_decay: float):
    """AdamW parameter groups: backbone at ``lr * backbone_multiplier`` (TAO's
    ``train.optim.backbone_multiplier``), the rest at ``lr``; no decay on norms and biases."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (name.startswith(_BACKBONE_PREFIX), p.ndim <= 1)
        groups.setdefault(key, []).append(p)
    return [{"params": ps, "lr": lr * (backbone_multiplier if bb else 1.0),
             "weight_decay": 0.0 if no_decay else weight_decay}
            for (bb, no_decay), ps in groups.items()]


def export_module(model, task: str = "semantic"):
    """A ``torch.nn.Module`` ``inputs -> (pred_logits, pred_masks)`` for ONNX export, with the
    token of ``task`` (``export.task``) baked in."""
    import torch

    if task not in SUPPORTED_TASKS:
        raise SpecError(f"export.task is {task!r}: this worker exports the semantic task; set "
                        "export.task: semantic")

    class OneFormerOnnx(torch.nn.Module):
        """Export wrapper: the task token is a constant of the graph."""

        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, inputs):
            return forward(self.inner, inputs)

    return OneFormerOnnx(model).eval()


# --------------------------------------------------------------------------- TAO keys

_SWIN, _BLK = "model.backbone.", "model.backbone.layers.{l}.blocks.{b}."
_OUR_SWIN = "model.pixel_level_module.encoder."
_OUR_BLK = _OUR_SWIN + "swin.encoder.layers.{l}.blocks.{b}."
_PIX, _OUR_PIX = "model.sem_seg_head.pixel_decoder.", "model.pixel_level_module.decoder."
_ENC, _OUR_ENC = _PIX + "transformer.encoder.layers.{l}.", _OUR_PIX + "encoder.layers.{l}."
_PRED, _OUR_PRED = "model.sem_seg_head.predictor.", "model.transformer_module."
_DEC = _OUR_PRED + "decoder."
_TXT = "model.text_encoder.transformer.resblocks.{l}."
_OUR_TXT = "model.text_mapper.text_encoder.transformer.layers.{l}."


def _renames(tao: str, ours: str, pairs: list[tuple[str, str]]) -> list[Rule]:
    return [Rule(tao + a, ours + b) for a, b in pairs]


#: TAO 7.3.0 OneFormer checkpoint keys (SHI-Labs' detectron2 names under the Lightning
#: module's ``model.`` / ``criterion.``) <-> ``OneFormerForUniversalSegmentation`` as
#: :func:`model_from_arch` builds it (q/k/v split in the Swin and the masked decoder's
#: self-attention; detectron2 ``Conv2d`` + norm as ``Sequential`` pairs).
TAO_KEYS = KeyMap([
    Rule(_SWIN + "patch_embed.proj.{p}", _OUR_SWIN + "swin.embeddings.patch_embeddings."
         "projection.{p}"),
    Rule(_SWIN + "patch_embed.norm.{p}", _OUR_SWIN + "swin.embeddings.norm.{p}"),
    Fused(_BLK + "attn.qkv.{p}", _OUR_BLK + "attention.{part}_proj.{p}"),
    *_renames(_BLK, _OUR_BLK, [
        ("norm1.{p}", "layernorm_before.{p}"), ("norm2.{p}", "layernorm_after.{p}"),
        ("attn.proj.{p}", "attention.o_proj.{p}"), ("mlp.{rest*}", "mlp.{rest*}"),
        ("attn.relative_position_{t}", "attention.relative_position_bias."
                                       "relative_position_{t}")]),
    Rule(_SWIN + "layers.{l}.downsample.{rest*}",
         _OUR_SWIN + "swin.encoder.layers.{l}.downsample.{rest*}"),
    Rule(_SWIN + "norm{i}.{p}", _OUR_SWIN + "hidden_states_norms.stage{i}.{p}", {"i": 1}),
    Rule(_SWIN + "head.{p}", _OUR_SWIN + "head.{p}"),
    *_renames(_PIX, _OUR_PIX, [
        ("input_proj.{rest*}", "input_projections.{rest*}"),
        ("transformer.level_embed", "level_embed"),
        ("mask_features.{p}", "mask_projection.{p}"),
        *((f"{conv}_{{i}}.weight", f"{conv}_{{i}}.0.weight") for conv in ("adapter", "layer")),
        *((f"{conv}_{{i}}.norm.{{p}}", f"{conv}_{{i}}.1.{{p}}") for conv in ("adapter", "layer"))]),
    *_renames(_ENC, _OUR_ENC, [
        ("self_attn.{rest*}", "self_attn.{rest*}"), ("norm1.{p}", "self_attn_layer_norm.{p}"),
        ("linear1.{p}", "fc1.{p}"), ("linear2.{p}", "fc2.{p}"),
        ("norm2.{p}", "final_layer_norm.{p}")]),
    Fused(_PRED + "transformer_self_attention_layers.{l}.self_attn.in_proj_{p}",
          _DEC + "layers.{l}.self_attn.self_attn.{part}_proj.{p}"),
    *_renames(_PRED, _OUR_PRED, [
        ("transformer_self_attention_layers.{l}.{rest*}",
         "decoder.layers.{l}.self_attn.{rest*}"),
        ("transformer_cross_attention_layers.{l}.{rest*}",
         "decoder.layers.{l}.cross_attn.{rest*}"),
        ("transformer_ffn_layers.{l}.{rest*}", "decoder.layers.{l}.ffn.{rest*}"),
        ("class_transformer.{rest*}", "decoder.query_transformer.{rest*}"),
        ("decoder_norm.{p}", "decoder.decoder_norm.{p}"),
        ("query_embed.weight", "queries_embedder.weight"),
        ("level_embed.weight", "level_embed.weight"),
        ("class_input_proj.{p}", "decoder.query_input_projection.{p}"),
        ("class_embed.{p}", "decoder.class_embed.{p}"),
        ("mask_embed.layers.{i}.{p}", "decoder.mask_embed.layers.{i}.0.{p}")]),
    Rule("model.task_mlp.layers.{i}.{p}", "model.task_encoder.task_mlp.layers.{i}.0.{p}"),
    *_renames(_TXT, _OUR_TXT, [
        ("attn.{rest*}", "self_attn.{rest*}"), ("ln_1.{p}", "layer_norm1.{p}"),
        ("ln_2.{p}", "layer_norm2.{p}"), ("mlp.c_fc.{p}", "mlp.fc1.{p}"),
        ("mlp.c_proj.{p}", "mlp.fc2.{p}")]),
    Rule("model.text_encoder.{rest*}", "model.text_mapper.text_encoder.{rest*}"),
    Rule("model.text_projector.layers.{i}.{p}",
         "model.text_mapper.text_projector.layers.{i}.0.{p}"),
    Rule("model.prompt_ctx.weight", "model.text_mapper.prompt_ctx.weight"),
    Rule("criterion.{p}", "criterion.{p}"),
], tao_prefix="", worker_prefix="", bn_counters=False, tao_backbone=_SWIN)


# --------------------------------------------------------------------------- plugin

def _poly_factor(spec: dict[str, Any], steps_per_epoch: int):
    """Learning-rate multiplier per global step for ``train.optim.lr_scheduler``:
    ``Warmuppoly`` (linear warm-up from ``warmup_factor`` over ``warmup_iters`` steps, then
    ``(1 - step / max_iter) ** 0.9``) or ``MultiStep`` (``gamma`` at each epoch of
    ``milestones``, after the same warm-up)."""
    optim = S.get(spec, "train.optim", {}) or {}
    kind = str(optim.get("lr_scheduler", "Warmuppoly"))
    warm_iters = int(optim.get("warmup_iters", 1000))
    warm_factor = float(optim.get("warmup_factor", 0.001))
    max_iter = int(optim.get("max_iter", 368750))
    gamma = float(optim.get("gamma", 0.1))
    milestones = sorted(int(m) for m in optim.get("milestones", [88, 96]))
    if kind not in ("Warmuppoly", "MultiStep"):
        raise SpecError(f"train.optim.lr_scheduler={kind!r}: use Warmuppoly or MultiStep")
    if max_iter < 1:
        raise SpecError(f"train.optim.max_iter={max_iter} must be >= 1")

    def factor(step: int) -> float:
        """Multiplier at global ``step``."""
        warm = 1.0
        if step < warm_iters:
            alpha = step / max(1, warm_iters)
            warm = warm_factor * (1 - alpha) + alpha
        if kind == "Warmuppoly":
            return warm * max(0.0, 1 - min(step, max_iter) / max_iter) ** 0.9
        epoch = step // max(1, steps_per_epoch)
        return warm * gamma ** sum(1 for m in milestones if epoch >= m)

    return factor


class OneFormer(NetworkPlugin):
    """OneFormer for semantic segmentation (see the module docstring)."""

    name = NAME
    display = "OneFormer"
    task = TASK
    checkpoint_prefix = "oneformer_"
    step_in_checkpoint_name = True
    backbone_prefix = _BACKBONE_PREFIX.rstrip(".")
    pretrained_model_key = "train.pretrained_model"
    pretrained_backbone_key = "train.pretrained_backbone"
    tao_keys = TAO_KEYS
    class_count_key = "model.transformer_module.decoder.class_embed.bias"
    trt_outputs = tuple(ONNX_OUTPUTS)
    silent_fields = frozenset({
        "train.optim.momentum", "train.optim.type", "model.export", "dataset.pin_memory",
        "export.on_cpu", "export.gpu_id", "export.verbose", "gen_trt_engine.verbose",
        "gen_trt_engine.gpu_id", "train.optim.monitor_name"})
    unhonoured_table = {
        "train.clip_gradients.enabled": (False,),
        "train.accumulate_grad_batches": (1,),
        "train.iters_per_epoch": (),
        "train.val_check_interval": (1.0, 1),
        "train.checkpointer.monitor": (),
        "model.test.instance_on": (False,),
        "model.test.panoptic_on": (False,),
        "model.test.detection_on": (False,),
        "model.backbone.swin.use_checkpoint": (False,),
        "model.backbone.swin.qk_scale": (),
        "gen_trt_engine.tensorrt.layers_precision": ([],),
    }

    def build_arch(self, spec):
        """See :func:`build_arch`."""
        return build_arch(spec)

    def build_model(self, arch):
        """See :func:`model_from_arch`."""
        return model_from_arch(arch)

    def postprocess_arch(self, spec):
        """What a TensorRT job needs: classes and normalisation from the spec."""
        return {"network": NAME,
                "num_classes": int(S.get(spec, "model.sem_seg_head.num_classes", 133)),
                "pixel_mean": [float(v) for v in S.get(
                    spec, "dataset.pixel_mean", [123.675, 116.28, 103.53])],
                "pixel_std": [float(v) for v in S.get(
                    spec, "dataset.pixel_std", [58.395, 57.12, 57.375])],
                "ignore_value": int(S.get(spec, "model.sem_seg_head.ignore_value", 255))}

    def arch_diff(self, ckpt_arch, spec_arch):
        """Differences of the Swin / head settings and the input size."""
        out = []
        for part in ("swin", "head"):
            for key, value in ckpt_arch[part].items():
                if spec_arch[part].get(key) != value:
                    out.append(f"{part}.{key} (checkpoint {value}, spec "
                               f"{spec_arch[part].get(key)})")
        return out

    def describe(self, arch):
        """Model line of the start message."""
        head = arch.get("head", {})
        return (f"model: OneFormer (semantic), backbone {arch.get('backbone_desc', '-')}, "
                f"{head.get('num_queries')} queries, {head.get('decoder_layers')} decoder "
                f"layers, {arch['num_classes']} classes, input {arch.get('input_size')}")

    def is_backbone_param(self, name):
        """Parameters of the Swin backbone."""
        return name.startswith(_BACKBONE_PREFIX)

    def param_groups(self, model, spec, lr):
        """``train.optim.backbone_multiplier`` for the backbone; no decay on norms."""
        return param_groups(model, lr,
                            float(S.get(spec, "train.optim.backbone_multiplier", 0.1)),
                            float(S.get(spec, "train.optim.weight_decay", 0.05)))

    def lr_factor(self, spec, steps_per_epoch):
        """See :func:`_poly_factor`."""
        return _poly_factor(spec, steps_per_epoch)

    def ddp_find_unused_parameters(self, arch):
        """The contrastive temperature of the criterion is never used."""
        return True

    def forward(self, model, batch, device, with_labels):
        """Training: ``SimpleNamespace(loss, parts)``; else ``(pred_logits, pred_masks)``."""
        from types import SimpleNamespace

        pixels = batch["pixel_values"].to(device)
        if with_labels:
            value, parts = loss(model, pixels, batch["labels"].to(device),
                                _ignore(model))
            return SimpleNamespace(loss=value, parts=parts)
        return forward(model, pixels)

    def predict_labels(self, pred_logits, pred_masks, sizes):
        """See :func:`predict_labels`."""
        return predict_labels(pred_logits, pred_masks, sizes)

    def inference_labels(self, pred_logits, pred_masks, padded, crop, size):
        """See :func:`inference_labels`."""
        return inference_labels(pred_logits, pred_masks, padded, crop, size)

    def onnx_export(self, model, arch, spec):
        """``inputs [batch, 3, H, W] -> pred_logits, pred_masks`` (``export.*``)."""
        return _onnx_job(model, arch, spec)

    def check_export(self, spec):
        """See :meth:`NetworkPlugin.check_export` (:func:`_export_settings`)."""
        _export_settings(spec)

    def tiny_overrides(self, size):
        """A ~1.8M-parameter OneFormer at ``size`` px (1-block Swin stages, a 1-layer text encoder;
        evaluate's test resize at ``size`` px too)."""
        return {
            "dataset.augmentation.train_crop_size": [size, size], **test_size_overrides(size),
            "model.sem_seg_head.convs_dim": 64, "model.sem_seg_head.mask_dim": 64,
            "model.sem_seg_head.transformer_enc_layers": 1,
            "model.one_former.hidden_dim": 64, "model.one_former.nheads": 4,
            "model.one_former.dim_feedforward": 128, "model.one_former.dec_layers": 2,
            "model.one_former.class_dec_layers": 1,
            "model.one_former.num_object_queries": 8,
            "model.one_former.train_num_points": 1024,
            "model.one_former.contrastive_weight": 0.0,
            "model.text_encoder.context_length": 8, "model.text_encoder.width": 64,
            "model.text_encoder.num_layers": 1, "model.text_encoder.vocab_size": 64,
            "model.text_encoder.n_ctx": 2,
            "model.backbone.swin.embed_dim": 32, "model.backbone.swin.depths": [1, 1, 1, 1],
            "model.backbone.swin.num_heads": [1, 2, 4, 8],
            "model.backbone.swin.window_size": 4, "model.backbone.swin.drop_path_rate": 0.0,
            "dataset.task_seq_len": 8,
            "dataset.task_prob_train": {"semantic": 1.0, "instance": 0.0, "panoptic": 0.0},
            "train.optim.warmup_iters": 10, "train.optim.backbone_multiplier": 1.0,
            "train.optim.weight_decay": 0.0,
        }

    def demo_train_overrides(self, epochs, size):
        """The base settings with OneFormer's batch-size key, on one device (the template
        asks for 8 GPUs); validation and a checkpoint every 2 epochs (a validation of the 8-16
        demo images costs a fraction of an epoch, and the best checkpoint is then picked from
        more candidates: the mIoU of this tiny model swings between epochs)."""
        every = max(1, min(2, epochs // 4))
        out = {**super().demo_train_overrides(epochs, size), "dataset.train.batch_size": 4,
               "train.optim.lr": 1e-3, "train.num_gpus": 1, "train.gpu_ids": [0],
               "train.validation_interval": every, "train.checkpoint_interval": every}
        out.pop("dataset.batch_size", None)
        return out

    def demo_plan(self, quick):
        """64 px images (the mask head works at 1/4 of the input): more steps in the same
        time than the detectors' 128 px. ``--quick``: 16 epochs of 8 steps; the whole demo
        (five jobs, about 8 s of each importing torch / transformers) measured 62 s of CPU
        time with one torch thread."""
        return ({"epochs": 16, "n_train": 32, "n_val": 8, "size": 64} if quick
                else {"epochs": 40, "n_train": 64, "n_val": 16, "size": 64})

    def unhonoured(self, action, spec):
        """The table plus :func:`unhonoured_fields` (with reasons)."""
        out = super().unhonoured(action, spec)
        if action in ("train", "evaluate", "inference"):
            out += unhonoured_fields(spec, action)
        return out


def _ignore(model) -> int:
    inner = getattr(model, "module", model)
    return int(inner.config.ignore_value)


def _export_settings(spec: dict) -> tuple[int, int, int]:
    """``(height, width, batch)`` of ``export.*``, validated (torch-free: the plan runs it too);
    raises :class:`SpecError` naming the key and the fix."""
    height = int(S.get(spec, "export.input_height", 640))
    width = int(S.get(spec, "export.input_width", 640))
    batch = int(S.get(spec, "export.batch_size", -1))
    if int(S.get(spec, "export.input_channel", 3)) != 3:
        raise SpecError("export.input_channel must be 3: the model takes RGB input")
    _size([height, width], "export.input_height/input_width")
    if batch == 0 or batch < -1:
        raise SpecError(f"export.batch_size={batch}: use -1 (dynamic) or a positive batch size")
    if int(S.get(spec, "export.opset_version", 17)) < 16:
        raise SpecError("export.opset_version must be >= 16 (deformable attention needs "
                        "GridSample); use 17")
    return height, width, batch


def _onnx_job(model, arch, spec):
    """The :class:`OnnxExport` of ``model`` for the ``export`` section of ``spec``."""
    import torch

    height, width, batch = _export_settings(spec)
    module = export_module(model, str(S.get(spec, "export.task", "semantic")))
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(batch if batch > 0 else 1, 3, height, width, generator=gen)
    check = torch.randn(2 if batch == -1 else batch, 3, height, width, generator=gen)
    names = ["inputs", *ONNX_OUTPUTS]
    info = {"input": {"name": "inputs", "shape": ["batch" if batch == -1 else batch, 3, height,
                                                    width],
                      "preprocessing": {"mean": arch["pixel_mean"], "std": arch["pixel_std"],
                                        "scale": "0..255 pixels", "channel_order": "RGB"}},
            "outputs": {"pred_logits": "[batch, queries, num_classes + 1] class logits (last = "
                                       "no object)",
                        "pred_masks": "[batch, queries, H/4, W/4] mask logits"},
            "task": "semantic", "num_classes": arch["num_classes"]}
    job = OnnxExport(module=module, example_inputs=(example,), input_names=["inputs"],
                  output_names=list(ONNX_OUTPUTS),
                  dynamic_axes={n: {0: "batch"} for n in names} if batch == -1 else None,
                  metadata={"tao_worker.task": "semantic",
                            "tao_worker.num_classes": str(arch["num_classes"]),
                            "tao_worker.mean": str(arch["pixel_mean"]),
                            "tao_worker.std": str(arch["pixel_std"])},
                  info=info, describe=f"{height}x{width}")
    job.checker = lambda path, _task_dir: onnx_parity(module, path, check)
    return job


def onnx_parity(module, path, inputs) -> dict[str, Any]:
    """onnxruntime vs PyTorch on ``inputs``: max abs difference of each output and of the
    semantic scores, and the share of pixels whose predicted class differs."""
    import numpy as np
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"inputs": inputs.numpy()})
    with torch.no_grad():
        ref = [t.numpy() for t in module(inputs)]
    out: dict[str, Any] = {"checked_batch": int(inputs.shape[0])}
    for name, g, r in zip(ONNX_OUTPUTS, got, ref):
        out[name] = float(np.abs(g - r).max())
    sem_got = semantic_probs(torch.from_numpy(got[0]), torch.from_numpy(got[1]))
    sem_ref = semantic_probs(torch.from_numpy(ref[0]), torch.from_numpy(ref[1]))
    out["semantic_scores"] = float((sem_got - sem_ref).abs().max())
    out["label_mismatch"] = float((sem_got.argmax(1) != sem_ref.argmax(1)).float().mean())
    out["max_abs_diff"] = max(out[n] for n in (*ONNX_OUTPUTS, "semantic_scores"))
    return out


#: The plugin instance the registry loads.
PLUGIN = OneFormer()
