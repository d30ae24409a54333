"""ASHA: asynchronous successive halving (Li et al., MLSys 2020)."""

from __future__ import annotations

from typing import Any, Mapping

from .base import Algorithm, Suggestion, TrialRecord, register
from .hyperband import _check_fidelity_range, _s_max


@register
class ASHA(Algorithm):
    """Asynchronous successive halving: never waits for a rung to fill.

    Rungs ``k = 0..K`` train ``min_epochs * eta^k`` epochs (capped at ``max_epochs``; ``K`` =
    ``floor(log_eta(max_epochs / min_epochs))``, top rung = ``max_epochs``). Each call to
    :meth:`suggest` promotes a configuration that is in the top ``1/eta`` of the completed trials of
    its rung (failed trials rank last and are never promoted), looking from the highest rung
    down; otherwise it starts a new random configuration at rung 0, until
    ``max_recommendations`` configurations were started. When no configuration can start any
    more and nothing runs, the best configuration of the highest unfinished rung is promoted
    ("final push") until one trial reaches ``max_epochs``, so ``best()`` is a full-budget result.

    Options: ``max_recommendations`` (20 configurations), ``max_epochs`` (27),
    ``reduction_factor`` (3), ``min_epochs`` (1), ``seed`` (0), ``validations_per_trial`` (3).
    """

    name = "asha"
    multi_fidelity = True
    OPTIONS = {**Algorithm.OPTIONS, "max_recommendations": 20, "reduction_factor": 3, "min_epochs": 1}

    def _validate_options(self) -> None:
        self._check_int_option("max_recommendations", 1)
        self._check_int_option("reduction_factor", 2)
        self._check_int_option("min_epochs", 1)
        _check_fidelity_range(self.name, self.options)

    def rung_epochs(self) -> list[int]:
        """Epoch budget of each rung (last = ``max_epochs``)."""
        eta, lo, hi = self.options["reduction_factor"], self.options["min_epochs"], self.options["max_epochs"]
        K = _s_max(hi / lo, eta)
        return [max(1, int(round(hi / eta ** (K - k)))) for k in range(K + 1)]

    def _init(self) -> None:
        self._promoted: list[list[int]] = [[] for _ in self.rung_epochs()]   # config ids promoted out of rung k

    def _rung_trials(self, k: int) -> list[TrialRecord]:
        return [r for r in self._trials.values() if r.rung == k]

    def _candidate(self) -> tuple[TrialRecord, int] | None:
        """A trial in the top 1/eta of its rung's completed trials, not promoted yet (highest rung first)."""
        eta = self.options["reduction_factor"]
        K = len(self.rung_epochs()) - 1
        for k in range(K - 1, -1, -1):
            done = [r for r in self._rung_trials(k) if r.status != "pending"]
            ok = sorted((r for r in done if r.status == "ok"), key=lambda r: (self._loss(r.value), r.trial_id))
            for r in ok[: len(done) // eta]:
                if r.config_id not in self._promoted[k]:
                    return r, k
        return None

    def _needs_final_push(self) -> bool:
        K = len(self.rung_epochs()) - 1
        return not any(r.status == "ok" and r.rung == K for r in self._trials.values())

    def _next(self) -> tuple[str, Any]:
        cand = self._candidate()
        if cand:
            return "promote", cand
        if self._next_config < self.options["max_recommendations"]:
            return "new", None
        if not self.pending() and self._needs_final_push():
            cand = self._final_push_candidate()
            if cand:
                return "promote", cand
        return "wait", None

    def _final_push_candidate(self) -> tuple[TrialRecord, int] | None:
        K = len(self.rung_epochs()) - 1
        for k in range(K - 1, -1, -1):
            ok = sorted((r for r in self._rung_trials(k) if r.status == "ok"),
                        key=lambda r: (self._loss(r.value), r.trial_id))
            for r in ok:
                if r.config_id not in self._promoted[k]:
                    return r, k
        return None

    def _suggest(self) -> Suggestion | None:
        action, arg = self._next()
        epochs = self.rung_epochs()
        if action == "promote":
            r, k = arg
            self._promoted[k].append(r.config_id)
            return self._new_trial(r.params, epochs[k + 1], config_id=r.config_id, rung=k + 1,
                                   resume_from_trial=r.trial_id, resume_epochs=r.budget_epochs,
                                   info={"source": "promotion"})
        if action == "new":
            return self._new_trial(self._sample_unseen(), epochs[0], rung=0, info={"source": "random"})
        return None

    def _finished(self) -> bool:
        return self._next()[0] == "wait"

    def _extra_state(self) -> dict[str, Any]:
        return {"promoted": self._promoted}

    def _load_extra(self, extra: Mapping[str, Any]) -> None:
        self._promoted = [list(x) for x in extra["promoted"]]
