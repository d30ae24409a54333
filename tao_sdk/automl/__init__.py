"""AutoML brains: search spaces from packaged train schemas and search algorithms.

* :mod:`tao_sdk.automl.space` - :class:`SearchSpace` built from ``train.schema.json``.
* :mod:`tao_sdk.automl.algorithms` - ``random``, ``bayesian``, ``hyperband``, ``asha``, ``bohb``,
  ``dehb``, ``pbt`` behind one :class:`Algorithm` protocol; :func:`get_algorithm` builds one by name.

The algorithms need numpy/scipy (``pip install 'tao-skill-bank[automl]'``); the space does not.
Names are imported lazily so ``import tao_sdk.automl`` works without numpy.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "SearchSpace": "space", "Dimension": "space", "FloatDim": "space", "IntDim": "space",
    "OrderedIntDim": "space", "CategoricalDim": "space", "BoolDim": "space", "apply_params": "space",
    "never_searched_reason": "space", "NEVER_SEARCHED_RULES": "space",
    "Algorithm": "algorithms", "Suggestion": "algorithms", "TrialRecord": "algorithms",
    "get_algorithm": "algorithms", "algorithm_names": "algorithms", "hyperband_brackets": "algorithms",
    "matched_intervals": "algorithms", "algorithm_options": "algorithms",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'tao_sdk.automl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
