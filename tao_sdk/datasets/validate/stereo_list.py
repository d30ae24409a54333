"""Stereo ``annotations.txt``: ``<left> <right> [<disparity> [<occlusion>]]`` per line.

Paths are relative to the folder holding ``annotations.txt`` and read from ``images.tar.gz``
beside it when that exists, else as files / objects under the folder (absolute local paths as
they are). Checks: 2-4 columns, 3 or more where the action needs ground truth (train, evaluate,
quantize); every path present; left, right and disparity of a line of one size; the disparity
encoding (``.pfm``, ``.npy``, 16-bit single-channel ``.png``; 8-bit RGB ``.png`` for ``FSD``) and
its range: a map with no valid pixel is an error, values at or above ``dataset.max_disparity``
(ignored by the loss and the metrics) a warning with the value to set.
"""

from __future__ import annotations

import io
import math
import struct
import sys
from array import array
from typing import Any

from ..problems import Problem
from ..reader import HEADER_BYTES, image_size
from ..sources import Source
from ..stereo_formats import FORMATS
from .base import Context, problem, scan, source_text

ANNOTATIONS = "annotations.txt"
#: Actions that read the disparity column (ground truth).
NEEDS_GT = ("train", "evaluate", "quantize", "distill")


def _lines(text: str) -> list[tuple[int, list[str]]]:
    return [(no, ln.split()) for no, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.startswith("#")]


class StereoList:
    """The stereo annotation-list validator (see the module docstring)."""

    name = "stereo_list"

    def claims(self, ctx: Context, source: Source) -> tuple[str, ...]:
        """``annotations.txt``."""
        return (ANNOTATIONS,) if ANNOTATIONS in source.files else ()

    def settings(self, ctx: Context, source: Source) -> dict[str, Any]:
        """Format, the disparity cap and whether ground truth is needed."""
        return {"format": source.fields.get("dataset_name") or ctx.dataset_format,
                "max_disparity": ctx.get("dataset.max_disparity", 416), "gt": ctx.action in NEEDS_GT}

    def validate(self, ctx: Context, source: Source) -> list[Problem]:
        """Every problem of the list and of the files it names."""
        uri, key, text, out = source_text(ctx, source, ANNOTATIONS, "annotations.txt")
        if text is None:
            return out
        lines = _lines(text)
        if not lines:
            return [problem(uri, "the file", "lists no pair", "write one line per pair: <left> <right> <disparity>",
                            "empty_list", spec_key=key)]
        cfg = self.settings(ctx, source)
        out = _columns(lines, uri, key, cfg["gt"])
        names = {p.removeprefix("./") for _, cols in lines for p in cols[:4]}
        disparities = {cols[2].removeprefix("./") for _, cols in lines if len(cols) > 2}
        root = uri.rsplit("/", 1)[0]
        archive = f"{root}/images.tar.gz"
        base = archive if ctx.reader.stat(archive) else root
        found, problems = scan(ctx, base, key, lambda n: -1 if n in disparities else (HEADER_BYTES if n in names else 0))
        out += problems
        if found is None:
            return out
        for no, cols in lines:
            out += _line(ctx, found, cols[:4], no, uri, base, key, cfg)
        return out


def _columns(lines, uri: str, key: str | None, need_gt: bool) -> list[Problem]:
    out = []
    for no, cols in lines:
        if not 2 <= len(cols) <= 4:
            out.append(problem(uri, f"line {no}", f"has {len(cols)} columns", "write <left> <right> [<disparity> "
                               "[<occlusion>]] separated by spaces (no spaces inside paths)", "columns", spec_key=key))
        elif need_gt and len(cols) < 3:
            out.append(problem(uri, f"line {no}", "has no disparity column; this action needs ground truth",
                               "add the disparity file of the pair as the third column", "no_disparity", spec_key=key))
    return out


def _line(ctx: Context, found, cols: list[str], no: int, uri: str, base: str, key: str | None,
          cfg: dict) -> list[Problem]:
    out, sizes = [], {}
    for col, path in zip(("left", "right", "disparity", "occlusion"), cols):
        member = path.removeprefix("./")
        absolute = path.startswith("/")  # a file already on the compute node, used as it is
        if absolute and not ctx.reader.exists(path) or not absolute and member not in found.members:
            if found.complete or absolute:
                where = "does not exist" if absolute else f"is not in {base}"
                out.append(problem(uri, f"line {no} {col}", f"{path} {where}",
                                   f"add {path} to {base.rsplit('/', 1)[-1]} or fix line {no} (paths are relative "
                                   "to the folder of annotations.txt)", "missing_file", spec_key=key))
            continue
        data = ctx.reader.head(path, -1 if col == "disparity" else HEADER_BYTES) if absolute else \
            found.data.get(member, b"")
        if col == "disparity":
            size, problems = _disparity(data, member, base, no, key, cfg)
            out += problems
        else:
            size = image_size(data)
        if size:
            sizes[col] = size
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{c} {w}x{h}" for c, (w, h) in sizes.items())
        out.append(problem(uri, f"line {no}", f"the files of the pair differ in size ({shown})",
                           "use rectified pairs of one size, and disparity maps of the left image's size",
                           "pair_size", spec_key=key))
    return out


