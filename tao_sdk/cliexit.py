"""How ``tao-skills`` ends on a fault that is not the user's: a stdout whose reader went away
(``tao-skills --json jobs | head``) ends quietly, an unexpected error leaves its traceback in a
file (the CLI prints one line naming it)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

__all__ = ["EXIT_CLOSED_PIPE", "closed_pipe", "save_traceback"]

#: exit status when the reader of stdout went away (``| head``): 128 + SIGPIPE, as a shell reports it
EXIT_CLOSED_PIPE = 141


def closed_pipe() -> int:
    """stdout's reader went away: point stdout at /dev/null (so the interpreter's exit flush stays
    quiet) and return :data:`EXIT_CLOSED_PIPE`."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_CLOSED_PIPE


def save_traceback(exc: BaseException) -> str:
    """Write ``exc``'s traceback (after the command line) to
    ``<workspace>/logs/cli-traceback-<time>-<pid>.txt``, or to the temporary folder when the
    workspace cannot be written; returns the path."""
    from .workspace import default_workspace

    text = f"tao-skills {' '.join(sys.argv[1:])}\n" + "".join(traceback.format_exception(exc))
    name = f"cli-traceback-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
    for folder in (lambda: default_workspace().root / "logs", lambda: Path(tempfile.gettempdir())):
        try:
            path = folder() / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return str(path)
        except Exception:  # noqa: BLE001 - try the next folder
            continue
    return "(nowhere: no writable folder)"
