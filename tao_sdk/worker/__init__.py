"""The TAO Skill Bank worker: the runtime that executes one job on the compute node.

It honours the same command-line and results-folder contract as NVIDIA's TAO containers::

    python -m tao_sdk.worker <network> <action> -e spec.yaml [key=value ...]

- ``<network>``: one of :data:`NETWORKS` (the registered network plugins);
- ``<action>``: ``train``, ``distill``, ``quantize``, ``evaluate``, ``inference``, ``export``
  or ``gen_trt_engine``
  (:func:`supports` says which a network runs);
- ``spec.yaml``: the full nested TAO experiment spec (the shape of the skill's
  ``references/spec_template_<action>.yaml``), local path or ``s3://`` URI.

Structure: a network plugin per network (``tao_sdk.worker.networks.<name>``, registered in
:mod:`tao_sdk.worker.registry`) builds the model, its loss and its ONNX / TensorRT I/O; a task
(``tao_sdk.worker.tasks.<task>``) holds what the networks of a task share (datasets, metrics,
inference outputs, synthetic demo data); the engine (:mod:`tao_sdk.worker.engine`) runs the
train loop, checkpoints and the evaluate / inference / export drivers without knowing any
network by name.

What a run produces under ``<results_dir>/<action>/`` (or ``<action>.results_dir`` when set):
``status.json`` (TAO JSON Lines), ``experiment.yaml`` (the resolved spec, secrets redacted),
``log.txt``, and the action's artifacts (checkpoints + ``<prefix>_model_latest.pth``,
evaluation / inference outputs, the ONNX file...). A remote (``s3://``) results folder is
written through a local staging folder that is uploaded as files appear and always at the
end, also when the job fails.

Training is data-parallel over several processes when ``train.num_gpus`` > 1 or the
orchestrator's multi-node environment is set; the launch method (torchrun or spawned ranks)
comes from the skill's ``launch`` facts (see :mod:`tao_sdk.worker.distributed`).

Importing this package is cheap: no torch, transformers, onnx, jsonschema or sqlite3; they are
imported only when a job runs.
"""

from __future__ import annotations

from tao_sdk.worker.registry import ACTIONS, names, supports

__all__ = ["NETWORKS", "ACTIONS", "supports"]

#: Networks this worker implements (the registered plugins).
NETWORKS: tuple[str, ...] = names()
