"""Deformable DETR: :class:`transformers.DeformableDetrForObjectDetection` from the TAO spec.

TAO's torchvision ResNet-50 (``ResNetConfig``; frozen BatchNorm) or TAO's GC-ViTs
(``gc_vit_xxtiny`` .. ``gc_vit_large_384``, :mod:`tao_sdk.worker.networks.gcvit`), pure-PyTorch multi-scale
deformable attention on CPU. ``model.return_interm_indices`` as in TAO: 0-based ResNet stages
(``[1, 2, 3]`` = layer2..layer4 / GC-ViT stages 1..3, strides 8/16/32) and ``4`` for one more level made from the
last stage by a strided convolution (TAO's default ``[1, 2, 3, 4]``);
``model.num_feature_levels`` equals their number. :data:`TAO_KEYS` maps TAO's checkpoint keys
(``model.model.backbone.0.body.*``, ``transformer.*``...) onto the transformers model. Resize: aspect-preserving, shorter side to a random entry of
``dataset.augmentation.scales`` (training) or ``test_random_resize`` (evaluation), longer side
capped at ``random_resize_max_size``; ``horizontal_flip_prob``; padded batches carry a
``pixel_mask``. Loss: TAO's weighting (``cls_loss_coef`` on the classification term, also for
the auxiliary decoder layers). Checkpoints ``model_epoch_XXX_step_YYYYY.pth``, link
``dd_model_latest.pth``. Lightning-managed in TAO: spawned ranks (the skill's ``launch``).
"""

from __future__ import annotations

from tao_sdk.worker import spec as S
from tao_sdk.worker.errors import SpecError
from tao_sdk.worker.networks._detr import DetrPlugin, backbone_config, transformer_sizes
from tao_sdk.worker.networks._tao_keys import attention_rules, gcvit_rules, resnet_rules
from tao_sdk.worker.networks.backbones import GCVITS, gcvit_config
from tao_sdk.worker.plugin import spec_float, spec_int
from tao_sdk.worker.weights.keymap import KeyMap, Rule

__all__ = ["DeformableDetr", "PLUGIN", "TAO_KEYS"]

_ENC = "transformer.encoder.layers.{l}."
#: TAO 7.3.0 Deformable DETR checkpoint keys <-> ``DeformableDetrForObjectDetection``. TAO's
#: decoder ``norm1`` follows cross-attention and ``norm2`` self-attention (as the original
#: Deformable-DETR); the class / box heads sit at the top of the transformers model.
TAO_KEYS = KeyMap([
    *resnet_rules("backbone.0.body.", "model.backbone.model."),
    *gcvit_rules("backbone.0.body.", "model.backbone.model."),
    Rule("transformer.level_embed", "model.level_embed"),
    Rule(_ENC + "self_attn.{rest*}", "model.encoder.layers.{l}.self_attn.{rest*}"),
    Rule(_ENC + "norm1.{p}", "model.encoder.layers.{l}.self_attn_layer_norm.{p}"),
    Rule(_ENC + "linear1.{p}", "model.encoder.layers.{l}.mlp.fc1.{p}"),
    Rule(_ENC + "linear2.{p}", "model.encoder.layers.{l}.mlp.fc2.{p}"),
    Rule(_ENC + "norm2.{p}", "model.encoder.layers.{l}.final_layer_norm.{p}"),
    *attention_rules("transformer.decoder.layers.{l}.", "model.decoder.layers.{l}.",
                     [("cross_attn.{rest*}", "encoder_attn.{rest*}"),
                      ("norm1.{p}", "encoder_attn_layer_norm.{p}"),
                      ("norm2.{p}", "self_attn_layer_norm.{p}"),
                      ("norm3.{p}", "final_layer_norm.{p}")]),
    Rule("transformer.decoder.bbox_embed.{rest*}", "model.decoder.bbox_embed.{rest*}"),
    Rule("transformer.reference_points.{p}", "model.reference_points.{p}"),
    Rule("query_embed.{p}", "model.query_position_embeddings.{p}"),
    Rule("input_proj.{rest*}", "model.input_proj.{rest*}"),
    Rule("class_embed.{rest*}", "class_embed.{rest*}"),
    Rule("bbox_embed.{rest*}", "bbox_embed.{rest*}"),
], tao_prefix="model.model.", worker_prefix="", bn_counters=False,  # TAO: frozen BatchNorms
   tao_backbone="backbone.0.body.")

