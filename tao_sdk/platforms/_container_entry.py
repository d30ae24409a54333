"""What the docker platform runs as PID 1 of a job's container (stdlib only, no package needed).

    python3 -S /opt/tao-sdk/_container_entry.py <secrets_file|-> <exit_status_path> -- <command> ...

The docker platform mounts this file and ``_supervise.py`` read-only into the container. It:

1. reads the job's secrets from the 0600 hand-over file (``export NAME='value'`` lines, in the
   job's work folder, bind-mounted) into its own environment and deletes the file before anything
   starts: secrets never reach the engine's container config (``docker inspect``), the command line
   or a file that outlives the start;
2. sends stderr to stdout, so the engine's log (``docker logs``) is one stream in order;
3. runs the command under :mod:`_supervise` (forwards SIGTERM from ``docker stop``, stops what the
   command left behind, writes the exit code to ``exit_status_path`` in the mounted work folder,
   refuses to start when the submission was given up: an ``abandoned`` file there).
"""

from __future__ import annotations

import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _supervise  # noqa: E402  (next to this file, in the container and in the package)


def _load_secrets(path: str) -> None:
    """Put the variables of the hand-over file into os.environ and delete the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        sys.stderr.write(f"[tao-docker] secrets file {path} is gone; the job runs without its secrets\n")
        return
    except PermissionError:
        sys.stderr.write(f"[tao-docker] uid {os.getuid()} cannot read the secrets file {path}: run the "
                         "container as the submitting user (docker setting user)\n")
        raise SystemExit(126)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            os.environ[name] = value


def main(argv: list[str]) -> int:
    """Entry point; ``argv`` is ``[secrets_file or "-", exit_status_path, "--", command...]``."""
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: _container_entry.py <secrets_file|-> <exit_status_path> -- <command> ...\n")
        return 2
    os.dup2(1, 2)
    if argv[0] != "-":
        _load_secrets(argv[0])
    return _supervise.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
