"""Compute platforms: one task description (:class:`JobTask`), many backends.

SkyPilot-style: the SDK describes *what* to run once and hands it to a :class:`Platform`
(``get_platform("local")``, ``get_platform("slurm")``, ``get_platform("docker")``; kubernetes later). A platform returns a
JSON-serialisable *handle* that the job store keeps, so any later process (a restarted SDK, the
CLI) can re-attach with ``get_platform(name).poll(handle)`` / ``cancel(handle)``.
"""

from tao_sdk.platforms.base import (
    NODE_PYTHON,
    JobTask,
    Platform,
    PlatformState,
    get_platform,
    known_platforms,
    register_platform,
)

__all__ = [
    "NODE_PYTHON",
    "JobTask",
    "Platform",
    "PlatformState",
    "get_platform",
    "known_platforms",
    "register_platform",
]
