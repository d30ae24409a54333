"""Weights in and out of the worker's models: reading every supported file layout into the
model's own keys (:func:`read_state_dict`, :func:`load_weights`, :func:`checkpoint_state`),
writing TAO's layout (:func:`tao_state`), per-network key tables (:mod:`.keymap`).

Where a file comes from (local, s3, https, hf, ngc) is not this package's concern: it gets a
local path.
"""

from tao_sdk.worker.weights.layouts import (
    CHECKPOINT_FORMAT,
    LoadReport,
    checkpoint_state,
    file_state_dict,
    load_weights,
    read_state_dict,
    refuse_encrypted,
    tao_state,
)

__all__ = ["CHECKPOINT_FORMAT", "LoadReport", "checkpoint_state", "file_state_dict",
           "load_weights", "read_state_dict", "refuse_encrypted", "tao_state"]