def _disparity(data: bytes, member: str, base: str, no: int, key: str | None, cfg: dict):
    """``(size, problems)`` of one disparity file."""
    record = f"line {no} disparity {member}"
    cap = float(cfg["max_disparity"])
    try:
        size, values = _decode(data, member, str(cfg["format"] or "genericdataset").lower(), cap)
    except ValueError as exc:
        return None, [problem(base, record, str(exc), "write disparity as .pfm (float), .npy or 16-bit single-channel "
                              ".png (value x 256)", "disparity_encoding", spec_key=key)]
    valid = [v for v in values if math.isfinite(v) and v > 0]
    if not valid:
        return size, [problem(base, record, "has no valid pixel (all <= 0, NaN or inf)", "check the disparity "
                              "encoding of the file", "disparity_empty", spec_key=key)]
    over = sum(1 for v in valid if v >= cap)
    if over:
        return size, [problem(base, record, f"{over} of {len(valid)} valid pixels are >= dataset.max_disparity {cap:g} "
                              f"(max {max(valid):.1f}); they are ignored", f"set dataset.max_disparity to at least "
                              f"{math.ceil(max(valid)) + 1}", "disparity_range", severity="warning",
                              spec_key="dataset.max_disparity")]
    return size, []


def _decode(data: bytes, member: str, fmt: str, cap: float) -> tuple[tuple[int, int], list[float]]:
    """``((width, height), values)`` of a disparity file (a 16-bit PNG wholly below ``cap``: its
    maximum only); ValueError saying what is wrong."""
    suffix = member.lower().rsplit(".", 1)[-1]
    if suffix == "pfm":
        return _pfm(data)
    if suffix == "npy":
        return _npy(data)
    if suffix == "png":
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            if fmt == "fsd" and img.mode in ("RGB", "RGBA"):
                raw = img.convert("RGB").tobytes()
                return img.size, [(raw[i] * 255 * 255 + raw[i + 1] * 255 + raw[i + 2]) / 1000.0
                                  for i in range(0, len(raw), 3)]
            if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise ValueError(f"is a {img.mode} PNG; a PNG disparity must be 16-bit single-channel")
            scale = FORMATS.get(fmt, 256.0)
            high = img.getextrema()[1]
            if 0 < high / scale < cap:  # every value in range: the maximum says all the range check needs
                return img.size, [high / scale]
            return img.size, [v / scale for v in _uint16(img)]
    raise ValueError(f"has the unsupported type .{suffix}")


def _uint16(img) -> array:
    """The pixel values of a 16-bit (or 32-bit ``I``) single-channel image."""
    little = sys.byteorder == "little"
    values = array("H" if img.mode.startswith("I;16") else "i", img.tobytes())
    if (img.mode == "I;16B") == little and img.mode != "I":  # I;16 / I;16L are little-endian, I native
        values.byteswap()
    return values


def _pfm(data: bytes) -> tuple[tuple[int, int], list[float]]:
    head = data.split(b"\n", 3)
    if len(head) < 4 or head[0].strip() not in (b"Pf", b"PF"):
        raise ValueError(f"is not a PFM file (header {data[:8]!r})")
    w, h = (int(v) for v in head[1].split()[:2])
    scale = float(head[2])
    chans = 3 if head[0].strip() == b"PF" else 1
    values = array("f")
    values.frombytes(head[3][: (len(head[3]) // 4) * 4])
    if (scale < 0) != (struct.pack("=f", 1.0) == struct.pack("<f", 1.0)):
        values.byteswap()
    if len(values) < w * h * chans:
        raise ValueError(f"PFM data is truncated ({len(values)} values for {w}x{h})")
    return (w, h), list(values[: w * h * chans: chans])


def _npy(data: bytes) -> tuple[tuple[int, int], list[float]]:
    import ast

    if not data.startswith(b"\x93NUMPY"):
        raise ValueError("is not a .npy file")
    hlen = struct.unpack("<H", data[8:10])[0] if data[6] == 1 else struct.unpack("<I", data[8:12])[0]
    start = 10 if data[6] == 1 else 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    shape, descr = header["shape"], header["descr"]
    if len(shape) != 2 or descr not in ("<f4", "<f8") or header.get("fortran_order"):
        raise ValueError(f"must be a 2-D float32/float64 C-order array, got {descr} {shape}")
    values = array("f" if descr == "<f4" else "d")
    body = data[start + hlen:]
    values.frombytes(body[: (len(body) // values.itemsize) * values.itemsize])
    return (shape[1], shape[0]), list(values)
