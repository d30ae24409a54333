"""Plan-time answer of the docker platform: which image runs a job, with which command, and
whether the image must be pulled first (``create_job(..., platform="docker", dry_run=True)``).

Order: the per-job ``image``, the setting ``image``, the setting ``worker_image`` for what the
built-in worker runs, else NVIDIA's TAO image the skill names for the action
(:func:`tao_sdk.backends.skill_container`). In the worker image the command is
``python3 -m tao_sdk.worker <network> <action>``; in any other image TAO's own entrypoint
``<network> <action>`` (or ``<entrypoint setting> <network> <action>``), ``-e spec.yaml`` appended.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from tao_sdk.backends import ENTRYPOINT, NONE, WORKER, Backend, skill_container, worker_capability
from tao_sdk.errors import PlatformError
from tao_sdk.platforms.base import NODE_PYTHON

__all__ = ["container_backend", "ngc_login_hint", "pull_note"]


def ngc_login_hint(cli: str, image: str) -> str:
    """What to run before an ``nvcr.io`` image can be pulled (empty for other registries)."""
    if not image.startswith("nvcr.io/"):
        return ""
    return (f"nvcr.io needs NGC credentials: run `{Path(cli).name} login nvcr.io -u '$oauthtoken'` "
            "(password: your NGC API key from https://ngc.nvidia.com/setup/api-key) before submitting")


def _worker_runs(skill: Any, action: str) -> bool:
    _installed, worker = worker_capability()
    return worker is not None and worker.supports(skill.network, action, skill.info.get("model_type"))


def _choose(platform: Any, skill: Any, action: str, deploy: bool, image: str | None) -> tuple[str | None, str]:
    """(image, why)."""
    cfg = platform.config
    if image:
        return image, "the job's image"
    if cfg.get("image"):
        return str(cfg["image"]), "docker setting image"
    if cfg.get("worker_image") and _worker_runs(skill, action):
        return str(cfg["worker_image"]), "docker setting worker_image (built-in worker)"
    found, _entry = skill_container(skill, action, deploy)
    return found, "the skill's TAO image (skill_info tao_container)"


def pull_note(platform: Any, cli: str, image: str) -> tuple[bool, str]:
    """(usable, sentence): whether ``image`` is on this machine and, if not, what submit does."""
    present = platform._run(["image", "inspect", image], timeout=60, check=False).returncode == 0
    name = Path(cli).name
    if present:
        return True, f"image present on this machine ({name})"
    if str(platform.config.get("pull") or "missing") == "never":
        return False, (f"image {image} is not on this machine and the docker setting pull is never: pull it "
                       f"first (`{name} pull {image}`)")
    login = ngc_login_hint(cli, image)
    size = "; TAO images are several GB" if "/nvidia/tao/" in image else ""
    return True, f"image not on this machine: submit pulls it (`{name} pull {image}`{size})" + (
        f"; {login}" if login else "")


def container_backend(platform: Any, skill: Any, action: str, deploy: bool = False,
                      image: str | None = None) -> Backend:
    """The :class:`~tao_sdk.backends.Backend` of ``action`` of ``skill`` on the docker platform
    ``platform``: kind ``worker`` (worker image) or ``entrypoint`` (TAO's command in the image),
    ``image`` set, ``detail`` naming the image, why it was chosen and when it is pulled; kind
    ``none`` (with what to do) when no engine answers or the image cannot be had."""
    chosen, why = _choose(platform, skill, action, deploy, image)
    network = skill.network
    if not chosen:
        return Backend(network, action, NONE, (), f"no container image for '{network} {action}': the skill names "
                       "none; give the job an image (--image) or set the docker setting image")
    try:
        cli = platform._engine()[0]
    except PlatformError as exc:
        return Backend(network, action, NONE, (), str(exc), image=chosen)
    usable, note = pull_note(platform, cli, chosen)
    worker = chosen == platform.config.get("worker_image")
    if worker:
        argv: tuple[str, ...] = (NODE_PYTHON, "-m", "tao_sdk.worker", network, action)
        what = "built-in worker (python -m tao_sdk.worker)"
    else:
        command, verb = skill_container(skill, action, deploy)[1]
        launcher = shlex.split(str(platform.config.get("entrypoint") or ""))
        argv = (*launcher, command, verb)
        what = f"TAO entrypoint `{' '.join(argv)}`"
    detail = f"{what} in container {chosen} ({why}; {Path(cli).name}); {note}"
    return Backend(network, action, (WORKER if worker else ENTRYPOINT) if usable else NONE,
                   argv if usable else (), detail, image=chosen)
