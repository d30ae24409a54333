"""Writer of the stereo layout (FastFoundationStereo / depth_net ``data_sources``)::

    <dest>/annotations.txt   one pair per line: left/<n>.<ext> right/<n>.<ext> [disparity/<n>.<ext> [occlusion/<n>.png]]
    <dest>/images.tar.gz     the files the lines name, as archive members (paths relative to <dest>)

Disparity is written in an encoding the worker reads for the source's ``dataset_name``
(:func:`tao_sdk.worker.tasks.stereo.read_disparity`): PFM and 16-bit PNG at the format's scale
(x256: ``Kitti``, ``Middlebury``, ``GenericDataset``) are copied as they are; a 16-bit PNG at
another scale is re-encoded as float PFM (0 -> ``inf``, no ground truth). Every disparity map
is read once to check it decodes and has the left image's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import TarWriter, image_size, imaging
from .records import StereoPair, StereoSource

__all__ = ["FILES", "write", "spec_hints"]

FILES = ["annotations.txt", "images.tar.gz"]


def _disparity(pair: StereoPair, source: StereoSource, tmp: Path) -> tuple[Path, str, Any]:
    """``(file to store, its suffix, disparity shape)``; raises DatasetError / ValueError for
    a map the worker cannot read."""
    np, Image = imaging()
    from tao_sdk.worker.tasks.stereo import FORMATS, read_disparity, write_pfm

    path = pair.disparity
    if path.suffix.lower() == ".png" and source.disparity_scale != FORMATS[source.dataset_format.lower()]:
        with Image.open(path) as im:
            arr = np.asarray(im)
        if arr.ndim != 2 or arr.dtype != np.uint16:
            raise ValueError(f"a PNG disparity must be 16-bit single-channel, found {arr.dtype} "
                             f"x {arr.shape[2:] or 1}")
        disp = np.where(arr > 0, arr.astype(np.float32) / source.disparity_scale, np.inf)
        out = tmp / "disparity.pfm"
        write_pfm(out, disp)
        return out, ".pfm", disp.shape
    disp, _valid = read_disparity(path, source.dataset_format)
    return path, path.suffix.lower(), disp.shape


def _line(pair: StereoPair, source: StereoSource, tar: TarWriter, tmp: Path) -> str | None:
    """Add one pair's files to ``tar``; its annotation line, or None when dropped."""
    from tao_sdk.worker.errors import DatasetError

    size = image_size(pair.left)
    if size is None or image_size(pair.right) != size:
        source.drops.add("left / right image unreadable or of different sizes", str(pair.left))
        return None
    cols = [(pair.left, f"left/{pair.name}{pair.left.suffix.lower()}"),
            (pair.right, f"right/{pair.name}{pair.right.suffix.lower()}")]
    if pair.disparity is not None:
        try:
            stored, suffix, shape = _disparity(pair, source, tmp)
        except (DatasetError, ValueError, OSError) as exc:
            source.drops.add("disparity the worker cannot read", f"{pair.disparity}: {exc}")
            return None
        if tuple(shape) != (size[1], size[0]):
            source.drops.add("disparity of another size than the left image",
                             f"{pair.disparity} {shape[1]}x{shape[0]} vs {size[0]}x{size[1]}")
            return None
        cols.append((stored, f"disparity/{pair.name}{suffix}"))
    if pair.occlusion is not None:
        cols.append((pair.occlusion, f"occlusion/{pair.name}{pair.occlusion.suffix.lower()}"))
    for path, member in cols:
        tar.add_file(path, member)
    return " ".join(member for _p, member in cols)


def write(source: StereoSource, staging: Path) -> dict[str, Any]:
    """Write the layout into ``staging``; return its counts (pairs, with ground truth, with
    an occlusion mask)."""
    with_gt = [p for p in source.items if p.disparity is not None]
    pairs = source.items
    if with_gt and len(with_gt) < len(pairs):  # train / evaluate need ground truth on every line
        for p in pairs:
            if p.disparity is None:
                source.drops.add("pair without ground-truth disparity (the other pairs have one)",
                                 str(p.left))
        pairs = with_gt
    lines = []
    tmp = staging / ".tmp"
    tmp.mkdir(exist_ok=True)
    with TarWriter(staging / "images.tar.gz") as tar:
        for pair in pairs:
            line = _line(pair, source, tar, tmp)
            if line:
                lines.append(line)
    (staging / "annotations.txt").write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    cols = [len(x.split()) for x in lines]
    return {"pairs": len(lines), "with_disparity": sum(c >= 3 for c in cols),
            "with_occlusion": sum(c == 4 for c in cols)}


def spec_hints(source: StereoSource) -> dict[str, Any]:
    """No spec value beyond the ``dataset_name`` (the report's ``dataset_format``)."""
    return {}
