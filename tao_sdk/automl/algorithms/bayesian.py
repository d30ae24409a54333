"""Bayesian optimisation: Gaussian process (Matern 5/2, ARD) + expected improvement."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..space import SearchSpace
from .base import Algorithm, Suggestion, TrialRecord, register
from .gp import GaussianProcess


@register
class Bayesian(Algorithm):
    """GP-EI over the unit-cube encoding of the space; every trial trains ``max_epochs``.

    Trial 0 is the template defaults (``start_from_defaults``), then random samples until
    ``n_initial_points`` trials exist (0 = automatic: ``max(2, min(5, max_recommendations // 4))``)
    and two have succeeded; after that each suggestion maximises expected improvement over
    random and local candidates. Trials in flight are filled in with the GP mean (kriging
    believer) so concurrent suggestions differ. A failed trial is given the worst value observed
    so far in the surrogate only (the model steers away from it); it never counts as a result.

    Options: ``max_recommendations`` (20), ``max_epochs`` (27), ``n_initial_points`` (0 = auto),
    ``start_from_defaults`` (True), ``xi`` (0.01, exploration margin in standard deviations),
    ``n_candidates`` (4000), ``seed`` (0), ``validations_per_trial`` (3).
    """

    name = "bayesian"
    OPTIONS = {**Algorithm.OPTIONS, "max_recommendations": 20, "n_initial_points": 0,
               "start_from_defaults": True, "xi": 0.01, "n_candidates": 4000}

    def _validate_options(self) -> None:
        self._check_int_option("max_recommendations", 1)
        self._check_int_option("n_initial_points", 0)
        self._check_int_option("n_candidates", 10)
        self._check_float_option("xi", 0.0, 10.0)

    @property
    def n_initial(self) -> int:
        """Number of non-model trials (defaults + random) before the GP takes over."""
        n = self.options["n_initial_points"]
        if n:
            return n
        return max(2, min(5, self.options["max_recommendations"] // 4))

    def _finished(self) -> bool:
        return self._next_trial >= self.options["max_recommendations"]

    def _suggest(self) -> Suggestion | None:
        if self._next_trial >= self.options["max_recommendations"]:
            return None
        k = self._next_trial
        n_ok = sum(r.status == "ok" for r in self._trials.values())
        if k == 0 and self.options["start_from_defaults"]:
            d = self.space.defaults()
            params, source = (d if not self.space.validate(d) else self.space.repair(d)), "defaults"
        elif k < self.n_initial or n_ok < 2:
            params, source = self._random(), "random"
        else:
            params, source = self._propose(), "model"
        return self._new_trial(params, self.options["max_epochs"], info={"source": source})

    def _random(self) -> dict[str, Any]:
        return self._sample_unseen()

    def _propose(self) -> dict[str, Any]:
        trials = list(self._trials.values())
        params = propose_by_ei(self, [r for r in trials if r.status == "ok"],
                               [r for r in trials if r.status == "failed"],
                               [r for r in trials if r.status == "pending"], self._rng(),
                               int(self.options["n_candidates"]), float(self.options["xi"]))
        return params if params is not None else self._random()


def propose_by_ei(algo: Algorithm, ok: list[TrialRecord], failed: list[TrialRecord], pending: list[TrialRecord],
                  rng: np.random.Generator, n_candidates: int, xi: float) -> dict[str, Any] | None:
    """The unseen configuration maximising GP expected improvement, or None when none is left.

    The GP is fitted on ``ok`` trials (their loss) plus ``failed`` ones at the worst observed
    loss (the model steers away; they never count as results), and conditioned on ``pending``
    ones at the GP mean (kriging believer) so concurrent proposals differ. Candidates are random
    points plus perturbations of the best observed ones; the top raw candidates are snapped onto
    the space's grid and re-scored. Used by ``bayesian`` and by ``bohb`` with ``model="gp"``.
    """
    space = algo.space
    X = [space.to_unit(r.params) for r in ok]
    y = [algo._loss(r.value) for r in ok]
    worst = max(y)
    X += [space.to_unit(r.params) for r in failed]
    y += [worst] * len(failed)
    gp = GaussianProcess(space.categorical_mask).fit(np.array(X), np.array(y))
    if pending:
        gp.condition_on(np.array([space.to_unit(r.params) for r in pending]))
    y_best = min(y[:len(ok)])
    cands = ei_candidates(space, rng, np.array(X[:len(ok)]), np.array(y[:len(ok)]), n_candidates)
    ei = gp.expected_improvement(cands, y_best, xi)
    top = np.argsort(-ei, kind="stable")[:32]
    snapped, params_list = [], []
    for i in top:
        p = space.from_unit(cands[i])
        if algo._seen(p) or p in params_list:
            continue
        params_list.append(p)
        snapped.append(space.to_unit(p))
    if not params_list:
        return None
    ei2 = gp.expected_improvement(np.array(snapped), y_best, xi)
    return params_list[int(np.argmax(ei2))]


# acquisition search: share of local candidates, per-coordinate perturbation probability, scales
_LOCAL_FRACTION = 0.5
_PERTURB_PROB = 1.0
_SCALES = (0.02, 0.05, 0.1, 0.2)


def ei_candidates(space: SearchSpace, rng: np.random.Generator, X_ok: np.ndarray, y_ok: np.ndarray,
                  n: int) -> np.ndarray:
    """``n`` candidates on the unit cube: random points plus perturbations of the best observed ones."""
    d = len(space)
    levels = space.unit_levels()
    n_local = int(n * _LOCAL_FRACTION)
    C = rng.random((n - n_local, d))
    order = np.argsort(y_ok, kind="stable")[: max(1, min(5, len(y_ok)))]
    per = max(1, n_local // len(order))
    scales = np.asarray(_SCALES)
    L = []
    for i in order:
        s = scales[rng.integers(0, len(scales), per)][:, None]
        mask = rng.random((per, d)) < _PERTURB_PROB
        mask[np.arange(per), rng.integers(0, d, per)] = True
        step = rng.normal(size=(per, d)) * s * mask
        P = X_ok[i] + step
        P = np.where(P < 0, -P, P)           # reflect instead of clipping: no pile-up on the faces
        P = np.where(P > 1, 2 - P, P)
        L.append(np.clip(P, 0.0, 1.0))
    L = np.vstack(L)
    for j, lev in enumerate(levels):
        if lev is None:
            continue
        lev = np.asarray(lev)
        C[:, j] = lev[rng.integers(0, len(lev), len(C))]
        flip = rng.random(len(L)) < 0.2
        L[flip, j] = lev[rng.integers(0, len(lev), int(flip.sum()))]
    return np.vstack([C, L])
