"""The spec and dataset options shared by the ``tao-skills`` commands (``run``, ``spec``, ``plan``,
``dataset validate``...): one definition, below :mod:`tao_sdk.cli` and :mod:`tao_sdk.datasets.cli`."""

from __future__ import annotations

import argparse
from typing import Any

from .presets import PRESETS

__all__ = ["add_spec_options", "datasets_of"]


def add_spec_options(p: argparse.ArgumentParser, validate_flag: bool = True) -> None:
    """Add the options every spec-building command takes (skill, action, -e, --set, datasets, --parent...)."""
    p.add_argument("skill", help="skill name (tao-train-rtdetr) or network (rtdetr)")
    p.add_argument("action", help="train, evaluate, inference, export, gen_trt_engine, ...")
    p.add_argument("-e", "--spec-file", metavar="FILE",
                   help="your TAO experiment spec (YAML): the layer under --set; read as TAO Core reads it")
    p.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE",
                   help="spec override, dotted key (repeatable), e.g. --set train.num_epochs=10")
    p.add_argument("--train-dataset", action="append", metavar="URI", help="train dataset root (repeatable)")
    p.add_argument("--eval-dataset", metavar="URI", help="evaluation dataset root")
    p.add_argument("--inference-dataset", metavar="URI", help="inference dataset root")
    p.add_argument("--calibration-dataset", metavar="URI", help="INT8 calibration dataset root")
    p.add_argument("--dataset-format", help="dataset format (stereo dataset_name, OneFormer label map)")
    p.add_argument("--parent", metavar="JOB", help="parent job id (train/export/gen_trt_engine/AutoML)")
    p.add_argument("--pretrained-model", metavar="URI",
                   help="pretrained weights for ptm_if_no_resume_model: a path (file or Hugging Face folder), "
                        "s3://, https://, hf://ORG/NAME[@REV][/FILE], ngc://ORG/[TEAM/]MODEL:VERSION[/FILE], "
                        "or nvidia[:NAME] (the skill's NVIDIA pretrained model)")
    p.add_argument("--preset", choices=PRESETS,
                   help="tiny: the skill's small model that trains in minutes on a CPU (references/preset_tiny.yaml; "
                        "rtdetr, deformable_detr, oneformer, depth_net), over -e and under --set; full (default): "
                        "the template as TAO ships it")
    if validate_flag:
        p.add_argument("--no-validate-datasets", dest="validate_datasets", action="store_false", default=None,
                       help="skip the plan-time check of the dataset files (see `tao-skills dataset validate`)")


def datasets_of(args: argparse.Namespace) -> dict[str, Any]:
    """The ``datasets=`` mapping of the Python API from parsed ``--*-dataset`` options."""
    out: dict[str, Any] = {}
    if args.train_dataset:
        out["train_datasets"] = args.train_dataset
    for role in ("eval_dataset", "inference_dataset", "calibration_dataset"):
        if getattr(args, role):
            out[role] = getattr(args, role)
    return out
