"""Errors raised by the worker.

A :class:`WorkerError` is an *expected* failure (bad spec value, missing dataset file, corrupt
annotations...). Its message names the file or dotted spec key at fault and says what to change;
the worker writes it as the ``message`` of the FAILURE line in ``status.json``.
"""

from __future__ import annotations

from tao_sdk.errors import TaoSkillsError


class WorkerError(TaoSkillsError):
    """An expected job failure; the message names the file / spec key and the fix."""


class DatasetError(WorkerError):
    """A dataset file is missing, unreadable or inconsistent with the spec."""


class SpecError(WorkerError):
    """A spec value this worker cannot run with (the message names the dotted key)."""


class UnsafeArchiveError(DatasetError):
    """A tar archive holds a member that would be written outside the extraction folder."""


class JobTerminated(WorkerError):
    """The job received SIGTERM / SIGINT (cancelled by the platform or the user)."""
