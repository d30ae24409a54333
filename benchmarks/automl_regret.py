"""Regret benchmark of the AutoML algorithms on synthetic objectives over the RT-DETR search space.

    python benchmarks/automl_regret.py            # full run: 12 seeds x 3 objectives
    python benchmarks/automl_regret.py --smoke    # CI: 2 seeds, small budget, a few seconds

Every method gets the same budget in *epochs*: ``--trials`` full-length trials of
``--max-epochs`` epochs (default 20 x 27 = 540 epochs, NVIDIA's defaults). Single-fidelity
methods (random, bayesian, Optuna TPE) run ``--trials`` trials; multi-fidelity methods
(hyperband, asha, bohb) run until the next trial would exceed the epoch budget, each trial
costing its full ``budget_epochs`` (no checkpoint reuse, the conservative accounting).

Objectives are defined on the unit-cube encoding ``u = space.to_unit(params)`` of the REAL
packaged RT-DETR train schema (a fixture copy of its default set when the skill bank has no
schema), with a random optimum ``u*`` and sparse random importance weights per seed:

* ``bowl``   - ``1 - 4 * sum_j w_j (u_j - u*_j)^2`` (smooth),
* ``mapsim`` - mAP-like peak ``exp(-sum_j w_j d_j^2 / 0.1)`` whose learning-rate optimum moves
  with the batch size (an interaction ridge),
* ``rugged`` - ``bowl + 0.05 * sum_j w_j cos(6 pi (u_j - u*_j))`` (multimodal).

A trial at ``b`` epochs observes ``f(x) - 0.25 (1 - b/R)(1 + 0.5 h(x)) + noise`` (``h`` a random
smooth low-fidelity bias, noise sd 0.01-0.03): short trials rank configurations imperfectly.
Regret = ``f(u*) - f(x_best)`` on the noise-free objective for the configuration each method
returns as best (``Algorithm.best()``; for TPE the best observed trial).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # tiny GP matrices: BLAS threads only add contention
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tao_sdk.automl.algorithms import get_algorithm  # noqa: E402
from tao_sdk.automl.space import SearchSpace  # noqa: E402

RTDETR_SCHEMA = ROOT / "skills" / "tao-train-rtdetr" / "schemas" / "train.schema.json"
FIXTURE_SCHEMA = ROOT / "tests" / "automl" / "fixtures" / "rtdetr_like.schema.json"
OBJECTIVES = ("bowl", "mapsim", "rugged")


def load_space() -> tuple[SearchSpace, str]:
    """The RT-DETR search space (packaged schema if present, else the test fixture)."""
    if RTDETR_SCHEMA.exists():
        return SearchSpace.from_file(RTDETR_SCHEMA), str(RTDETR_SCHEMA.relative_to(ROOT))
    return SearchSpace.from_file(FIXTURE_SCHEMA), str(FIXTURE_SCHEMA.relative_to(ROOT)) + " (fixture)"


class Objective:
    """A seeded synthetic objective over ``space`` (maximised)."""

    def __init__(self, space: SearchSpace, kind: str, seed: int, max_epochs: int):
        self.space, self.kind, self.R = space, kind, max_epochs
        d = len(space)
        rng = np.random.default_rng(10_000 + 97 * seed + OBJECTIVES.index(kind))
        self.ustar = rng.uniform(0.1, 0.9, d)
        self.w = rng.dirichlet(np.full(d, 0.5))
        self.h_dir = rng.normal(size=d)
        self.h_phase = rng.uniform(0, 2 * math.pi)
        names = space.names
        self.i_lr = next((i for i, n in enumerate(names) if n.endswith("optim.lr")), 0)
        self.i_bs = next((i for i, n in enumerate(names) if n.endswith("batch_size")), min(1, d - 1))
        self.noise_rng = np.random.default_rng(20_000 + seed)

    def f_unit(self, u: np.ndarray) -> float:
        """Noise-free objective at unit vector ``u``."""
        diff = u - self.ustar
        if self.kind == "mapsim":
            diff = diff.copy()
            diff[self.i_lr] -= 0.3 * (u[self.i_bs] - self.ustar[self.i_bs])
            return float(math.exp(-float(self.w @ (diff * diff)) / 0.1))
        val = 1.0 - 4.0 * float(self.w @ (diff * diff))
        if self.kind == "rugged":
            val += 0.05 * float(self.w @ np.cos(6 * math.pi * diff))
        return val

    @property
    def f_star(self) -> float:
        """Value at the optimum ``u*``."""
        return self.f_unit(self.ustar)

    def true(self, params: dict) -> float:
        """Noise-free full-budget value of a configuration."""
        return self.f_unit(np.array(self.space.to_unit(params)))

    def observe(self, params: dict, epochs: int) -> float:
        """Noisy value of a trial trained for ``epochs`` epochs."""
        u = np.array(self.space.to_unit(params))
        gap = 1.0 - epochs / self.R
        bias = 0.5 * math.sin(float(self.h_dir @ u) * 2.0 + self.h_phase)
        noise = self.noise_rng.normal(0.0, 0.01 + 0.02 * gap)
        return self.f_unit(u) - 0.25 * gap * (1.0 + bias) + noise


def run_ours(name: str, space: SearchSpace, obj: Objective, seed: int, trials: int, max_epochs: int,
             concurrency: int) -> float:
    """Regret of our algorithm ``name`` with ``concurrency`` trials in flight."""
    budget = trials * max_epochs
    opts: dict = {"seed": seed, "max_epochs": max_epochs}
    if name in ("random", "bayesian"):
        opts["max_recommendations"] = trials
    elif name == "asha":
        opts["max_recommendations"] = 10_000
    else:
        opts["iterations"] = 10
    algo = get_algorithm(name, space, "max", **opts)
    spent = 0
    running: list = []
    while True:
        while len(running) < concurrency:
            s = algo.suggest()
            if s is None or spent + s.budget_epochs > budget:
                if s is not None:      # over budget: tell the algorithm it did not run
                    algo.observe(s.trial_id, None, epochs=0, error="budget exhausted")
                break
            spent += s.budget_epochs
            running.append(s)
        if not running:
            break
        s = running.pop(0)
        algo.observe(s.trial_id, obj.observe(s.params, s.budget_epochs), epochs=s.budget_epochs)
        if spent >= budget and not running:
            break
    best = algo.best()
    return obj.f_star - obj.true(best[1])


def run_tpe(space: SearchSpace, obj: Objective, seed: int, trials: int, max_epochs: int) -> float:
    """Regret of Optuna's default TPE sampler on the same unit-cube encoding, full-length trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    levels = space.unit_levels()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    seen: dict[int, dict] = {}

    def objective(trial):
        u = [trial.suggest_categorical(f"u{j}", lev) if lev is not None else trial.suggest_float(f"u{j}", 0.0, 1.0)
             for j, lev in enumerate(levels)]
        params = space.from_unit(u)
        seen[trial.number] = params
        return obj.observe(params, max_epochs)

    study.optimize(objective, n_trials=trials)
    return obj.f_star - obj.true(seen[study.best_trial.number])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the regret table (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="quick CI run: 2 seeds, 10-trial budget, 1 objective")
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--trials", type=int, default=20, help="budget in full-length trials (x max-epochs epochs)")
    ap.add_argument("--max-epochs", type=int, default=27)
    ap.add_argument("--concurrency", type=int, default=1, help="trials in flight for our algorithms")
    ap.add_argument("--methods", default="random,bayesian,bohb,hyperband,asha,tpe")
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--json", type=Path, help="also write the raw regrets here")
    args = ap.parse_args(argv)
    if args.smoke:
        args.seeds, args.trials, args.objectives = 2, 10, "bowl"

    space, source = load_space()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    print(f"space: {source}: {len(space)} dims; budget {args.trials} x {args.max_epochs} epochs; "
          f"seeds {args.seeds}; concurrency {args.concurrency}")
    regrets: dict[str, dict[str, list[float]]] = {o: {m: [] for m in methods} for o in objectives}
    times: dict[str, float] = {m: 0.0 for m in methods}
    for o in objectives:
        for seed in range(args.seeds):
            for m in methods:
                obj = Objective(space, o, seed, args.max_epochs)
                t = time.perf_counter()
                if m == "tpe":
                    r = run_tpe(space, obj, seed, args.trials, args.max_epochs)
                else:
                    r = run_ours(m, space, obj, seed, args.trials, args.max_epochs, args.concurrency)
                times[m] += time.perf_counter() - t
                regrets[o][m].append(r)

    def mean(xs: list[float]) -> float:
        return float(np.mean(xs)) if xs else float("nan")

    header = f"{'objective':<10}" + "".join(f"{m:>12}" for m in methods)
    print("\nmean regret (lower is better; +- standard error)")
    print(header)
    for o in objectives:
        print(f"{o:<10}" + "".join(f"{mean(regrets[o][m]):>12.4f}" for m in methods))
        print(f"{'':<10}" + "".join(f"{'+-%.4f' % (np.std(regrets[o][m]) / math.sqrt(len(regrets[o][m]))):>12}"
                                    for m in methods))
    allr = {m: [x for o in objectives for x in regrets[o][m]] for m in methods}
    print(f"{'all':<10}" + "".join(f"{mean(allr[m]):>12.4f}" for m in methods))
    for ref in ("random", "tpe"):
        if ref in methods:
            print(f"{'/ ' + ref:<10}" + "".join(f"{mean(allr[m]) / mean(allr[ref]):>12.2f}" for m in methods))
    if "random" in methods:
        print(f"{'wins/rnd':<10}" + "".join(
            f"{sum(a < b for a, b in zip(allr[m], allr['random'])):>9}/{len(allr[m]):<2}" for m in methods))
    print(f"{'seconds':<10}" + "".join(f"{times[m]:>12.1f}" for m in methods))
    if args.json:
        args.json.write_text(json.dumps({"regrets": regrets, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
