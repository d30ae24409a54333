"""Dataset conversion: the layouts users have -> exactly the files the skills' data-source
tables name (``tao-skills dataset convert``, :func:`convert_dataset`).

>>> report = convert_dataset("voc", "coco", "VOCdevkit/VOC2012", "s3://bucket/voc")
>>> [o["dest"] for o in report.outputs]
['s3://bucket/voc/train', 's3://bucket/voc/val']

Conversions (see :data:`registry.REGISTRY`; ``references/dataset-conversion.md``):
``kitti`` / ``voc`` / ``yolo`` / ``labelme`` -> ``coco`` (``images.tar.gz``,
``annotations.json``, ``label_map.txt``); ``semantic_masks`` / ``cityscapes`` ->
``coco_panoptic`` (+ ``images_panoptic.tar.gz``, ``label_map.json``,
``label_map_panoptic.json``); ``kitti_stereo`` / ``middlebury`` / ``stereo_pairs`` ->
``stereo`` (``annotations.txt`` + ``images.tar.gz``).

Where the output goes: a source with named splits (VOC's ImageSets lists, YOLO's data.yaml
splits, Cityscapes' folders, sub-folders of images/ or of a pairs folder) writes ``DEST/<split>``
per split, all of them by default; ``split=`` picks some. A source without named splits writes
DEST itself, or ``DEST/train`` + ``DEST/val`` with ``val_fraction`` (a deterministic partition by
sample name and ``seed``). The SRC is a local folder or an ``s3://`` prefix (downloaded first),
DEST a local folder or an ``s3://`` prefix (:mod:`tao_sdk.storage`).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tao_sdk.errors import ConversionError
from tao_sdk.storage import is_remote, storage_for

from . import registry
from .files import publish, refuse_existing
from .records import ConvertOptions, Drops, Source

__all__ = ["ConversionReport", "convert_dataset", "conversions"]


@dataclass
class ConversionReport:
    """What a conversion wrote and left out.

    Attributes:
        outputs: one entry per dataset root written: ``split`` (``None`` for DEST itself),
            ``dest`` (the root URI to pass as ``--train-dataset`` / ``--eval-dataset``),
            ``files`` (URIs) and the counts (``images``, ``boxes`` / ``segments`` / ``pairs``...).
        classes: ``[{"id", "name"}]`` (ids as written; empty for stereo).
        dropped: ``[{"reason", "count", "examples"}]``: every record left out, and why.
        notes: how ids, boxes and encodings were chosen.
        dataset_format: the ``--dataset-format`` / ``dataset_format=`` of the converted data.
        spec_hints: spec values the data needs (``dataset.num_classes`` ...).
        skills: the skills whose tables read this layout.
    """

    from_format: str
    to_format: str
    src: str
    dest: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dataset_format: str = ""
    spec_hints: dict[str, Any] = field(default_factory=dict)
    skills: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``tao-skills dataset convert --json``)."""
        return asdict(self)


def conversions() -> list[dict[str, str]]:
    """Every supported conversion: ``[{"from", "to", "source", "skills"}]``."""
    return registry.pairs()


def _class_names(classes: Sequence[str] | str | None) -> list[str] | None:
    """``classes=``: a list, a comma-separated string, or a file with one name per line."""
    if classes is None or isinstance(classes, (list, tuple)):
        return list(classes) if classes else None
    path = Path(classes)
    names = path.read_text(encoding="utf-8").splitlines() if path.is_file() else classes.split(",")
    names = [n.strip() for n in names if n.strip()]
    if len(set(names)) != len(names):
        raise ConversionError(f"classes {classes!r} lists a name twice; give each class once")
    return names or None


