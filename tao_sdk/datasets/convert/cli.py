"""``tao-skills dataset convert``: the argparse wiring of :func:`convert_dataset`."""

from __future__ import annotations

import argparse
import json

from . import convert_dataset, conversions

__all__ = ["add_convert_parser", "cmd_convert"]


def _epilog() -> str:
    rows = [f"  --from {c['from']:<15} --to {c['to']:<14} {c['source']}" for c in conversions()]
    return ("conversions:\n" + "\n".join(rows) +
            "\n\nNamed source splits go to DEST/<split> (all by default); a source without splits goes to DEST, "
            "or to DEST/train + DEST/val with --val-fraction. See references/dataset-conversion.md.")


def add_convert_parser(dataset_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``convert`` on the ``tao-skills dataset`` sub-command group; returns its parser."""
    p = dataset_subparsers.add_parser(
        "convert", help="convert KITTI / VOC / YOLO / LabelMe / masks / Cityscapes / stereo data into a TAO layout",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="from_format", required=True, metavar="FORMAT", help="source layout (see below)")
    p.add_argument("--to", dest="to_format", required=True, metavar="FORMAT", help="coco, coco_panoptic or stereo")
    p.add_argument("src", help="source dataset root (folder or s3:// prefix)")
    p.add_argument("dest", help="output root (folder or s3:// prefix)")
    p.add_argument("--split", action="append", metavar="NAME",
                   help="source split to convert, into DEST/NAME (repeatable; default: every named split)")
    p.add_argument("--val-fraction", type=float, metavar="F",
                   help="hold out F of the samples as DEST/val (the rest DEST/train)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --val-fraction partition (default 0)")
    p.add_argument("--classes", metavar="NAMES|FILE",
                   help="class names in id order: a,b,c or a file with one per line (masks: line v = value v)")
    p.add_argument("--ignore-value", type=int, action="append", metavar="V",
                   help="semantic-mask value meaning unlabelled (repeatable; default 255)")
    p.add_argument("--disparity-scale", type=float, default=256.0, metavar="S",
                   help="divisor of 16-bit PNG disparity in a stereo_pairs source (default 256)")
    p.add_argument("--overwrite", action="store_true", help="replace files already at DEST")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    p.set_defaults(func=cmd_convert)
    return p


def cmd_convert(args: argparse.Namespace) -> int:
    """Run the conversion; print the report (``--json``: the whole report as JSON)."""
    report = convert_dataset(args.from_format, args.to_format, args.src, args.dest, args.split,
                             val_fraction=args.val_fraction, seed=args.seed, classes=args.classes,
                             ignore_values=tuple(args.ignore_value or (255,)),
                             disparity_scale=args.disparity_scale, overwrite=args.overwrite)
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0
    for out in report.outputs:
        counts = ", ".join(f"{k} {v}" for k, v in out.items() if isinstance(v, int))
        print(f"{out['dest']}: {counts}")
    print(f"classes: {', '.join(c['name'] for c in report.classes) or '-'}")
    for d in report.dropped:
        print(f"dropped {d['count']}: {d['reason']} (e.g. {d['examples'][0]})")
    for note in report.notes:
        print(f"note: {note}")
    hints = "".join(f" --set {k}={json.dumps(v)}" for k, v in report.spec_hints.items())
    print(f"use: --dataset-format {report.dataset_format}{hints} ({report.skills})")
    return 0
