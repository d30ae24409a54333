"""Stereo sources -> the stereo annotation list (``annotations.txt`` + ``images.tar.gz``).

- **kitti_stereo**: KITTI 2015 (``image_2/``, ``image_3/``, ``disp_occ_0/``) or KITTI 2012
  (``colored_0/``, ``colored_1/``, ``disp_occ/``) under ``SRC/training`` (default) or
  ``SRC/<split>`` / SRC itself: the ``*_10.png`` frames, disparity = 16-bit PNG x 256 (copied;
  the worker reads it as ``Kitti``); ``--split testing`` has no ground truth (2-column lines, for
  inference). ``dataset_name``: ``Kitti``.
- **middlebury**: one folder per scene (any depth below SRC) with ``im0.png``, ``im1.png``,
  ``disp0GT.pfm`` or ``disp0.pfm`` and optionally ``mask0nocc.png`` (the 4th column: the worker
  evaluates its 255 pixels). ``dataset_name``: ``Middlebury``.
- **stereo_pairs**: ``SRC/left/`` + ``SRC/right/`` (same relative names) and optionally
  ``SRC/disparity/`` (``.pfm``, ``.npy`` or 16-bit ``.png`` at ``--disparity-scale``, default
  256) and ``SRC/occlusion/`` (non-zero = occluded); sub-folders of SRC holding ``left/`` are
  splits. ``dataset_name``: ``GenericDataset``.
"""

from __future__ import annotations

from pathlib import Path

from tao_sdk.errors import ConversionError

from .files import first_dir, list_files
from .records import ConvertOptions, Drops, StereoPair, StereoSource
from .registry import Reader

__all__ = ["KITTI", "MIDDLEBURY", "PAIRS"]

#: KITTI layouts: (left, right, disparity) folder names.
_KITTI = (("image_2", "image_3", "disp_occ_0"), ("colored_0", "colored_1", "disp_occ"))
_DISPARITY = (".pfm", ".png", ".npy")


def _same_stem(folder: Path, rel: Path, suffixes=_DISPARITY) -> Path | None:
    """The file of ``folder`` with the relative name ``rel`` (any of ``suffixes``), or None."""
    return next((folder / rel.with_suffix(s) for s in suffixes if (folder / rel.with_suffix(s)).is_file()), None)


def _finish(pairs: list[StereoPair], fmt: str, drops: Drops, what: str, opts: ConvertOptions,
            notes: list[str]) -> StereoSource:
    if not pairs:
        raise ConversionError(f"{what}: no stereo pair found; check the layout (references/dataset-conversion.md)")
    return StereoSource(items=pairs, dataset_format=fmt, drops=drops, notes=notes,
                        disparity_scale=opts.disparity_scale if fmt == "GenericDataset" else 256.0)


def _read_kitti(src: Path, split: str | None, opts: ConvertOptions) -> StereoSource:
    base = src / (split or "training") if (src / (split or "training")).is_dir() else src
    layout = next((names for names in _KITTI if (base / names[0]).is_dir()), None)
    if layout is None:
        raise ConversionError(f"kitti_stereo: {base} has neither image_2/ (KITTI 2015) nor colored_0/ (KITTI 2012)")
    left_dir, right_dir, disp_dir = (base / n for n in layout)
    drops, pairs = Drops(), []
    for left in list_files(left_dir, ("_10.png",)):
        rel = left.relative_to(left_dir)
        disp = disp_dir / rel if (disp_dir / rel).is_file() else None
        if not (right_dir / rel).is_file():
            drops.add("left image without its right image", str(left))
        elif disp is None and disp_dir.is_dir():
            drops.add("frame without ground-truth disparity", str(left))
        else:
            pairs.append(StereoPair(left, right_dir / rel, disp, None, rel.with_suffix("").as_posix()))
    kind = "KITTI 2015" if layout is _KITTI[0] else "KITTI 2012"
    return _finish(pairs, "Kitti", drops, f"kitti_stereo {base}", opts,
                   [f"{kind} layout; disparity: {disp_dir.name}/ 16-bit PNG x 256" if disp_dir.is_dir()
                    else f"{kind} layout without disparity: 2-column lines (inference only)"])


def _read_middlebury(src: Path, split: str | None, opts: ConvertOptions) -> StereoSource:
    root = first_dir(src, [split], "middlebury") if split else src
    drops, pairs = Drops(), []
    for im0 in list_files(root, ("im0.png",)):
        scene = im0.parent
        if not (scene / "im1.png").is_file():
            drops.add("scene without im1.png", str(scene))
            continue
        disp = next((scene / n for n in ("disp0GT.pfm", "disp0.pfm") if (scene / n).is_file()), None)
        mask = scene / "mask0nocc.png"
        name = scene.relative_to(root).as_posix() if scene != root else scene.name
        pairs.append(StereoPair(im0, scene / "im1.png", disp, mask if mask.is_file() and disp else None, name))
    return _finish(pairs, "Middlebury", drops, f"middlebury {root}", opts,
                   ["disparity: disp0GT.pfm / disp0.pfm copied (inf = no ground truth); "
                    "mask0nocc.png as the occlusion column (255 = evaluated)"])


def _pairs_splits(src: Path) -> list[str]:
    if (src / "left").is_dir():
        return []
    return sorted(p.name for p in src.iterdir() if (p / "left").is_dir())


def _read_pairs(src: Path, split: str | None, opts: ConvertOptions) -> StereoSource:
    root = src / split if split else src
    left_dir, right_dir = first_dir(root, ["left"], "stereo_pairs"), first_dir(root, ["right"], "stereo_pairs")
    disp_dir, occ_dir = root / "disparity", root / "occlusion"
    drops, pairs = Drops(), []
    for left in list_files(left_dir):
        rel = left.relative_to(left_dir)
        right = _same_stem(right_dir, rel, (left.suffix,))
        if right is None:
            drops.add("left image without a right image of the same name", str(left))
            continue
        disp = _same_stem(disp_dir, rel) if disp_dir.is_dir() else None
        occ = _same_stem(occ_dir, rel, (".png",)) if occ_dir.is_dir() and disp else None
        pairs.append(StereoPair(left, right, disp, occ, rel.with_suffix("").as_posix()))
    return _finish(pairs, "GenericDataset", drops, f"stereo_pairs {root}", opts,
                   [f"16-bit PNG disparity read at scale {opts.disparity_scale:g} "
                    f"({'copied' if opts.disparity_scale == 256 else 're-encoded as PFM'})"])


KITTI = Reader(_read_kitti)
MIDDLEBURY = Reader(_read_middlebury)
PAIRS = Reader(_read_pairs, _pairs_splits)
