"""DEHB (Awad et al., IJCAI 2021): Hyperband brackets + differential evolution proposals."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import register
from .hyperband import _BracketDriver


@register
class DEHB(_BracketDriver):
    """Hyperband whose new configurations are bred by differential evolution (rand/1/bin).

    The parent population is the best half (at least ``min_population`` successful trials) of the
    completed trials at the largest budget that has that many; until one does, new
    configurations are random. A new configuration is ``a + mutation_factor * (b - c)`` for three
    distinct parents, crossed over coordinate-wise with a fourth (the target) with probability
    ``crossover_prob`` (at least one coordinate from the mutant), reflected into the unit cube and
    decoded (choices snap to their nearest level). Failed trials are never parents; promotion is
    Hyperband's, continuing each promoted trial's checkpoint.

    DEHB's edge in its paper is on high-dimensional, large-budget searches (thousands of
    evaluations); at TAO's budgets (tens of trials) it behaves like BOHB with another proposal
    rule - ``python -m benchmarks automl`` measures both side by side.

    Options: Hyperband's (``max_epochs`` 27, ``reduction_factor`` 3, ``min_epochs`` 1,
    ``iterations`` 1, ``seed`` 0, ``validations_per_trial`` 3) plus ``mutation_factor`` (0.5),
    ``crossover_prob`` (0.5), ``min_population`` (0 = number of dims + 1; at least 4 either way).
    """

    name = "dehb"
    OPTIONS = {**_BracketDriver.OPTIONS, "mutation_factor": 0.5, "crossover_prob": 0.5, "min_population": 0}

    def _validate_options(self) -> None:
        super()._validate_options()
        self._check_float_option("mutation_factor", 0.0, 2.0)
        self._check_float_option("crossover_prob", 0.0, 1.0)
        self._check_int_option("min_population", 0)

    def _population(self) -> np.ndarray | None:
        need = max(4, self.options["min_population"] or len(self.space) + 1)
        by_budget: dict[int, list] = {}
        for r in self._trials.values():
            if r.status == "ok":
                by_budget.setdefault(r.budget_epochs, []).append(r)
        for budget in sorted(by_budget, reverse=True):
            recs = sorted(by_budget[budget], key=lambda r: (self._loss(r.value), r.trial_id))
            if len(recs) >= need:
                top = recs[: max(need, len(recs) // 2)]
                return np.array([self.space.to_unit(r.params) for r in top])
        return None

    def _new_config(self, bracket: Mapping[str, Any], budget_epochs: int) -> tuple[dict[str, Any], str]:
        rng = self._rng()
        pop = self._population()
        if pop is None:
            return self._sample_unseen(rng), "random"
        for _ in range(20):
            a, b, c, target = pop[rng.choice(len(pop), 4, replace=False)]
            mutant = a + self.options["mutation_factor"] * (b - c)
            mutant = np.where(mutant < 0, -mutant, mutant)
            mutant = np.clip(np.where(mutant > 1, 2 - mutant, mutant), 0.0, 1.0)
            cross = rng.random(len(mutant)) < self.options["crossover_prob"]
            cross[rng.integers(0, len(mutant))] = True
            params = self.space.repair(self.space.from_unit(np.where(cross, mutant, target).tolist()))
            if not self._seen(params):
                return params, "evolution"
        return self._sample_unseen(rng), "random"
