"""Users' datasets at plan time: validation and conversion per format, without torch.

- :func:`validate_datasets` (also ``tao_sdk.validate_datasets``, CLI ``tao-skills dataset
  validate``): every file an action's SKILL.md dataset table names, checked on local paths and
  ``s3://`` (archives read by streaming, within a budget) -> :class:`DatasetReport`.
- :class:`Problem`: one defect with its file, record, message and fix.
- :mod:`tao_sdk.datasets.validate`: one validator per format (COCO detection, COCO panoptic,
  label maps, stereo annotation lists, calibration sets) and the registry per dataset type.
- :func:`convert_dataset` (CLI ``tao-skills dataset convert``, :mod:`tao_sdk.datasets.convert`):
  KITTI / VOC / YOLO / LabelMe / masks / Cityscapes / stereo layouts into the layout a skill's
  table names -> :class:`ConversionReport`.

Importing this package imports neither torch nor numpy (a test checks it).
"""

from .. import lazy_exports

_EXPORTS = {"validate_datasets": "check", "DatasetReport": "problems", "Problem": "problems",
            "convert_dataset": "convert", "ConversionReport": "convert"}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = ["ConversionReport", "DatasetReport", "Problem", "convert_dataset", "validate_datasets"]
