"""Durable job records in SQLite (WAL mode), safe under concurrent processes.

One row per job (train/evaluate/inference/export/... action, AutoML controller, AutoML trial).
The SDK, the CLI, AutoML controllers and job watchers may all open the same store file at the
same time, from different processes and threads:

* every write is a short ``BEGIN IMMEDIATE`` transaction (atomic read-modify-write);
* ``database is locked`` / ``busy`` errors are retried with backoff (on top of SQLite's
  10 s ``busy_timeout``), so they never escape to the caller unless the store is wedged;
* each :class:`JobStore` keeps one connection per thread and reopens it after ``fork()``;
* a terminal status (SUCCESS / FAILURE / CANCELED) never regresses, RUNNING never goes back to
  PENDING;
* secrets never land in the file: ``spec``, ``result`` and ``platform_handle`` go through
  :func:`redact` on every write. Real keys reach jobs through environment variables only.

The store must live on a local filesystem (WAL needs shared memory; NFS is not supported).

Typical use::

    store = JobStore("~/.tao-workspace/jobs.db")
    rec = store.create(JobRecord(skill="tao-train-rtdetr", action="train", spec=spec))
    store.set_status(rec.id, JobStatus.RUNNING, platform_handle=handle)
    store.set_status(rec.id, "SUCCESS", result={"best_checkpoint": "..."})
    store.list(skill="tao-train-rtdetr", status="SUCCESS", limit=10)
"""

from __future__ import annotations

import enum
import errno
import json
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from tao_sdk.errors import JobNotFoundError, JobStoreDamagedError, TaoSkillsError
from tao_sdk.secrets import REDACTED, redact  # noqa: F401  (re-exported: tao_sdk.jobstore.redact)

__all__ = [
    "JobRecord",
    "JobStatus",
    "JobStore",
    "new_job_id",
    "redact",
    "REDACTED",
    "SCHEMA_VERSION",
]

_T = TypeVar("_T")

def new_job_id() -> str:
    """Return a fresh job id: ``"job-"`` followed by 12 lowercase hex characters (uuid4)."""
    return "job-" + uuid.uuid4().hex[:12]


class JobStatus(str, enum.Enum):
    """Lifecycle state of a job.

    PENDING -> RUNNING -> SUCCESS | FAILURE | CANCELED (a job may also go straight from PENDING
    to a terminal state, e.g. a submission failure or a cancel before start).
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELED = "CANCELED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True for SUCCESS, FAILURE and CANCELED: the job will never change state again."""
        return self in _TERMINAL

    @classmethod
    def parse(cls, value: JobStatus | str) -> JobStatus:
        """Convert ``value`` (a JobStatus or a case-insensitive name) to a :class:`JobStatus`.

        Raises TaoSkillsError naming the allowed values when ``value`` is not a status.
        """
        if isinstance(value, JobStatus):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().upper())
            except ValueError:
                pass
        allowed = ", ".join(s.value for s in cls)
        raise TaoSkillsError(f"unknown job status {value!r}; use one of: {allowed}")


_TERMINAL = frozenset({JobStatus.SUCCESS, JobStatus.FAILURE, JobStatus.CANCELED})


