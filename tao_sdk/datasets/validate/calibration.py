"""INT8 calibration image sets: the number of images against ``cal_batches x cal_batch_size``.

Applies to the table's ``calibration_dataset`` rows (``gen_trt_engine.tensorrt.calibration.cal_image_dir``):
the images of every listed archive or folder are counted; with ``data_type: INT8`` TensorRT
calibration reads ``cal_batches`` batches of ``cal_batch_size`` images, so fewer images is an
error. Other data types read no calibration image, so only the archives' presence is checked.
"""

from __future__ import annotations

from typing import Any

from ..problems import Problem
from ..reader import is_image
from ..sources import Source
from .base import Context, count, problem, scan


def _settings_path(key: str | None) -> str:
    """``a.b.calibration.cal_image_dir[0]`` -> ``a.b.calibration``."""
    return (key or "").split("[", 1)[0].rsplit(".", 1)[0]


class Calibration:
    """The calibration-set validator (see the module docstring)."""

    name = "calibration"

    def claims(self, ctx: Context, source: Source) -> tuple[str, ...]:
        """Every file of a ``calibration_dataset`` source."""
        return tuple(source.files) if source.role == "calibration_dataset" else ()

    def settings(self, ctx: Context, source: Source) -> dict[str, Any]:
        """Data type, batches and batch size of the calibration."""
        where = _settings_path(next(iter(source.keys.values()), None))
        return {"data_type": str(ctx.get(f"{where.rsplit('.', 1)[0]}.data_type", "")).upper(),
                "cal_batches": ctx.get(f"{where}.cal_batches"), "cal_batch_size": ctx.get(f"{where}.cal_batch_size")}

    def validate(self, ctx: Context, source: Source) -> list[Problem]:
        """Missing archives, and too few images for INT8."""
        cfg = self.settings(ctx, source)
        out: list[Problem] = []
        images, complete, first = 0, True, None
        for name, uris in source.files.items():
            for uri in uris:
                first = first or uri
                found, problems = scan(ctx, uri, source.key(name))
                out += problems
                complete &= found is not None and found.complete
                images += sum(1 for m in (found.members if found else {}) if is_image(m))
        batches, size = cfg["cal_batches"], cfg["cal_batch_size"]
        if cfg["data_type"] != "INT8" or not isinstance(batches, int) or not isinstance(size, int) or not complete:
            return out  # not INT8, or the count is unknown (a missing archive / the budget: reported above)
        where = _settings_path(next(iter(source.keys.values()), None))
        if images < batches * size:
            out.append(problem(first, f"{count(images, 'image')}", f"INT8 calibration reads {where}.cal_batches "
                               f"{batches} x cal_batch_size {size} = {batches * size} images",
                               f"add {batches * size - images} image(s) to the calibration set or set {where}.cal_batches "
                               f"to {max(images // max(size, 1), 1)}", "calibration_count",
                               spec_key=f"{where}.cal_batches"))
        return out
