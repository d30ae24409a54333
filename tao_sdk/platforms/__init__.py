"""Compute platforms: one task description (:class:`JobTask`), many backends.

SkyPilot-style: the SDK describes *what* to run once and hands it to a :class:`Platform`
(``get_platform("local")``, ``get_platform("slurm")``, ``get_platform("docker")``; kubernetes later). A platform returns a
JSON-serialisable *handle* that the job store keeps, so any later process (a restarted SDK, the
CLI) can re-attach with ``get_platform(name).poll(handle)`` / ``cancel(handle)``.
"""

# the package is the seam defined in base: the same names, listed once (base.__all__)
from tao_sdk.platforms.base import *  # noqa: F403
from tao_sdk.platforms.base import __all__  # noqa: F401
