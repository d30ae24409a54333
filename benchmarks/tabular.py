"""Replay recorded learning curves as a tabular AutoML objective (HPOBench / YAHPO style).

The table (``benchmarks/data/rtdetr_curves.json``, written by ``python -m benchmarks.record_curves``)
holds, per grid point of the searched hyperparameters, the per-epoch validation metrics of a real
training run of the demo's tiny RT-DETR. :class:`CurveObjective` answers "what would a trial of
these hyperparameters report after ``b`` epochs": the curve is interpolated multilinearly between
grid points on the search space's unit-cube encoding (log scale for learning rates), and the
reported value is the best validation value up to epoch ``b`` (the controller reports a trial's
best epoch). Grid points missing from the table (an interrupted recording) take the curve of the
nearest recorded point, so any recorded subset of the grid works.

The replay is deterministic (one training run per point): continuing a checkpoint for more epochs
replays the same curve, exactly as a constant-learning-rate run does. A PBT member whose
hyperparameters changed mid-run is scored with the curve of its final hyperparameters (the table
has no curves of schedules).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TABLE = Path(__import__("os").environ.get("TAO_CURVES_TABLE") or ROOT / "benchmarks" / "data" / "rtdetr_curves.json")
SCHEMA = ROOT / "skills" / "tao-train-rtdetr" / "schemas" / "train.schema.json"
#: metric -> direction of the recorded metrics the replay can optimise
METRICS = {"val_mAP50": "max", "val_loss": "min"}


def load_table(path: Path = TABLE) -> dict[str, Any]:
    """The recorded table; a clear error names the script that writes it."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; record it with `python -m benchmarks.record_curves` "
                                "(about 25 minutes on 2 CPU cores)")
    table = json.loads(path.read_text())
    if not any(p.get("status") == "SUCCESS" for p in table.get("points", [])):
        raise ValueError(f"{path} has no successful recorded curve; rerun `python -m benchmarks.record_curves`")
    return table


class CurveObjective:
    """A real-curve objective over the table's grid dims (maximised: losses are negated).

    Attributes: ``space`` (the RT-DETR schema's dims restricted to the grid's ranges), ``R``
    (epochs recorded), ``f_star`` (best full-budget value in the table), ``name``.
    """

    def __init__(self, metric: str = "val_mAP50", table: dict[str, Any] | None = None):
        from scipy.interpolate import RegularGridInterpolator

        from tao_sdk.automl.space import SearchSpace

        if metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)} (got {metric!r})")
        table = table or load_table()
        self.name = "curves-" + ("map50" if metric == "val_mAP50" else "loss")
        self.sign = 1.0 if METRICS[metric] == "max" else -1.0
        self.R = int(table["epochs"])
        grid: dict[str, list] = table["grid"]
        names = list(grid)
        # learning rates (floats spanning a decade or more) on a log scale, as the recording grid is
        overrides = {n: {"minimum": min(v), "maximum": max(v),
                         **({"log": True} if all(isinstance(x, float) and x > 0 for x in v) and max(v) >= 10 * min(v)
                            else {})} for n, v in grid.items()}
        self.space = SearchSpace.from_file(SCHEMA, include=names, overrides=overrides)
        order = self.space.names
        recorded = [(p["params"], np.asarray(p["curves"][metric], dtype=float) * self.sign)
                    for p in table["points"] if p.get("status") == "SUCCESS"]
        levels = [sorted(set(grid[n])) for n in order]
        base = {n: levels[i][0] for i, n in enumerate(order)}
        axes = [np.array([self.space.to_unit({**base, n: v})[i] for v in levels[i]]) for i, n in enumerate(order)]
        rec_u = np.array([self.space.to_unit(p) for p, _ in recorded])
        shape = [len(lev) for lev in levels]
        values = np.empty(shape + [self.R])
        for idx in np.ndindex(*shape):
            u = np.array([axes[i][k] for i, k in enumerate(idx)])
            nearest = int(np.argmin(((rec_u - u) ** 2).sum(axis=1)))
            values[idx] = np.maximum.accumulate(recorded[nearest][1][: self.R])   # best so far per epoch
        self._axes = axes
        self._interp = RegularGridInterpolator(tuple(axes), values, method="linear")
        self.f_star = float(values[..., -1].max())
        self.n_recorded = len(recorded)

    def _curve(self, params: dict[str, Any]) -> np.ndarray:
        u = np.array(self.space.to_unit(params))
        u = np.array([np.clip(x, a[0], a[-1]) for x, a in zip(u, self._axes)])
        return self._interp(u[None, :])[0]

    def true(self, params: dict[str, Any]) -> float:
        """Full-budget value (best over ``R`` epochs) of a configuration."""
        return float(self._curve(params)[-1])

    def observe(self, params: dict[str, Any], epochs: int) -> float:
        """What a trial trained for ``epochs`` epochs reports (its best epoch so far)."""
        return float(self._curve(params)[max(1, min(int(epochs), self.R)) - 1])
