"""``tao-skills dataset ...``: the dataset commands (``validate``, ``convert``).

:data:`DATASET_COMMANDS` holds one ``add(subparsers)`` per sub-command, so a new dataset command
is one function and one line.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable


def cmd_validate(args: argparse.Namespace) -> int:
    """``tao-skills dataset validate SKILL ACTION --train-dataset URI ...``: exit 0 clean, 2 with errors."""
    from ..clispec import datasets_of as _datasets
    from ..spec import parse_set_options
    from .check import validate_datasets

    spec = None
    if args.parent or args.pretrained_model:  # the job's own spec: settings inherited from the parent's training
        from ..jobs import plan_job

        spec = plan_job(args.skill, args.action, datasets=_datasets(args), spec_overrides=parse_set_options(args.sets),
                        base_spec=args.spec_file, parent_job_id=args.parent, dataset_format=args.dataset_format,
                        pretrained_model=args.pretrained_model, automl_policy="off", validate_datasets=False).spec
    report = validate_datasets(args.skill, args.action, _datasets(args), dataset_format=args.dataset_format,
                               spec=spec, spec_overrides=parse_set_options(args.sets), base_spec=args.spec_file,
                               use_cache=not args.no_cache)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 2


def add_validate_parser(sub: Any) -> None:
    """Add ``validate`` to the ``tao-skills dataset`` sub-commands ``sub``."""
    from ..clispec import add_spec_options as _add_spec_options

    p = sub.add_parser("validate", help="check every dataset file an action reads (exit 0 clean, 2 with errors)",
                       description="Check every file the skill's SKILL.md dataset table names for ACTION: COCO "
                                   "detection / panoptic, label maps, stereo annotations.txt, calibration sets; "
                                   "local paths and s3:// (archives streamed within TAO_DATASET_VALIDATE_MAX_BYTES / "
                                   "_SECONDS). Each problem names the file, the record and the fix.")
    _add_spec_options(p, validate_flag=False)
    p.add_argument("--no-cache", action="store_true", help="check again even where the files are unchanged")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    p.set_defaults(func=cmd_validate)


def add_convert_parser(sub: Any) -> None:
    """Add ``convert`` (:mod:`tao_sdk.datasets.convert.cli`) to the ``tao-skills dataset`` sub-commands."""
    from .convert.cli import add_convert_parser as add

    add(sub)


#: The ``dataset`` sub-commands: one ``add(subparsers)`` each.
DATASET_COMMANDS: list[Callable[[Any], None]] = [add_validate_parser, add_convert_parser]


def add_dataset_commands(sub: Any) -> argparse.ArgumentParser:
    """Add ``tao-skills dataset`` and every :data:`DATASET_COMMANDS` entry to the top-level ``sub``."""
    parser = sub.add_parser("dataset", help="users' datasets: validate them before a job (and convert them)")
    commands = parser.add_subparsers(dest="dataset_command", required=True)
    for add in DATASET_COMMANDS:
        add(commands)
    return parser
