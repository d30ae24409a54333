"""Schemas shared by the AutoML brain tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REAL_SKILLS = ("tao-train-rtdetr", "tao-train-deformable-detr", "tao-train-oneformer", "tao-train-fast-foundation-stereo")


def _num(t, default, lo=None, hi=None, **kw):
    n = {"type": "integer" if t == "int" else "number", "tao_value_type": t, "default": default}
    if lo is not None:
        n["minimum"] = lo
    if hi is not None:
        n["maximum"] = hi
    n.update(kw)
    return n


def _obj(props, **kw):
    return {"type": "object", "tao_value_type": "collection", "properties": props, **kw}


MIXED = {
    "type": "object",
    "properties": {
        "dataset": _obj({
            "num_classes": _num("int", 3, 1),
            "batch_size": _num("int", 16, 2, 64, math_cond="^ 2", automl_enabled=True),
            "num_workers": _num("int", 4, 0, 16, automl_enabled=True),
            "img_size": _num("int", 512, 256, 1024, math_cond="/ 32", automl_enabled=True),
            "crop_min": _num("int", 300, 100, 900, parent_param="TRUE", automl_enabled=True),
            "crop_max": _num("int", 600, 100, 1000, depends_on="dataset.crop_min", math_cond="> depends_on",
                             automl_enabled=True),
            "augmentation": _obj({
                "flip_prob": _num("float", 0.5, 0.0, 1.0, automl_enabled=True),
                "tta_flip": {"type": "boolean", "tao_value_type": "bool", "default": False, "automl_enabled": True},
                "mosaic": {"type": "boolean", "tao_value_type": "bool", "default": True, "automl_enabled": True},
            }),
            "val_augmentation": _obj({"jitter": _num("float", 0.1, 0.0, 1.0, automl_enabled=True)}),
            "heavy_aug": _obj({
                "cutmix_prob": _num("float", 0.2, 0.0, 1.0, automl_enabled=True),
                "mixup_prob": _num("float", 0.1, 0.0, 1.0),
            }, automl_enabled=False),
        }),
        "model": _obj({
            "backbone": {"type": "string", "tao_value_type": "categorical", "default": "resnet_50",
                         "enum": ["resnet_18", "resnet_50", "convnext_tiny"], "option_weights": [0.6, 0.3, 0.1],
                         "automl_enabled": True},
            "depth": {"type": "integer", "tao_value_type": "ordered_int", "default": 50, "enum": [18, 34, 50, 101],
                      "automl_enabled": True},
            "num_queries": _num("int", 100, 10, 300, automl_enabled=True),
            "num_select": _num("int", 100, 1, 500, depends_on="model.num_queries", automl_enabled=True),
            "frozen": _num("int", 2, 0, 4, automl_enabled=False),
            "dropout": _num("float", 0.1, 0.0, 0.5),
            "head_dim": _num("int", 256, 1),
            "act": {"type": "string", "tao_value_type": "categorical", "default": "relu", "enum": ["relu", "gelu"]},
        }),
        "train": _obj({
            "seed": _num("int", 0, 0, 100, automl_enabled=True),
            "gpu_ids": {"type": "array", "items": {"type": "integer"}, "tao_value_type": "list", "default": [0]},
            "optim": _obj({
                "lr": _num("float", 2e-4, 0.0, 1.0, math_cond="> 0.0", automl_enabled=True),
                "momentum": _num("float", 0.9, 0.0, 1.0, math_cond="> 0.0", automl_enabled=True),
                "weight_decay": _num("float", 0.05, 0.0, 1.0, math_cond="> 0.0", automl_enabled=True),
                "warmup": {"type": ["integer", "null"], "tao_value_type": "int", "default": 5, "minimum": 0,
                           "maximum": 20, "automl_enabled": True},
                "lr_steps": {"type": "array", "items": {"type": "integer"}, "tao_value_type": "list",
                             "default": [10, 20]},
            }),
        }),
    },
    "default": {},
    "automl_default_parameters": [
        "dataset.batch_size", "dataset.num_workers", "dataset.img_size", "dataset.crop_min", "dataset.crop_max",
        "dataset.augmentation.flip_prob", "dataset.augmentation.tta_flip", "dataset.augmentation.mosaic",
        "dataset.val_augmentation.jitter", "dataset.heavy_aug.cutmix_prob", "model.backbone", "model.depth",
        "model.num_queries", "model.num_select", "train.seed", "train.optim.lr", "train.optim.momentum",
        "train.optim.weight_decay", "train.optim.warmup", "dataset.augmentation.removed_field",
    ],
    "automl_disabled_parameters": ["dataset.heavy_aug", "model.frozen"],
}

#: Dims the MIXED schema searches by default, with their kinds.
MIXED_EXPECTED = {
    "dataset.batch_size": "ordered_int", "dataset.img_size": "int", "dataset.crop_min": "int",
    "dataset.crop_max": "int", "dataset.augmentation.flip_prob": "float", "dataset.augmentation.mosaic": "bool",
    "model.backbone": "categorical", "model.depth": "ordered_int", "model.num_queries": "int",
    "model.num_select": "int", "train.optim.lr": "float", "train.optim.momentum": "float",
    "train.optim.weight_decay": "float", "train.optim.warmup": "int",
}
