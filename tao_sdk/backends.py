"""Which backend runs a (network, action), decided at plan time.

Three answers, in this order:

1. ``$TAO_SKILLS_ENTRYPOINT`` is set: that command, run as ``<cmd> <network> <action> -e spec.yaml``
   (a TAO container launcher, or a test double).
2. The built-in worker (``{python} -m tao_sdk.worker <network> <action> -e spec.yaml``, ``{python}``
   being the interpreter on the node, filled in by the platform) when it is
   installed (``tao_sdk.worker`` and ``torch`` importable) and ``tao_sdk.worker.supports(network,
   action)`` says it implements that pair.
3. A TAO container entrypoint on ``PATH``: TAO containers expose each network as a command,
   ``<network> <action> -e spec.yaml`` (e.g. ``rtdetr train -e spec.yaml``).

Otherwise the answer is "none": :meth:`Backend.require` raises a :class:`PlatformError` that says
what to install. ``create_job`` (also with ``dry_run``) calls it before anything is submitted, so
a network no backend can run fails at plan time, AutoML included.

>>> from tao_sdk.backends import resolve_backend
>>> resolve_backend("rtdetr", "train").kind
'worker'
>>> resolve_backend("rtdetr", "train").command("/jobs/j1/spec.yaml")[-4:]
['rtdetr', 'train', '-e', '/jobs/j1/spec.yaml']
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import asdict, dataclass
from typing import Any

from .errors import PlatformError
from .extras import install_command
from .platforms.base import NODE_PYTHON

#: Set to a command (e.g. ``/opt/tao/bin/tao-container``) to force the TAO container-style
#: entrypoint ``<cmd> <network> <action> -e spec.yaml`` instead of the project's worker.
ENTRYPOINT_ENV = "TAO_SKILLS_ENTRYPOINT"
#: How to install the built-in worker (torch first, so no CUDA wheels are pulled).
WORKER_INSTALL = install_command("worker")

WORKER, ENTRYPOINT, NONE = "worker", "entrypoint", "none"


@dataclass(frozen=True)
class Backend:
    """The answer for one (network, action).

    Attributes:
        network / action: what is to run.
        kind: ``"worker"`` (built-in worker), ``"entrypoint"`` (a TAO container-style command) or
            ``"none"`` (nothing here can run it).
        argv: the command before ``-e spec.yaml`` (empty when kind is ``"none"``).
        detail: one line saying which backend and why (or, for ``"none"``, what to install).
        image: the container image the job runs in (container platforms: docker), else None.
    """

    network: str
    action: str
    kind: str
    argv: tuple[str, ...]
    detail: str
    image: str | None = None

    @property
    def available(self) -> bool:
        """True when something can run it."""
        return self.kind != NONE

    def require(self) -> "Backend":
        """This backend, or PlatformError naming what to install when nothing can run it."""
        if not self.available:
            raise PlatformError(self.detail)
        return self

    def command(self, spec_path: str) -> list[str]:
        """The argv that runs the job on ``spec_path`` (raises like :meth:`require`)."""
        return [*self.require().argv, "-e", spec_path]

    def preflight(self, spec: dict[str, Any]) -> None:
        """Refuse at plan time a spec the built-in worker cannot run here (e.g. a quantize
        mode whose library is not installed, an unknown distill criterion); the check is
        torch-free. Other backends check their own specs when they run."""
        if self.kind == WORKER:
            from .worker.registry import preflight

            preflight(self.network, self.action, spec)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (``argv`` as a list)."""
        return {**asdict(self), "argv": list(self.argv)}


def worker_capability() -> tuple[bool, Any]:
    """(installed, worker module): installed is True when ``tao_sdk.worker`` and ``torch`` are
    importable. The worker package itself is import-cheap (no torch at import)."""
    try:
        import tao_sdk.worker as worker
    except ImportError:
        return False, None
    return importlib.util.find_spec("torch") is not None, worker


def _container_hint(command: str, action: str, container: str | None) -> str:
    where = f" ({container})" if container else ""
    return (f"run it inside NVIDIA's TAO container that provides the '{command}' command{where}, put a "
            f"'{command}' entrypoint on PATH, or set {ENTRYPOINT_ENV} to a launcher run as "
            f"`<launcher> {command} {action} -e spec.yaml`")