@dataclass(kw_only=True)
class JobRecord:
    """One job as stored in the :class:`JobStore` (construct with keyword arguments).

    Attributes:
        id: unique id, ``"job-" + 12 hex`` (see :func:`new_job_id`); generated when omitted.
        skill: skill folder name, e.g. ``"tao-train-rtdetr"`` (``"tao-run-automl"`` for AutoML).
        action: action name, e.g. ``"train"``, ``"evaluate"``, ``"export"``.
        parent_id: job this one derives from (the train job of an export, the AutoML controller
            of a trial), or None.
        platform: platform name the job runs on (``"local"``, later slurm/kubernetes/docker).
        status: a :class:`JobStatus` (strings are accepted and converted).
        spec: the final, validated spec (secrets are redacted when stored).
        results_uri: where results are written/uploaded (local path or ``s3://...``), or None.
        created_at, updated_at, started_at, finished_at: epoch seconds (float) or None;
            ``started_at`` / ``finished_at`` are set by :meth:`JobStore.set_status`.
        platform_handle: what the platform needs to re-attach (pid/pgid/log path for local).
        result: free-form outcome (best child for AutoML, error message, KPIs).
        kind: ``"job"`` (default), ``"automl"`` (AutoML controller) or ``"trial"``.
    """

    id: str = field(default_factory=new_job_id)
    skill: str
    action: str
    parent_id: str | None = None
    platform: str = "local"
    status: JobStatus = JobStatus.PENDING
    spec: dict[str, Any] = field(default_factory=dict)
    results_uri: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    platform_handle: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    kind: str = "job"

    def __post_init__(self) -> None:
        self.status = JobStatus.parse(self.status)
        if self.updated_at is None:
            self.updated_at = self.created_at

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-serialisable dict (``status`` as its string value)."""
        d = asdict(self)
        d["status"] = self.status.value
        return d


_COLUMNS = [f.name for f in fields(JobRecord)]
_JSON_COLUMNS = frozenset({"spec", "platform_handle", "result"})
_UPDATABLE = frozenset(_COLUMNS) - {"id", "created_at", "updated_at"}

# Schema migrations: MIGRATIONS[i] brings user_version from i to i + 1. Append, never edit.
MIGRATIONS: list[list[str]] = [
    [
        """
        CREATE TABLE IF NOT EXISTS jobs (
            id              TEXT PRIMARY KEY,
            kind            TEXT NOT NULL DEFAULT 'job',
            skill           TEXT NOT NULL,
            action          TEXT NOT NULL,
            parent_id       TEXT,
            platform        TEXT NOT NULL,
            status          TEXT NOT NULL,
            spec            TEXT NOT NULL DEFAULT '{}',
            results_uri     TEXT,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL,
            started_at      REAL,
            finished_at     REAL,
            platform_handle TEXT NOT NULL DEFAULT '{}',
            result          TEXT NOT NULL DEFAULT '{}'
        )
        """,
        "CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at)",
        "CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent_id, created_at)",
        "CREATE INDEX IF NOT EXISTS jobs_skill_status ON jobs (skill, status)",
        "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status)",
    ],
]

#: Schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = len(MIGRATIONS)

_BUSY_TIMEOUT_MS = 10_000
_RETRY_DEADLINE_S = 60.0

# Store files (path, inode) this process found intact with PRAGMA quick_check.
_CHECKED: set[tuple[str, int]] = set()

# Connections inherited across fork() are never used nor closed in the child (SQLite forbids
# it); they are parked here so garbage collection does not finalize them either.
_ABANDONED: list[sqlite3.Connection] = []


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


#: SQLite result codes of a damaged store file, and of a filesystem that refuses writes
_DAMAGED_CODES = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})
_FULL_CODES = {"SQLITE_FULL": errno.ENOSPC, "SQLITE_READONLY": errno.EROFS}


def damaged_store_error(path: Path, why: str) -> JobStoreDamagedError:
    """The one-line error for a damaged job store at ``path`` (``why``: what was found)."""
    return JobStoreDamagedError(
        f"job store {path} is damaged ({why}); run `tao-skills jobs --recover` (Python: "
        f"tao_sdk.recover_job_store()) to move it aside as {path.name}.damaged-<time> and rebuild the "
        f"records from the job folders in {path.parent / 'jobs'}")


def _store_fault(path: Path, exc: sqlite3.DatabaseError) -> TaoSkillsError | None:
    """The expected error a SQLite failure of the store file means (damage, full or read-only
    disk), or None for anything else (a bug: let it propagate)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name in _DAMAGED_CODES or "not a database" in text or "malformed" in text:
        return damaged_store_error(path, str(exc))
    code = _FULL_CODES.get(name) or (errno.ENOSPC if "disk is full" in text else None)
    if code is not None:
        from tao_sdk.diskspace import WORKSPACE_FIX, disk_full_error

        return disk_full_error(path.parent, f"the job store {path.name}", code=code, fix=WORKSPACE_FIX)
    return None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


