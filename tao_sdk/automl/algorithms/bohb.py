"""BOHB (Falkner et al., ICML 2018): Hyperband brackets + a TPE-style density-ratio model."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm, truncnorm

from .base import register
from .hyperband import _BracketDriver


@register
class BOHB(_BracketDriver):
    """Hyperband whose new configurations come from a model once enough results exist.

    For each new configuration: with probability ``random_fraction`` (or while no budget has
    ``min_points_in_model`` completed trials) it is random. Otherwise the completed trials at the
    largest budget that has enough of them are split into *good* (the best ``top_fraction``,
    at least 2, successful trials only) and *bad* (all other trials, failed ones included: a
    failure is never "good"). Product kernel density estimates ``l(x)`` (good) and ``g(x)``
    (bad) are fitted on the unit-cube encoding (truncated Gaussians for ordered coordinates,
    Aitchison-Aitken kernels for unordered choices); ``n_samples`` candidates are drawn from
    ``l`` with bandwidths widened by ``bandwidth_factor`` and the one maximising ``l(x)/g(x)``
    is proposed.

    Options: Hyperband's (``max_epochs`` 27, ``reduction_factor`` 3, ``min_epochs`` 1,
    ``iterations`` 1, ``seed`` 0, ``validations_per_trial`` 3) plus ``random_fraction`` (1/3),
    ``top_fraction`` (0.15), ``min_points_in_model`` (0 = number of dims + 1),
    ``bandwidth_factor`` (3.0), ``min_bandwidth`` (1e-3), ``n_samples`` (64), ``model`` (``"tpe"``,
    or ``"gp"``: the proposal maximises the expected improvement of a Gaussian process fitted on
    the same budget's trials, as ``bayesian`` does at full budget; pending trials of that budget
    are filled in with the GP mean).
    """

    name = "bohb"
    OPTIONS = {**_BracketDriver.OPTIONS, "random_fraction": 1.0 / 3.0, "top_fraction": 0.15,
               "min_points_in_model": 0, "bandwidth_factor": 3.0, "min_bandwidth": 1e-3, "n_samples": 64,
               "model": "tpe"}
    MODELS = ("tpe", "gp")

    _CAT_BW = 0.2

    def _validate_options(self) -> None:
        super()._validate_options()
        self._check_float_option("random_fraction", 0.0, 1.0)
        self._check_float_option("top_fraction", 0.01, 0.9)
        self._check_int_option("min_points_in_model", 0)
        self._check_float_option("bandwidth_factor", 0.1, 100.0)
        self._check_float_option("min_bandwidth", 1e-6, 0.5)
        self._check_int_option("n_samples", 1)
        if self.options["model"] not in self.MODELS:
            from ...errors import TaoSkillsError

            raise TaoSkillsError(f"bohb: option model must be one of {', '.join(self.MODELS)} "
                                 f"(got {self.options['model']!r})")

    @property
    def min_points(self) -> int:
        """Completed trials a budget needs before the model is used."""
        return self.options["min_points_in_model"] or len(self.space) + 1

    def _budgets_with_data(self):
        """Completed trials per budget, largest budget first, for budgets with ``min_points`` of them."""
        by_budget: dict[int, list] = {}
        for r in self._trials.values():
            if r.status != "pending":
                by_budget.setdefault(r.budget_epochs, []).append(r)
        for budget in sorted(by_budget, reverse=True):
            if len(by_budget[budget]) >= self.min_points:
                yield by_budget[budget]

    def _model_data(self) -> tuple[np.ndarray, np.ndarray] | None:
        for recs in self._budgets_with_data():
            ok = sorted((r for r in recs if r.status == "ok"), key=lambda r: (self._loss(r.value), r.trial_id))
            n_good = max(2, math.ceil(self.options["top_fraction"] * len(recs)))
            if len(ok) < n_good or len(recs) - n_good < 1:
                continue
            good_ids = {r.trial_id for r in ok[:n_good]}
            good = np.array([self.space.to_unit(r.params) for r in ok[:n_good]])
            bad = np.array([self.space.to_unit(r.params) for r in recs if r.trial_id not in good_ids])
            return good, bad
        return None

    def _gp_config(self, rng: np.random.Generator) -> dict[str, Any] | None:
        from .bayesian import propose_by_ei

        recs = next((recs for recs in self._budgets_with_data() if any(r.status == "ok" for r in recs)), None)
        if recs is None:
            return None
        budget = recs[0].budget_epochs
        pending = [r for r in self._trials.values() if r.status == "pending" and r.budget_epochs == budget]
        return propose_by_ei(self, [r for r in recs if r.status == "ok"], [r for r in recs if r.status == "failed"],
                             pending, rng, 2000, 0.01)

    def _bandwidths(self, pts: np.ndarray) -> np.ndarray:
        n = len(pts)
        sd = pts.std(axis=0) if n > 1 else np.zeros(pts.shape[1])
        return np.maximum(1.06 * sd * n ** (-0.2), self.options["min_bandwidth"])

    def _log_density(self, X: np.ndarray, pts: np.ndarray, bw: np.ndarray, levels: list) -> np.ndarray:
        total = np.zeros((len(X), len(pts)))
        for j, lev in enumerate(levels):
            x, p = X[:, j][:, None], pts[:, j][None, :]
            if lev is None:
                h = bw[j]
                mass = norm.cdf((1.0 - p) / h) - norm.cdf((0.0 - p) / h)
                total += norm.logpdf((x - p) / h) - math.log(h) - np.log(np.maximum(mass, 1e-300))
            else:
                k = len(lev)
                same = np.abs(x - p) < 1e-9
                total += np.where(same, math.log(1 - self._CAT_BW), math.log(self._CAT_BW / max(k - 1, 1)))
        return logsumexp(total, axis=1) - math.log(len(pts))

    def _new_config(self, bracket: Mapping[str, Any], budget_epochs: int) -> tuple[dict[str, Any], str]:
        rng = self._rng()
        if self.options["model"] == "gp":
            params = None if rng.random() < self.options["random_fraction"] else self._gp_config(rng)
            return (params, "model") if params is not None else (self._random(rng), "random")
        data = self._model_data()
        if data is None or rng.random() < self.options["random_fraction"]:
            return self._random(rng), "random"
        good, bad = data
        levels = self.space.unit_levels()
        bw_g, bw_b = self._bandwidths(good), self._bandwidths(bad)
        n = int(self.options["n_samples"])
        centers = good[rng.integers(0, len(good), n)]
        C = np.empty_like(centers)
        for j, lev in enumerate(levels):
            if lev is None:
                s = min(self.options["bandwidth_factor"] * bw_g[j], 1.0)
                a, b = (0.0 - centers[:, j]) / s, (1.0 - centers[:, j]) / s
                C[:, j] = truncnorm.rvs(a, b, loc=centers[:, j], scale=s, random_state=rng)
            else:
                lev = np.asarray(lev)
                keep = rng.random(n) >= self._CAT_BW
                C[:, j] = np.where(keep, centers[:, j], lev[rng.integers(0, len(lev), n)])
        score = self._log_density(C, good, bw_g, levels) - self._log_density(C, bad, bw_b, levels)
        for i in np.argsort(-score, kind="stable"):
            p = self.space.from_unit(C[i])
            if not self._seen(p):
                return p, "model"
        return self._random(rng), "random"

    def _random(self, rng: np.random.Generator) -> dict[str, Any]:
        return self._sample_unseen(rng)