def _partition(source: Source, val_fraction: float, seed: int) -> list[tuple[str, Source]]:
    """``[("train", ...), ("val", ...)]``: a sample goes to val when the hash of its name and
    ``seed`` falls under ``val_fraction`` (stable when samples are added or reordered)."""
    def score(item) -> float:
        digest = hashlib.sha256(f"{seed}:{item.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64

    ranked = sorted(source.items, key=score)
    n_val = min(len(ranked) - 1, max(1, sum(score(i) < val_fraction for i in ranked)))
    if n_val < 1:
        raise ConversionError(f"val_fraction {val_fraction} needs at least 2 samples; the source has {len(ranked)}")
    val = set(id(i) for i in ranked[:n_val])
    return [("train", source.subset([i for i in source.items if id(i) not in val])),
            ("val", source.subset([i for i in source.items if id(i) in val]))]


def _local_source(src: str, tmp: Path) -> Path:
    """SRC as a local folder: an ``s3://`` prefix is downloaded into ``tmp`` first."""
    if not is_remote(src):
        path = Path(src).expanduser()
        if not path.exists():
            raise ConversionError(f"SRC {src} does not exist; give the dataset's root folder")
        return path
    store = storage_for(src)
    objects = store.list(src)
    if not objects:
        raise ConversionError(f"SRC {src} holds no object; give the dataset's root prefix")
    prefix = src.rstrip("/") + "/"
    for obj in objects:
        store.download_file(obj.uri, tmp / "src" / obj.uri[len(prefix):])
    return tmp / "src"


def _plan(reader: registry.Reader, src: Path, split: Sequence[str] | str | None,
          val_fraction: float | None) -> list[str | None]:
    """The source splits to read: the ones asked for, else the reader's default ones, else
    the whole source (``[None]``)."""
    names = [split] if isinstance(split, str) else list(split or [])
    names = names or reader.splits(src) or [None]
    if val_fraction is not None:
        if not 0 < val_fraction < 1:
            raise ConversionError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        if len(names) > 1:
            raise ConversionError(f"val_fraction partitions one split, but the source has {names}; pass "
                                  "split= (CLI --split) to pick one, or drop val_fraction")
    return names


def _write(target, source: Source, name: str | None, root: str) -> dict[str, Any]:
    """Write one dataset root through a local staging folder; its report entry."""
    with tempfile.TemporaryDirectory(prefix="tao-convert-") as staging:
        counts = target.write(source, Path(staging))
        files = publish(Path(staging), target.FILES, root)
    return {"split": name, "dest": root, "files": files, **counts}


def convert_dataset(from_format: str, to_format: str, src: str, dest: str,
                    split: Sequence[str] | str | None = None, *, val_fraction: float | None = None,
                    seed: int = 0, classes: Sequence[str] | str | None = None,
                    ignore_values: Sequence[int] = (255,), disparity_scale: float = 256.0,
                    overwrite: bool = False) -> ConversionReport:
    """Convert the dataset at ``src`` (``from_format``) into the TAO layout ``to_format``
    under ``dest``; returns a :class:`ConversionReport` (roots written, counts, classes, every
    dropped record with its reason, the ``dataset_format`` and spec values to use).

    Args:
        from_format / to_format: a pair of :func:`conversions` (e.g. ``"voc"``, ``"coco"``).
        src: the source dataset root (local folder or ``s3://`` prefix).
        dest: local folder or ``s3://`` prefix; see the module docstring for where each split goes.
        split: the source split(s) to convert (default: every named split, else the whole source).
        val_fraction: hold out this fraction of one split as ``DEST/val`` (rest ``DEST/train``).
        seed: the seed of that partition.
        classes: class names in id order (list, comma-separated string or a file, one per line);
            detection objects of other classes are dropped; semantic masks: line v = pixel value v.
        ignore_values: semantic-mask values meaning "unlabelled".
        disparity_scale: divisor of 16-bit PNG disparity in a ``stereo_pairs`` source.
        overwrite: replace files already at the destination (refused otherwise).

    Raises:
        ConversionError naming the file / option and the fix (unknown pair, layout not found,
        no usable sample, existing output); StorageError for S3 problems.
    """
    reader = registry.reader(from_format, to_format)
    target = registry.writer(to_format)
    report = ConversionReport(from_format, to_format, src, dest, skills=registry.TARGETS[to_format.lower()][1])
    with tempfile.TemporaryDirectory(prefix="tao-convert-src-") as tmp:
        opts = ConvertOptions(classes=_class_names(classes), ignore_values=tuple(int(v) for v in ignore_values),
                              disparity_scale=float(disparity_scale), scratch=Path(tmp) / "scratch")
        local = _local_source(src, Path(tmp))
        # every split is read (its layout checked) and every root checked before anything is written
        reads = [(name, reader.read(local, name, opts)) for name in _plan(reader, local, split, val_fraction)]
        parts = [(out_name, part) for name, source in reads
                 for out_name, part in (_partition(source, val_fraction, seed) if val_fraction else [(name, source)])]
        roots = [storage_for(dest).join(dest, name) if name else dest for name, _part in parts]
        refuse_existing(roots, target.FILES, overwrite)
        report.outputs = [_write(target, part, name, root) for (name, part), root in zip(parts, roots)]
    drops, clipped = Drops(), 0
    for _name, source in reads:
        drops.merge(source.drops)
        clipped += getattr(source, "clipped", [0])[0]
        report.notes += [n for n in source.notes if n not in report.notes]
    if clipped:
        report.notes.append(f"{clipped} box(es) partly outside their image clipped to it")
    source = reads[-1][1]  # every split of one source has the same classes and dataset_format
    report.classes = [{"id": i + 1, "name": n} for i, n in enumerate(source.classes)]
    report.dropped = drops.to_list()
    report.dataset_format = getattr(source, "dataset_format", to_format.lower())
    report.spec_hints = target.spec_hints(source)
    return report