class JobStore:
    """SQLite job store; one file shared by every SDK process on the machine.

    ``JobStore(path)`` creates the file (and its parent directory) when missing, switches it to
    WAL mode and applies schema migrations. Instances are cheap, thread-safe (one connection per
    thread) and fork-safe (a child process reopens its own connection). They can be pickled to
    ``multiprocessing`` workers (only the path travels).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (or create) the job store at ``path`` (``~`` is expanded).

        Raises TaoSkillsError when the file cannot be put in WAL mode (e.g. a network filesystem)
        or was written by a newer SDK (schema version too high).
        """
        self.path = Path(os.path.expanduser(os.fspath(path))).absolute()
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._retry(self._migrate)
        ident = (str(self.path), self.path.stat().st_ino)
        if ident not in _CHECKED:  # once per file and process (~0.1 s for a 50 MB store)
            self.check()
            _CHECKED.add(ident)

    def check(self) -> None:
        """Raise JobStoreDamagedError (saying how to recover) unless SQLite's ``quick_check``
        finds the store file intact (opening a store runs it once per process; damage found
        later, by any query, raises the same error)."""
        rows = self._retry(lambda: self._conn().execute("PRAGMA quick_check").fetchall())
        problems = [line for r in rows if str(r[0]) != "ok" for line in str(r[0]).splitlines()
                    if line.strip() and not line.startswith("***")]
        if problems:
            more = f" and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
            raise damaged_store_error(self.path, f"integrity check: {problems[0]}{more}")

    # -- pickling: only the path travels ---------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"JobStore({str(self.path)!r})"

    # -- connection management ---------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        if conn is not None:  # inherited through fork(): never touch it in this process
            _ABANDONED.append(conn)
        conn = sqlite3.connect(
            str(self.path), timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            mode = self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                raise TaoSkillsError(
                    f"job store {self.path} cannot use WAL journaling (got {mode!r}); put it on "
                    "a local filesystem (set the workspace to a local disk, not NFS or memory)"
                )
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        local.conn = conn
        local.pid = os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (a later call reopens it). Safe to call twice."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            if self._local.pid == os.getpid():
                conn.close()
            else:
                _ABANDONED.append(conn)
            self._local.conn = None

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retry(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn``, retrying on ``database is locked``/``busy`` with jittered backoff."""
        deadline = time.monotonic() + _RETRY_DEADLINE_S
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.DatabaseError as exc:
                if not (isinstance(exc, sqlite3.OperationalError) and _is_busy(exc)):
                    fault = _store_fault(self.path, exc)
                    if fault is None:
                        raise
                    self.close()
                    raise fault from None
                if time.monotonic() >= deadline:
                    raise TaoSkillsError(
                        f"job store {self.path} stayed locked for over {_RETRY_DEADLINE_S:.0f} s "
                        f"({exc}); another process holds a write transaction - find it with "
                        f"`fuser {self.path}` and retry"
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(conn)`` inside a short ``BEGIN IMMEDIATE`` transaction, with retries."""

        def attempt() -> _T:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
                conn.execute("COMMIT")
                return out
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return self._retry(attempt)

    def _migrate(self) -> None:
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise TaoSkillsError(
                f"job store {self.path} has schema version {version} but this tao_sdk only "
                f"knows up to {SCHEMA_VERSION}; upgrade tao_sdk (pip install -U tao-skill-bank) "
                "or point the SDK at another workspace"
            )
        if version == SCHEMA_VERSION:
            return

        def apply(c: sqlite3.Connection) -> None:
            current = c.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
            for statements in MIGRATIONS[current:]:
                for sql in statements:
                    c.execute(sql)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._write(apply)

    # -- (de)serialisation ---------------------------------------------------------------------
    def _encode(self, name: str, value: Any) -> Any:
        if name in _JSON_COLUMNS:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise TaoSkillsError(
                    f"job field '{name}' must be a dict, got {type(value).__name__}"
                )
            try:
                return json.dumps(redact(value), sort_keys=True, default=_json_default)
            except (TypeError, ValueError) as exc:
                raise TaoSkillsError(
                    f"job field '{name}' is not JSON serialisable ({exc}); store plain "
                    "dicts/lists/strings/numbers (convert paths and objects to strings)"
                ) from exc
        if name == "status":
            return JobStatus.parse(value).value
        return value

    @staticmethod
    def _decode(row: sqlite3.Row | tuple[Any, ...]) -> JobRecord:
        data = dict(zip(_COLUMNS, row, strict=True))
        for name in _JSON_COLUMNS:
            data[name] = json.loads(data[name]) if data[name] else {}
        return JobRecord(**data)

    _SELECT = "SELECT " + ", ".join(_COLUMNS) + " FROM jobs"

    def _get(self, conn: sqlite3.Connection, job_id: str) -> JobRecord:
        row = conn.execute(self._SELECT + " WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(
                f"no job with id {job_id!r} in the job store {self.path}; run `tao-skills jobs` "
                "to list known job ids (ids look like 'job-1a2b3c4d5e6f')"
            )
        return self._decode(row)

    # -- public API ----------------------------------------------------------------------------
    def create(self, record: JobRecord) -> JobRecord:
        """Insert a new job record and return it as stored (secrets redacted).

        ``updated_at`` is set to now. Raises TaoSkillsError when a job with the same id exists
        (leave ``id`` unset to get a fresh one from :func:`new_job_id`).
        """
        now = time.time()
        values = {name: getattr(record, name) for name in _COLUMNS}
        values["updated_at"] = now
        encoded = [self._encode(name, values[name]) for name in _COLUMNS]
        sql = (
            f"INSERT INTO jobs ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
        )

        def op(conn: sqlite3.Connection) -> JobRecord:
            try:
                conn.execute(sql, encoded)
            except sqlite3.IntegrityError as exc:
                raise TaoSkillsError(
                    f"a job with id {record.id!r} already exists in {self.path}; create the "
                    "record without an explicit id to get a fresh one"
                ) from exc
            return self._get(conn, record.id)

        return self._write(op)

    def get(self, job_id: str) -> JobRecord:
        """Return the job ``job_id``.

        Raises JobNotFoundError (message suggests ``tao-skills jobs``) when it does not exist.
        """
        return self._retry(lambda: self._get(self._conn(), job_id))

    def list(
        self,
        skill: str | None = None,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        parent_id: str | None = None,
        limit: int | None = None,
        kind: str | None = None,
    ) -> list[JobRecord]:
        """Return jobs newest first (by ``created_at``), optionally filtered.

        Args:
            skill: only jobs of this skill (``"tao-train-rtdetr"``).
            status: one status or several (``["RUNNING", "PENDING"]``), case-insensitive.
            parent_id: only direct children of this job.
            limit: at most this many records (a positive int).
            kind: only ``"job"``, ``"automl"`` or ``"trial"`` records.
        """
        where: list[str] = []
        params: list[Any] = []
        if skill is not None:
            where.append("skill = ?")
            params.append(skill)
        if status is not None:
            statuses = (
                [status] if isinstance(status, (str, JobStatus)) else list(status)
            )
            values = [JobStatus.parse(s).value for s in statuses]
            where.append(f"status IN ({', '.join('?' for _ in values)})")
            params += values
        if parent_id is not None:
            where.append("parent_id = ?")
            params.append(parent_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = self._SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
                raise TaoSkillsError(f"limit must be a positive integer, got {limit!r}")
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._retry(lambda: self._conn().execute(sql, params).fetchall())
        return [self._decode(r) for r in rows]

    def children(self, job_id: str) -> list[JobRecord]:
        """Return the direct children of ``job_id`` (e.g. AutoML trials), OLDEST first.

        Raises JobNotFoundError when ``job_id`` itself does not exist.
        """

        def op() -> list[JobRecord]:
            conn = self._conn()
            self._get(conn, job_id)
            rows = conn.execute(
                self._SELECT + " WHERE parent_id = ? ORDER BY created_at ASC, rowid ASC",
                (job_id,),
            ).fetchall()
            return [self._decode(r) for r in rows]

        return self._retry(op)

    def update(self, job_id: str, **fields_: Any) -> JobRecord:
        """Atomically change fields of a job and return the stored record.

        Updatable fields: skill, action, parent_id, platform, status, spec, results_uri,
        started_at, finished_at, platform_handle, result, kind. ``updated_at`` is set to now.
        Dict fields (spec, result, platform_handle) are REPLACED, not merged: read, modify and
        pass the whole dict. Passing ``status`` behaves exactly like :meth:`set_status` (a
        terminal job never changes status; then the whole call is ignored).

        Raises JobNotFoundError for an unknown id, TaoSkillsError for an unknown field.
        """
        status = fields_.pop("status", None)
        if status is not None:
            return self.set_status(job_id, status, **fields_)
        return self._apply(job_id, None, fields_)

    def set_status(self, job_id: str, status: JobStatus | str, **fields_: Any) -> JobRecord:
        """Move a job to ``status`` (and set other fields in the same transaction).

        Rules, applied atomically against the stored record:
          * a terminal job (SUCCESS/FAILURE/CANCELED) never changes status: the call is ignored
            and the stored record is returned unchanged (so a late watcher cannot overwrite a
            cancel);
          * RUNNING never goes back to PENDING (ignored likewise);
          * entering RUNNING sets ``started_at`` (if not already set); entering a terminal
            state sets ``finished_at`` (unless passed explicitly).

        Check ``returned.status`` to see whether the change was applied.
        Raises JobNotFoundError for an unknown id, TaoSkillsError for a bad status or field.
        """
        return self._apply(job_id, JobStatus.parse(status), fields_)

    def _apply(
        self, job_id: str, status: JobStatus | None, fields_: dict[str, Any]
    ) -> JobRecord:
        unknown = sorted(set(fields_) - _UPDATABLE)
        if unknown:
            raise TaoSkillsError(
                f"cannot update job field(s) {', '.join(unknown)}; updatable fields are: "
                f"{', '.join(sorted(_UPDATABLE))}"
            )
        if "status" in fields_:  # only reachable through set_status(**{"status": ...})
            raise TaoSkillsError("pass the status as set_status's second argument")
        encoded = {name: self._encode(name, value) for name, value in fields_.items()}

        def op(conn: sqlite3.Connection) -> JobRecord:
            current = self._get(conn, job_id)
            changes = dict(encoded)
            now = time.time()
            if status is not None:
                if current.status.is_terminal:
                    return current
                if status is JobStatus.PENDING and current.status is JobStatus.RUNNING:
                    return current
                changes["status"] = status.value
                if status is JobStatus.RUNNING and current.started_at is None:
                    changes.setdefault("started_at", now)
                if status.is_terminal:
                    changes.setdefault("finished_at", now)
            changes["updated_at"] = now
            assignments = ", ".join(f"{name} = ?" for name in changes)
            conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ?", [*changes.values(), job_id]
            )
            return self._get(conn, job_id)

        return self._write(op)
