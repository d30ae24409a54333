"""Random search: independent samples from the space (log-uniform on log dims, option weights)."""

from __future__ import annotations

from typing import Any

from .base import Algorithm, Suggestion, register


@register
class RandomSearch(Algorithm):
    """``max_recommendations`` independent random configurations, each trained ``max_epochs``.

    Options: ``max_recommendations`` (20), ``max_epochs`` (27), ``seed`` (0),
    ``start_from_defaults`` (False: the first trial is a random sample too),
    ``validations_per_trial`` (3). Failed trials count towards ``max_recommendations``.
    """

    name = "random"
    OPTIONS = {**Algorithm.OPTIONS, "max_recommendations": 20, "start_from_defaults": False}

    def _validate_options(self) -> None:
        self._check_int_option("max_recommendations", 1)

    def _propose(self) -> dict[str, Any]:
        if self._next_trial == 0 and self.options["start_from_defaults"]:
            return self.space.repair(self.space.defaults()) if self.space.validate(self.space.defaults()) \
                else self.space.defaults()
        return self._sample_unseen()

    def _suggest(self) -> Suggestion | None:
        if self._next_trial >= self.options["max_recommendations"]:
            return None
        return self._new_trial(self._propose(), self.options["max_epochs"], info={"source": "random"})

    def _finished(self) -> bool:
        return self._next_trial >= self.options["max_recommendations"]
