"""AutoML search algorithms behind one ask/tell protocol (:class:`Algorithm`).

>>> algo = get_algorithm("bohb", space, "max", max_epochs=27, reduction_factor=3, seed=7)
>>> s = algo.suggest()                       # Suggestion(trial_id, params, budget_epochs, ...)
>>> algo.observe(s.trial_id, 0.41, epochs=s.budget_epochs)
>>> algo.observe(other.trial_id, None, epochs=2, error="CUDA OOM")   # failed: never best/promoted
>>> saved = json.dumps(algo.state()); algo = Algorithm.from_state(space, json.loads(saved))

Names: ``random``, ``bayesian`` (GP Matern 5/2 + EI, first trial = template defaults),
``hyperband``, ``asha``, ``bohb``, ``dehb`` (Hyperband + differential evolution), ``pbt``
(population based training: members continue, copy and perturb each other's checkpoints). Defaults follow NVIDIA TAO AutoML: 20 recommendations,
``max_epochs`` 27, ``reduction_factor`` 3.
"""

from __future__ import annotations

from typing import Any

from ...errors import TaoSkillsError
from ..space import SearchSpace
from .base import REGISTRY, Algorithm, Suggestion, TrialRecord, check_direction, matched_intervals
from .asha import ASHA
from .bayesian import Bayesian
from .bohb import BOHB
from .dehb import DEHB
from .hyperband import Hyperband, hyperband_brackets
from .pbt import PBT
from .random_search import RandomSearch

__all__ = ["Algorithm", "Suggestion", "TrialRecord", "get_algorithm", "algorithm_names", "algorithm_options",
           "hyperband_brackets", "matched_intervals", "check_direction", "RandomSearch", "Bayesian",
           "Hyperband", "ASHA", "BOHB", "DEHB", "PBT"]


def algorithm_names() -> list[str]:
    """Registered algorithm names: ``['asha', 'bayesian', 'bohb', 'dehb', 'hyperband', 'pbt', 'random']``."""
    return sorted(REGISTRY)


def algorithm_options(name: str) -> dict[str, Any]:
    """Options accepted by algorithm ``name`` with their defaults."""
    return dict(_lookup(name).OPTIONS)


def _lookup(name: str) -> type[Algorithm]:
    cls = REGISTRY.get(str(name).strip().lower())
    if cls is None:
        raise TaoSkillsError(f"unknown AutoML algorithm {name!r}; choose one of: {', '.join(algorithm_names())}")
    return cls


def get_algorithm(name: str, space: SearchSpace, direction: str, **options: Any) -> Algorithm:
    """Build the algorithm ``name`` over ``space``.

    Args:
        name: one of :func:`algorithm_names`.
        space: a :class:`~tao_sdk.automl.space.SearchSpace`.
        direction: ``"max"`` or ``"min"`` - the skill's monitoring-metric direction, passed
            explicitly (never inferred from the metric name).
        **options: algorithm options (see :func:`algorithm_options`); unknown ones are errors.
    """
    return _lookup(name)(space, direction, **options)
