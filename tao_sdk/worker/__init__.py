"""The TAO Skill Bank worker: the runtime that executes one job on the compute node.

It honours the same command-line and results-folder contract as NVIDIA's TAO containers::

    python -m tao_sdk.worker <network> <action> -e spec.yaml [key=value ...]

- ``<network>``: ``rtdetr`` or ``deformable_detr``;
- ``<action>``: ``train``, ``evaluate``, ``inference``, ``export`` or ``gen_trt_engine``;
- ``spec.yaml``: the full nested TAO experiment spec (the shape of the skill's
  ``references/spec_template_<action>.yaml``), local path or ``s3://`` URI.

What a run produces under ``<results_dir>/<action>/`` (or ``<action>.results_dir`` when set):
``status.json`` (TAO JSON Lines), ``experiment.yaml`` (the resolved spec, secrets redacted),
``log.txt``, and the action's artifacts (checkpoints ``model_epoch_XXX.pth`` +
``<prefix>_model_latest.pth``, ``detections.json`` and annotated images, the ONNX file...).
A remote (``s3://``) results folder is written through a local staging folder that is uploaded
as files appear and always at the end, also when the job fails.

Training is data-parallel over several processes when ``train.num_gpus`` > 1 or the
orchestrator's multi-node environment is set (``WORLD_SIZE`` nodes, ``NODE_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``, ``NUM_GPU_PER_NODE``): RT-DETR through torchrun, Deformable
DETR through spawned ranks, ``gloo`` on CPU and ``nccl`` on GPU, rank 0 writing the results
folder (see :mod:`tao_sdk.worker.distributed`).

Importing this package is cheap: torch, transformers and onnx are imported only when a job runs.
"""

from __future__ import annotations

__all__ = ["NETWORKS", "ACTIONS", "supports"]

#: Networks this worker implements.
NETWORKS = ("rtdetr", "deformable_detr")
#: Actions this worker implements (for every network).
ACTIONS = ("train", "evaluate", "inference", "export", "gen_trt_engine")


def supports(network: str, action: str) -> bool:
    """True when this worker implements ``action`` for ``network``. Import-cheap (no torch): the
    SDK asks it at plan time which backend can run a job (:mod:`tao_sdk.backends`)."""
    return network in NETWORKS and action in ACTIONS
