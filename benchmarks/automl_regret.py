"""Regret benchmark of the AutoML algorithms against Optuna, on synthetic and real-curve objectives.

    python -m benchmarks automl                      # full: 12 seeds x (3 synthetic + 2 real-curve objectives)
    python -m benchmarks.automl_regret --smoke       # CI: 2 seeds, small budgets, a few seconds
    python -m benchmarks.automl_regret --objectives curves-map50,curves-loss --seeds 20

Methods: ours (``random``, ``bayesian``, ``hyperband``, ``asha``, ``bohb``, ``bohb-gp`` (BOHB with
``model="gp"``), ``dehb``, ``pbt``) and
Optuna's ``tpe`` (TPESampler) and ``gp`` (GPSampler), both with ``n_startup_trials`` = a third of
the trials (at most Optuna's default 10) so that short budgets are not pure random search.

Every method gets the same budget in *epochs*: ``--trials`` full-length trials of
``--max-epochs`` epochs (default 20 x 27 = 540, NVIDIA's defaults) on the synthetic objectives,
``--curve-trials`` x the recorded epochs (6 x 18 = 108, a quarter of the table) on the real curves.
Single-fidelity methods run that many trials; multi-fidelity methods run until the next trial
would exceed the budget. A trial that continues a checkpoint (a promotion, a PBT generation) is
charged only the epochs it really trains (``budget_epochs - resume_epochs``).

Synthetic objectives are defined on the unit-cube encoding ``u = space.to_unit(params)`` of the
REAL packaged RT-DETR train schema (a fixture copy of its default set when the skill bank has no
schema), with a random optimum ``u*`` and sparse random importance weights per seed:

* ``bowl``   - ``1 - 4 * sum_j w_j (u_j - u*_j)^2`` (smooth),
* ``mapsim`` - mAP-like peak ``exp(-sum_j w_j d_j^2 / 0.1)`` whose learning-rate optimum moves
  with the batch size (an interaction ridge),
* ``rugged`` - ``bowl + 0.05 * sum_j w_j cos(6 pi (u_j - u*_j))`` (multimodal).

A trial at ``b`` epochs observes ``f(x) - 0.25 (1 - b/R)(1 + 0.5 h(x)) + noise`` (``h`` a random
smooth low-fidelity bias, noise sd 0.01-0.03): short trials rank configurations imperfectly.

Real-curve objectives (:mod:`benchmarks.tabular`) replay learning curves of the demo's tiny
RT-DETR recorded over a grid of learning rate, backbone learning rate and batch size
(``benchmarks/data/rtdetr_curves.json``, ``python -m benchmarks.record_curves``):
``curves-map50`` (val_mAP50, maximised) and ``curves-loss`` (val_loss, minimised).

Reported per method and objective: mean regret (``f(u*) - f(x_best)`` on the noise-free
objective, for the configuration the method returns: ``Algorithm.best()``, Optuna's best trial)
with a 95% bootstrap interval over seeds, epochs used, and the epochs at which the method's mean
incumbent regret first reaches random search's final mean regret ("to target", and that as a
share of random's epochs). Then each method's regret relative to ``gp`` and ``tpe`` (regrets
normalised per objective by the reference's mean, paired bootstrap interval).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
#: real-curve objectives replayed from benchmarks/data/rtdetr_curves.json -> recorded metric
CURVE_OBJECTIVES = {"curves-map50": "val_mAP50", "curves-loss": "val_loss"}
OURS = ("random", "bayesian", "hyperband", "asha", "bohb", "bohb-gp", "dehb", "pbt")
#: benchmark method -> (registered algorithm, options): variants of one algorithm
VARIANTS = {"bohb-gp": ("bohb", {"model": "gp"})}
OPTUNA = ("tpe", "gp")


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


@dataclass
class Run:
    """One method on one objective and seed: the incumbent after every result and the final regret.

    ``trajectory``: ``(epochs charged so far, regret of the incumbent)`` after each observed trial;
    ``epochs``: epochs charged in all (a continued trial is charged only its extra epochs).
    """

    regret: float
    epochs: int
    trajectory: list[tuple[int, float]] = field(default_factory=list)


def _options(name: str, trials: int) -> dict:
    if name in ("random", "bayesian", "pbt"):
        return {"max_recommendations": trials}        # pbt: a population of `trials` members x max_epochs
    if name == "asha":
        return {"max_recommendations": 10_000}        # runs until the epoch budget is spent
    return {"iterations": 10}


def run_ours(name: str, obj, seed: int, trials: int, concurrency: int = 1) -> Run:
    """Our algorithm ``name`` at a budget of ``trials * obj.R`` epochs, ``concurrency`` trials in flight.

    A trial that continues a checkpoint (``resume_from_trial``: a promotion, a PBT generation) is
    charged ``budget_epochs - resume_epochs``, the epochs it really trains.
    """
    budget = trials * obj.R
    name, extra = VARIANTS.get(name, (name, {}))
    algo = get_algorithm(name, obj.space, "max", seed=seed, max_epochs=obj.R, **_options(name, trials), **extra)
    spent, running, trajectory = 0, [], []
    while True:
        while len(running) < concurrency:
            s = algo.suggest()
            if s is None:
                break
            cost = s.budget_epochs - (s.resume_epochs if s.resume_from_trial is not None else 0)
            if spent + cost > budget:          # over budget: tell the algorithm it did not run
                algo.observe(s.trial_id, None, epochs=0, error="budget exhausted")
                break
            spent += cost
            running.append(s)
        if not running:
            break
        s = running.pop(0)
        algo.observe(s.trial_id, obj.observe(s.params, s.budget_epochs), epochs=s.budget_epochs)
        best = algo.best()
        if best is not None:
            trajectory.append((spent - sum(r.budget_epochs - r.resume_epochs for r in running),
                               obj.f_star - obj.true(best[1])))
    best = algo.best()
    return Run(obj.f_star - obj.true(best[1]), spent, trajectory)


def run_optuna(sampler: str, obj, seed: int, trials: int) -> Run:
    """Optuna's ``tpe`` (TPESampler) or ``gp`` (GPSampler) on the same unit-cube encoding, full-length trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = obj.space
    levels = space.unit_levels()
    make = {"tpe": optuna.samplers.TPESampler, "gp": optuna.samplers.GPSampler}[sampler]
    # Optuna's default of 10 random start-up trials would leave a 6-trial budget purely random:
    # give both samplers a third of the budget (at most their default 10), like our bayesian's start
    startup = min(10, max(2, trials // 3))
    study = optuna.create_study(direction="maximize", sampler=make(seed=seed, n_startup_trials=startup))
    trajectory, best_value, best_params = [], -math.inf, None
    for k in range(trials):
        trial = study.ask()
        u = [trial.suggest_categorical(f"u{j}", lev) if lev is not None else trial.suggest_float(f"u{j}", 0.0, 1.0)
             for j, lev in enumerate(levels)]
        params = space.from_unit(u)
        value = obj.observe(params, obj.R)
        study.tell(trial, value)
        if value > best_value:
            best_value, best_params = value, params
        trajectory.append(((k + 1) * obj.R, obj.f_star - obj.true(best_params)))
    return Run(trajectory[-1][1], trials * obj.R, trajectory)


def run_method(method: str, obj, seed: int, trials: int, concurrency: int = 1) -> Run:
    """Dispatch: ``tpe`` / ``gp`` are Optuna's samplers, every other name is one of ours."""
    if method in OPTUNA:
        return run_optuna(method, obj, seed, trials)
    return run_ours(method, obj, seed, trials, concurrency)


# =========================================================================== statistics
def bootstrap_ci(values, n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n, len(x)))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def ratio_ci(a, b, n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """``mean(a) / mean(b)`` with a paired bootstrap interval (``a[i]``, ``b[i]`` share objective and seed)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (n, len(a)))
    r = a[idx].mean(axis=1) / np.maximum(b[idx].mean(axis=1), 1e-12)
    q = (1 - level) / 2
    return float(a.mean() / max(b.mean(), 1e-12)), float(np.quantile(r, q)), float(np.quantile(r, 1 - q))


def mean_regret_curve(runs: list[Run], budget: int) -> np.ndarray:
    """Mean over seeds of the incumbent's regret after each epoch 0..budget (inf before the first result)."""
    out = np.zeros(budget + 1)
    for run in runs:
        curve = np.full(budget + 1, np.inf)
        for epochs, regret in run.trajectory:
            curve[min(epochs, budget):] = regret
        out += curve
    return out / max(1, len(runs))


def epochs_to(curve: np.ndarray, target: float) -> int | None:
    """First epoch count at which a mean regret curve reaches ``target`` (None: never)."""
    hits = np.nonzero(curve <= target + 1e-12)[0]
    return int(hits[0]) if len(hits) else None


# =========================================================================== the table
def make_objectives(names: list[str], max_epochs: int) -> dict[str, Callable[[int], object]]:
    """Objective factories ``seed -> objective`` for synthetic names and the recorded curve tables."""
    out: dict[str, Callable[[int], object]] = {}
    space = None
    for name in names:
        if name in OBJECTIVES:
            space = space or load_space()[0]
            out[name] = (lambda n: lambda seed: Objective(space, n, seed, max_epochs))(name)
        elif name in CURVE_OBJECTIVES:
            from benchmarks.tabular import CurveObjective

            table = CurveObjective(CURVE_OBJECTIVES[name])
            out[name] = lambda seed, t=table: t
        else:
            raise SystemExit(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES + tuple(CURVE_OBJECTIVES))}")
    return out


def print_table(results: dict[str, dict[str, list[Run]]], methods: list[str], budgets: dict[str, int]) -> None:
    """Methods x objectives: mean regret, 95% bootstrap interval, epochs used, epochs to random's quality."""
    for o, per in results.items():
        target = float(np.mean([r.regret for r in per["random"]])) if "random" in per else None
        ref_epochs = float(np.mean([r.epochs for r in per["random"]])) if "random" in per else None
        print(f"\n{o}: budget {budgets[o]} epochs"
              + (f"; target = random's final mean regret {target:.4f}" if target is not None else ""))
        print(f"  {'method':<10}{'regret':>9}  {'95% interval':<19}{'epochs':>7}{'to target':>10}{'/random':>9}")
        for m in methods:
            runs = per[m]
            regrets = [r.regret for r in runs]
            lo, hi = bootstrap_ci(regrets)
            used = float(np.mean([r.epochs for r in runs]))
            hit = epochs_to(mean_regret_curve(runs, budgets[o]), target) if target is not None else None
            share = f"{hit / ref_epochs:>9.2f}" if hit is not None and ref_epochs else f"{'-':>9}"
            print(f"  {m:<10}{np.mean(regrets):>9.4f}  [{lo:.4f}, {hi:.4f}]  {used:>7.0f}"
                  f"{(str(hit) if hit is not None else 'never'):>10}{share}")


def print_versus(results: dict[str, dict[str, list[Run]]], methods: list[str], ref: str, groups: dict[str, list[str]]) -> None:
    """Each of our methods' mean regret / ``ref``'s, paired bootstrap interval, per group of objectives."""
    ours = [m for m in methods if m not in OPTUNA]
    for group, objs in groups.items():
        objs = [o for o in objs if o in results]
        if not objs or ref not in methods:
            continue
        # normalise each objective by ref's mean regret so that no objective dominates the pooled ratio
        scale = {o: max(float(np.mean([r.regret for r in results[o][ref]])), 1e-12) for o in objs}
        pooled = {m: [r.regret / scale[o] for o in objs for r in results[o][m]] for m in methods}
        print(f"\n{group}: mean regret / {ref} (per-objective normalised, paired 95% bootstrap interval)")
        best = min(ours, key=lambda m: np.mean(pooled[m]))
        for m in methods:
            if m == ref:
                continue
            r, lo, hi = ratio_ci(pooled[m], pooled[ref])
            print(f"  {m:<10}{r:>6.2f}  [{lo:.2f}, {hi:.2f}]" + ("   <- best of ours" if m == best else ""))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="quick CI run: 2 seeds, small budgets, 2 objectives")
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--trials", type=int, default=20, help="synthetic budget in full-length trials (x max-epochs)")
    ap.add_argument("--curve-trials", type=int, default=6, help="real-curve budget in full-length trials")
    ap.add_argument("--max-epochs", type=int, default=27)
    ap.add_argument("--concurrency", type=int, default=1, help="trials in flight for our algorithms")
    ap.add_argument("--methods", default=",".join(OURS + OPTUNA))
    ap.add_argument("--objectives", default=",".join(OBJECTIVES + tuple(CURVE_OBJECTIVES)))
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args(argv)
    if args.smoke:
        # 6 trials: 2 random start-up trials + 4 model-based suggestions (Optuna gp refits each time)
        args.seeds, args.trials, args.curve_trials, args.max_epochs = 2, 6, 4, 9
        args.objectives = "bowl,curves-loss"
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    factories = make_objectives([o.strip() for o in args.objectives.split(",") if o.strip()], args.max_epochs)
    print(f"methods {', '.join(methods)}; seeds {args.seeds}; budgets: synthetic {args.trials} x {args.max_epochs} "
          f"epochs, real curves {args.curve_trials} x recorded epochs; concurrency {args.concurrency}")
    results: dict[str, dict[str, list[Run]]] = {}
    budgets: dict[str, int] = {}
    seconds = {m: 0.0 for m in methods}
    for o, factory in factories.items():
        results[o] = {m: [] for m in methods}
        trials = args.curve_trials if o in CURVE_OBJECTIVES else args.trials
        for seed in range(args.seeds):
            for m in methods:
                obj = factory(seed)
                budgets[o] = trials * obj.R
                t = time.perf_counter()
                results[o][m].append(run_method(m, obj, seed, trials, args.concurrency))
                seconds[m] += time.perf_counter() - t
    print_table(results, methods, budgets)
    groups = {"synthetic suite": list(OBJECTIVES), "real curves (RT-DETR tiny table)": list(CURVE_OBJECTIVES)}
    for ref in ("gp", "tpe"):
        print_versus(results, methods, ref, groups)
    print("\nseconds: " + ", ".join(f"{m} {seconds[m]:.1f}" for m in methods))
    if args.json:
        args.json.write_text(json.dumps({o: {m: [vars(r) for r in runs] for m, runs in per.items()}
                                         for o, per in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