def _none(network: str, action: str, installed: bool, worker: Any, container: str | None,
          command: str, verb: str, model_type: str | None = None) -> Backend:
    if worker is not None and worker.supports(network, action, model_type):
        why = f"the built-in worker implements it but is not installed ({WORKER_INSTALL})"
    elif worker is not None:
        why = (f"the built-in worker runs {', '.join(worker.NETWORKS)} ({', '.join(worker.ACTIONS)}), "
               f"not '{network} {action}'")
    else:
        why = "the built-in worker is not part of this installation"
    return Backend(network, action, NONE, (), f"nothing can run '{network} {action}': {why}, and no "
                   f"'{command}' TAO entrypoint is on PATH; {_container_hint(command, verb, container)}")


def resolve_backend(network: str, action: str, *, container: str | None = None,
                    entry: tuple[str, str] | None = None, model_type: str | None = None) -> Backend:
    """Which backend runs ``action`` of ``network`` here (see the module doc for the order).

    Args:
        network: TAO network name (``rtdetr``, ``depth_net``...), the skill's ``network``.
        action: TAO action (``train``, ``evaluate``, ``gen_trt_engine``...).
        container: the TAO container that ships the network (from skill_info), named in the
            "none" message so the user knows what to pull.
        entry: (command, verb) of the TAO container when TAO maps the action to another network
            or verb (e.g. ``("image", "validate")`` for ``validate_images``); default (network, action).
        model_type: the ``model.model_type`` the skill pins (skill_info), for networks whose worker
            plugin builds only some model types (``depth_net``: the stereo ones).
    """
    command, verb = entry or (network, action)
    forced = os.environ.get(ENTRYPOINT_ENV)
    if forced:
        return Backend(network, action, ENTRYPOINT, (*forced.split(), command, verb),
                       f"TAO container entrypoint forced by {ENTRYPOINT_ENV}: {forced}")
    installed, worker = worker_capability()
    if installed and worker.supports(network, action, model_type):
        # the node's interpreter, filled in by the platform (no path of this machine in the job)
        return Backend(network, action, WORKER, (NODE_PYTHON, "-m", "tao_sdk.worker", network, action),
                       "built-in worker (python -m tao_sdk.worker)")
    found = shutil.which(command)
    if found:
        return Backend(network, action, ENTRYPOINT, (found, verb), f"TAO container entrypoint on PATH: {found}")
    return _none(network, action, installed, worker, container, command, verb, model_type)


def tao_container(info: dict[str, Any], action: str, deploy: bool = False) -> tuple[str | None, tuple[str, str]]:
    """(image, (command, verb)) of NVIDIA's TAO container that runs ``action``, from a skill_info
    dict's ``tao_container``: TensorRT actions (and ``deploy``) in the deploy image, per-action images
    (``action_images``, e.g. data-services for dataset conversion), else the network's image; the
    command is ``<network> <action>`` unless TAO maps the action to another network/verb."""
    containers = info.get("tao_container") or {}
    tensorrt = deploy or action == "gen_trt_engine"
    image = (containers.get("action_images") or {}).get(action) or \
        containers.get("deploy_image" if tensorrt else "image") or containers.get("image")
    command = (containers.get("commands") or {}).get(action)
    return image, (tuple(command.split(" ", 1)) if command else (info.get("network"), action))


def skill_container(skill: Any, action: str, deploy: bool = False) -> tuple[str | None, tuple[str, str]]:
    """:func:`tao_container` of a model skill."""
    return tao_container({**skill.info, "network": skill.network}, action, deploy)


def skill_backend(skill: Any, action: str, deploy: bool = False) -> Backend:
    """:func:`resolve_backend` for a model skill, with the TAO container facts of its skill_info
    (:func:`skill_container`): the image named when nothing here can run it, and the container
    command where TAO maps the action to another network/verb."""
    image, entry = skill_container(skill, action, deploy)
    return resolve_backend(skill.network, action, container=image, entry=entry,
                           model_type=skill.info.get("model_type"))


def skill_backends(skill: Any) -> dict[str, Backend]:
    """{action: Backend} for every action of a model skill ({} for tao-run-automl)."""
    return {action: skill_backend(skill, action) for action in skill.actions} if skill.network else {}


def summary(backends: dict[str, Backend]) -> str:
    """One word for a skill: the train action's backend kind (else the first action's), ``-`` if none."""
    chosen = backends.get("train") or next(iter(backends.values()), None)
    return chosen.kind if chosen else "-"


__all__ = ["Backend", "ENTRYPOINT_ENV", "WORKER_INSTALL", "resolve_backend", "skill_backend", "skill_container", "skill_backends", "tao_container", "summary", "worker_capability"]
