"""The time and byte budget of one dataset validation, and a stream that spends it.

Limits: ``TAO_DATASET_VALIDATE_MAX_BYTES`` (default 20G; K/M/G/T suffixes) bytes read from
storage in all, ``TAO_DATASET_VALIDATE_MAX_SECONDS`` (default 300) seconds. When one runs out the
file being read is left unfinished, the report says so (``budget.complete`` false and a warning
naming the file and the variable to raise) and every other check still runs.
"""

from __future__ import annotations

import io
import os
import time
from typing import BinaryIO

from ..datacache import parse_bytes
from .problems import BudgetUse

MAX_BYTES_ENV = "TAO_DATASET_VALIDATE_MAX_BYTES"
MAX_SECONDS_ENV = "TAO_DATASET_VALIDATE_MAX_SECONDS"
DEFAULT_MAX_BYTES = 20 * 1024**3
DEFAULT_MAX_SECONDS = 300.0


class BudgetExceeded(Exception):
    """The validation's byte or time budget ran out (caught by the validators' reader)."""


class Budget:
    """Bytes and seconds a validation may spend (see the module docstring)."""

    def __init__(self, byte_limit: int | None = None, time_limit: float | None = None) -> None:
        raw = os.environ.get(MAX_BYTES_ENV, "").strip()
        self.byte_limit = byte_limit if byte_limit is not None else (
            parse_bytes(raw, MAX_BYTES_ENV) if raw else DEFAULT_MAX_BYTES)
        self.time_limit = time_limit if time_limit is not None else float(
            os.environ.get(MAX_SECONDS_ENV, "").strip() or DEFAULT_MAX_SECONDS)
        self.started = time.monotonic()
        self.bytes_read = 0
        self.complete = True

    def charge(self, n: int) -> None:
        """Count ``n`` bytes read; raise :class:`BudgetExceeded` past a limit."""
        self.bytes_read += n
        if self.bytes_read > self.byte_limit:
            self.complete = False
            raise BudgetExceeded(f"{self.byte_limit:,} bytes read ({MAX_BYTES_ENV})")
        if time.monotonic() - self.started > self.time_limit:
            self.complete = False
            raise BudgetExceeded(f"{self.time_limit:.0f} s spent ({MAX_SECONDS_ENV})")

    def use(self) -> BudgetUse:
        """What was spent, for the report."""
        return BudgetUse(bytes_read=self.bytes_read, byte_limit=self.byte_limit,
                         seconds=round(time.monotonic() - self.started, 3), time_limit=self.time_limit,
                         complete=self.complete)


class MeteredStream(io.RawIOBase):
    """A read-only stream over ``raw`` that charges every byte to ``budget``."""

    def __init__(self, raw: BinaryIO, budget: Budget) -> None:
        self.raw, self.budget = raw, budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.budget.charge(n)
        return n

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            super().close()
