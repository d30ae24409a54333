"""TAO state_dict manifests (``tools/manifests/<network>/<backbone>.json.gz``, recorded by
``tools/tao_manifests.py`` from TAO's own code) and the check that a network's key table
maps one onto the worker's model one to one (CI; no TAO code needed)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_DIR", "coverage_problems", "manifest_paths", "read_manifest"]

#: Where the recorded manifests live in the repository.
MANIFEST_DIR = Path(__file__).resolve().parents[3] / "tools" / "manifests"


def manifest_paths(network: str) -> list[Path]:
    """The recorded manifests of ``network`` (sorted by backbone)."""
    return sorted((MANIFEST_DIR / network).glob("*.json.gz"))


def read_manifest(path: Path) -> dict[str, Any]:
    """One manifest: ``network``, ``backbone``, ``spec`` (the fields TAO built it from),
    ``tensors``, ``values``, ``state_dict`` (``[key, shape, dtype]`` rows), ``parity``."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def coverage_problems(keymap, manifest: dict[str, Any], own: dict[str, Any]) -> list[str]:
    """What keeps ``keymap`` from mapping the manifest's TAO tensors one to one onto ``own``
    (the worker model's state dict; meta tensors do): unmapped or doubly mapped tensors,
    shape differences, worker tensors left over, a worker -> TAO conversion that does not
    give the manifest's keys and shapes back. Empty when the mapping is exact."""
    import torch

    problems: list[str] = []
    tao = {k: tuple(shape) for k, shape, _dtype in manifest["state_dict"]}
    hits: dict[str, str] = {}
    for key, shape in tao.items():
        names = keymap.worker_keys(key)
        if names is None or any(n not in own for n in names):
            if not key.endswith("num_batches_tracked"):
                problems.append(f"TAO {key} {list(shape)}: no worker tensor ({names})")
            continue
        for name in names:
            if name in hits:
                problems.append(f"worker {name} is mapped from {hits[name]} and {key}")
            hits[name] = key
        rows = shape[0] // len(names) if shape else 0
        want = [(rows, *shape[1:]) if len(names) > 1 else shape] * len(names)
        got = [tuple(own[n].shape) for n in names]
        if got != want:
            problems.append(f"TAO {key} {list(shape)} -> {names} {got}: shapes differ")
    problems += [f"worker {k} {list(own[k].shape)}: no TAO tensor" for k in own if k not in hits]
    if not problems:
        back = {k: tuple(v.shape) for k, v in keymap.to_tao(
            {k: torch.empty(v.shape, device="meta") for k, v in own.items()}).items()}
        if back != tao:
            diff = sorted(set(back.items()) ^ set(tao.items()))[:5]
            problems.append(f"worker -> TAO conversion differs from the manifest: {diff}")
    return problems
