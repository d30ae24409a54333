"""Dataset validators, one module per format, and the registry that picks them per skill.

:data:`VALIDATORS` holds one :class:`~tao_sdk.datasets.validate.base.Validator` per format;
:data:`LAYOUTS` says which a skill's ``dataset_type`` (skill_info.yaml) reads. Every file of the
action's SKILL.md dataset table that none of them claims gets the presence check
(:class:`~tao_sdk.datasets.validate.files.Files`), so a skill without a format validator still has
each of its files checked. Adding a format: a module with a class of the protocol, one line here.
"""

from __future__ import annotations

from .base import Context, Validator
from .calibration import Calibration
from .coco_detection import CocoDetection
from .coco_panoptic import CocoPanoptic
from .files import Files
from .label_map import LabelMapTxt
from .stereo_list import StereoList

#: Validator name -> validator.
VALIDATORS: dict[str, Validator] = {v.name: v for v in (
    CocoDetection(), CocoPanoptic(), LabelMapTxt(), StereoList(), Calibration(), Files())}

#: skill_info ``dataset_type`` -> the validators that read its files, in order (a file is checked
#: by the first that claims it; calibration sets first, whatever the task).
LAYOUTS: dict[str, tuple[str, ...]] = {
    "object_detection": ("calibration", "coco_detection", "label_map_txt"),
    "segmentation": ("calibration", "coco_panoptic"),
    "depth_net_stereo": ("calibration", "stereo_list"),
}
#: Validators of a dataset type :data:`LAYOUTS` does not name.
DEFAULT_LAYOUT: tuple[str, ...] = ("calibration",)

__all__ = ["Context", "DEFAULT_LAYOUT", "LAYOUTS", "VALIDATORS", "Validator"]
