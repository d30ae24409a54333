"""Multi-process data-parallel training (DDP) for the worker: launch, rendezvous, helpers.

How a train job becomes several processes, as TAO does it:

- **Trigger.** ``train.num_gpus`` > 1 (processes per node; without a GPU that many CPU
  processes), or the orchestrator's multi-node environment: ``WORLD_SIZE`` (number of
  *nodes*), ``NODE_RANK`` (``RANK`` when unset), ``MASTER_ADDR`` (``localhost``),
  ``MASTER_PORT`` (``29500``), ``NUM_GPU_PER_NODE`` (processes per node; else the visible GPU
  count, else ``train.num_gpus``). As in TAO, ``WORLD_SIZE`` overrides ``train.num_nodes`` /
  ``num_gpus`` / ``gpu_ids``, and ``RANK`` is set from ``NODE_RANK`` when unset. On one node
  without ``MASTER_PORT`` a free port is picked (concurrent jobs do not collide).
  ``train.gpu_ids`` follow TAO: with ``num_gpus != len(gpu_ids)`` the job uses
  ``max(num_gpus, len(gpu_ids))`` GPUs, ``0..n-1`` unless ``gpu_ids`` has exactly that length.
- **Launch method**: from the skill's ``launch`` facts (``skill_info.yaml``) or the network
  plugin (:func:`launcher_for`).
- **torchrun** (RT-DETR in TAO): the worker re-launches itself as
  ``python -m torch.distributed.run --nnodes=N --node-rank=R --nproc-per-node=M
  --master-addr=A --master-port=P -m tao_sdk.worker <network> train -e spec.yaml [overrides]``
  with ``CUDA_VISIBLE_DEVICES`` set from the GPU ids on a GPU node.
- **spawn** (Lightning-managed networks in TAO): the ``python`` process spawns its local ranks
  itself (``torch.multiprocessing`` spawn) and supervises them; each rank uses the device
  ``TAO_VISIBLE_DEVICES[local_rank]``.
- **Inside a rank** (:func:`init`): ``init_process_group`` (``nccl`` on GPU, ``gloo`` on CPU),
  train data split by ``DistributedSampler``, the model wrapped in
  ``DistributedDataParallel``, ``dataset.batch_size`` per process (effective batch =
  batch_size x world_size, as TAO). Only rank 0 writes ``status.json``, ``log.txt``,
  ``experiment.yaml``, checkpoints and uploads. Validation is sharded: every rank predicts its
  slice of the validation images, rank 0 gathers the detections and computes the COCO metrics.
- **Failures**: every rank exits non-zero; a failing rank leaves its message in the
  rendezvous store, so rank 0's FAILURE line names the rank and the real error (not the
  "connection closed" it saw). When no rank could write it (a rank was killed), the launching
  process writes the FAILURE line itself on node 0.

Other actions (evaluate, inference, export, gen_trt_engine) run in one process; under a
launcher with several ranks, ranks other than 0 exit at once.
"""

from __future__ import annotations

import subprocess  # noqa: F401 - tests patch ``D.subprocess.Popen``

from tao_sdk.worker.distributed.collectives import (PeerFailed, agree, all_reduce_mean, barrier,
                                                     gather_to_main, local_first, sync_buffers)
from tao_sdk.worker.distributed.failures import rank_failure_message, record_failure
from tao_sdk.worker.distributed.launching import (GRACE_S, _child_env, bind_rank_to_job,
                                                   launch)
from tao_sdk.worker.distributed.planning import (DEFAULT_MASTER_PORT, LAUNCH_ENV,
                                                  LAUNCHER_PID_ENV, LaunchPlan, free_port,
                                                  in_launched_rank, launcher_for,
                                                  parse_device_list, plan_launch,
                                                  single_process_notes)
from tao_sdk.worker.distributed.rank import (DistState, init, launch_notes, rank_env, shutdown,
                                              state)

__all__ = [
    "DEFAULT_MASTER_PORT",
    "LaunchPlan",
    "DistState",
    "PeerFailed",
    "plan_launch",
    "launch",
    "launcher_for",
    "rank_env",
    "in_launched_rank",
    "bind_rank_to_job",
    "init",
    "shutdown",
    "state",
    "local_first",
    "agree",
    "barrier",
    "all_reduce_mean",
    "gather_to_main",
    "sync_buffers",
    "record_failure",
    "rank_failure_message",
    "launch_notes",
    "single_process_notes",
    "parse_device_list",
    "free_port",
]
__all__ += ["GRACE_S", "LAUNCH_ENV", "LAUNCHER_PID_ENV", "_child_env"]
