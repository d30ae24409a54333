"""Users' datasets at plan time: validation per format, without torch.

- :func:`validate_datasets` (also ``tao_sdk.validate_datasets``, CLI ``tao-skills dataset
  validate``): every file an action's SKILL.md dataset table names, checked on local paths and
  ``s3://`` (archives read by streaming, within a budget) -> :class:`DatasetReport`.
- :class:`Problem`: one defect with its file, record, message and fix.
- :mod:`tao_sdk.datasets.validate`: one validator per format (COCO detection, COCO panoptic,
  label maps, stereo annotation lists, calibration sets) and the registry per dataset type.

Importing this package imports neither torch nor numpy (a test checks it).
"""

from importlib import import_module
from typing import Any

_EXPORTS = {"validate_datasets": "check", "DatasetReport": "problems", "Problem": "problems"}


def __getattr__(name: str) -> Any:
    """Import the public name ``name`` from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tao_sdk.datasets' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = ["DatasetReport", "Problem", "validate_datasets"]