# transformers types these weights as int; TAO specs give floats (2.0, 0.5...).
_WEIGHT_KEYS = ("class_cost", "bbox_cost", "giou_cost", "bbox_loss_coefficient",
                "giou_loss_coefficient")


class DeformableDetr(DetrPlugin):
    """Deformable DETR (see the module docstring)."""

    name = "deformable_detr"
    display = "Deformable DETR"
    checkpoint_prefix = "dd_"
    step_in_checkpoint_name = True
    pass_mask = True
    default_num_classes = 91
    default_levels = 4
    default_dropout = 0.3
    default_enc_layers = 6
    tao_keys = TAO_KEYS
    class_count_key = "class_embed.0.bias"
    unhonoured_table = {
        "model.loss_types": (["labels", "boxes"],),
        "model.backbone_names": (["backbone.0"],),
        "model.linear_proj_names": (["reference_points", "sampling_offsets"],),
        "model.dld_model_dir_path": (),
        "dataset.train_sampler": ("default_sampler",),
        "dataset.augmentation.train_random_resize": (),
        "dataset.augmentation.fixed_random_crop": (),
        "dataset.augmentation.pad_size_divisor": (),
        "train.input_width": (),
        "train.input_height": (),
        "train.activation_checkpoint": (False, True),
    }

    def build_arch(self, spec):
        """Deformable DETR hf config from ``model.*`` (see TAO's Deformable DETR config)."""
        f = self.common_fields(spec)
        idx = S.get(spec, "model.return_interm_indices", [1, 2, 3, 4])
        levels = f["levels"]
        if not isinstance(idx, list) or levels != len(idx):
            raise SpecError(
                f"model.num_feature_levels={levels} must equal the number of "
                f"model.return_interm_indices ({idx!r}), as in TAO; set it to "
                f"{len(idx) if isinstance(idx, list) else 4}")
        # TAO: 0..3 are ResNet stages (layer1..layer4); 4 is one extra level made from the
        # last stage by a strided convolution
        stages = self.stages({"model": {"return_interm_indices": [i for i in idx if i != 4]}},
                             [], zero_based=True)
        if 4 in idx and idx[-1] != 4:
            raise SpecError(f"model.return_interm_indices={idx!r}: the extra level 4 comes last")
        box_refine = bool(S.get(spec, "model.with_box_refine", True))
        if box_refine and f["dec_layers"] < 2:
            raise SpecError(
                "model.dec_layers=1 with model.with_box_refine=true is not supported by the "
                "transformers Deformable DETR; set model.dec_layers >= 2 or with_box_refine "
                "false")
        if f["backbone"] in GCVITS:
            bb, _channels, desc = gcvit_config(f["backbone"], [s - 1 for s in stages],
                                               f["scale"])
        else:
            bb, _channels, desc = backbone_config(f["backbone"], stages, f["scale"],
                                                  convnext=False)
        cls_w = spec_float(spec, "model.cls_loss_coef", 2.0)
        bbox_w = spec_float(spec, "model.bbox_loss_coef", 5.0)
        giou_w = spec_float(spec, "model.giou_loss_coef", 2.0)
        hf = {
            "backbone_config": bb, "use_timm_backbone": False, "use_pretrained_backbone": False,
            "num_labels": f["num_classes"], "num_queries": f["num_queries"],
            "num_feature_levels": levels, "d_model": f["hidden"],
            **transformer_sizes(f),
            "encoder_n_points": spec_int(spec, "model.enc_n_points", 4),
            "decoder_n_points": spec_int(spec, "model.dec_n_points", 4),
            "with_box_refine": box_refine, "two_stage": False,
            "auxiliary_loss": bool(S.get(spec, "model.aux_loss", True)),
            "class_cost": cls_w, "bbox_cost": bbox_w, "giou_cost": giou_w,
            "bbox_loss_coefficient": bbox_w, "giou_loss_coefficient": giou_w,
            "focal_alpha": spec_float(spec, "model.focal_alpha", 0.25),
            "disable_custom_kernels": True,
        }
        mean, std = self.mean_std(spec)
        weights = {"loss_ce": cls_w, "loss_bbox": bbox_w, "loss_giou": giou_w}
        return self.arch_record(spec, f, hf, desc, mean, std, weights)

    def build_model(self, arch):
        """The transformers model of ``arch``; a GC-ViT backbone (``model_type`` ``gc_vit``)
        replaces the conv encoder's placeholder ResNet, whose stage widths equal the GC-ViT's
        so that the input projections have TAO's sizes."""
        hf = dict(arch["hf_config"])
        bb = hf["backbone_config"]
        if bb.get("model_type") != "gc_vit":
            return super().build_model(arch)
        import transformers

        from tao_sdk.worker.networks import gcvit

        hf.pop("backbone_config")
        placeholder = transformers.ResNetConfig(
            embedding_size=8, hidden_sizes=[bb["dim"] * 2 ** i for i in range(4)],
            depths=[1, 1, 1, 1], layer_type="basic",
            out_features=[f"stage{i + 1}" for i in bb["stages"]])
        model = self.hf_model(placeholder, hf)
        model.model.backbone.model = gcvit.build(bb)
        return model

    def hf_model(self, backbone, hf):
        """``DeformableDetrForObjectDetection`` (loss weights set as floats)."""
        import transformers

        weights = {k: hf.pop(k) for k in _WEIGHT_KEYS if k in hf}
        cfg = transformers.DeformableDetrConfig(backbone_config=backbone, **hf)
        for key, value in weights.items():
            object.__setattr__(cfg, key, float(value))
        return transformers.DeformableDetrForObjectDetection(cfg)

    def resize_policy(self, spec, eval_override=None):
        """Shorter-side resize (``scales`` / ``test_random_resize`` /
        ``random_resize_max_size``, padded as TAO's ``fixed_padding``, default true); a fixed
        size when ``eval_override`` is given."""
        from tao_sdk.worker.tasks.detection.data import ResizePolicy

        aug = "dataset.augmentation"
        scales = [int(s) for s in S.get(spec, f"{aug}.scales", [800])]
        test_size = int(S.get(spec, f"{aug}.test_random_resize", 800))
        max_size = int(S.get(spec, f"{aug}.random_resize_max_size", 1333))
        if eval_override is not None:
            return ResizePolicy("fixed", [eval_override], eval_override)
        return ResizePolicy("shorter", scales, test_size, max_size,
                            bool(S.get(spec, f"{aug}.fixed_padding", True)))

    def param_groups(self, model, spec, lr):
        """Network / backbone groups, plus the sampling offsets and reference points at
        ``lr x train.optim.lr_linear_proj_mult``."""
        groups = super().param_groups(model, spec, lr)
        proj_mult = float(S.get(spec, "train.optim.lr_linear_proj_mult", 1.0))
        proj_names = ("sampling_offsets", "reference_points")
        proj_ids = {id(p) for name, p in model.named_parameters()
                    if p.requires_grad and not self.is_backbone_param(name)
                    and any(n in name for n in proj_names)}
        if not proj_ids:
            return groups
        proj = [p for p in groups[0]["params"] if id(p) in proj_ids]
        groups[0]["params"] = [p for p in groups[0]["params"] if id(p) not in proj_ids]
        groups.append({"params": proj, "lr": lr * proj_mult})
        return groups

    def loss(self, output, arch):
        """TAO's weighting of the loss terms (``loss_weights`` of the arch)."""
        weights = arch.get("loss_weights")
        if not weights or output.loss_dict is None:
            return output.loss
        total = 0.0
        for key, value in output.loss_dict.items():
            base = key.rsplit("_", 1)[0] if key.rsplit("_", 1)[-1].isdigit() else key
            if base in weights:
                total = total + value * weights[base]
        return total

    def tiny_overrides(self, size):
        """A small Deformable DETR at ``size`` px that trains on 2 CPU cores."""
        return {
            "dataset.augmentation.scales": [size],
            "dataset.augmentation.test_random_resize": size,
            "dataset.augmentation.random_resize_max_size": size,
            # the skill's schema allows resnet_50 / gc_vit backbones and 100..900 queries
            # (TAO_WORKER_BACKBONE_SCALE=tiny makes resnet_50 one narrow block per stage)
            "model.backbone": "resnet_50", "model.num_queries": 100, "model.num_select": 100,
            "model.hidden_dim": 64, "model.nheads": 4, "model.dim_feedforward": 128,
            "model.enc_layers": 1, "model.dec_layers": 2, "model.num_feature_levels": 3,
            "model.return_interm_indices": [1, 2, 3], "model.dropout_ratio": 0.0,
        }


PLUGIN = DeformableDetr()
