"""Hyperband (Li et al., JMLR 2018) with exact bracket maths and parallel brackets.

With ``R = max_epochs / min_epochs`` and ``eta = reduction_factor``:
``s_max = floor(log_eta(R))`` (computed with integers, no float off-by-one), brackets
``s = s_max .. 0``; bracket ``s`` starts ``n = ceil((s_max + 1) / (s + 1) * eta^s)`` configurations
at ``r = R * eta^-s``; rung ``i`` keeps ``n_i = floor(n * eta^-i)`` configurations trained for
``r_i = r * eta^i`` (times ``min_epochs``) epochs. R = 81, eta = 3 gives the published table:
s=4: 81x1 27x3 9x9 3x27 1x81 | s=3: 34x3 11x9 3x27 1x81 | s=2: 15x9 5x27 1x81 | s=1: 8x27 2x81 |
s=0: 5x81.
"""

from __future__ import annotations

from typing import Any, Mapping

from .base import Algorithm, Suggestion, TrialRecord, register


def _s_max(ratio: float, eta: int) -> int:
    s = 0
    while eta ** (s + 1) <= ratio * (1 + 1e-12):
        s += 1
    return s


def _check_fidelity_range(name: str, options: Mapping[str, Any]) -> None:
    """Multi-fidelity needs at least two budgets: max_epochs / min_epochs >= reduction_factor."""
    lo, hi, eta = options["min_epochs"], options["max_epochs"], options["reduction_factor"]
    if lo > hi or hi / lo < eta:
        from ...errors import TaoSkillsError
        raise TaoSkillsError(
            f"{name}: max_epochs / min_epochs must be >= reduction_factor to have more than one budget "
            f"(got max_epochs={hi}, min_epochs={lo}, reduction_factor={eta}); raise max_epochs, lower "
            "reduction_factor, or use 'bayesian' / 'random'")


def hyperband_brackets(max_epochs: int, reduction_factor: int = 3, min_epochs: int = 1) -> list[dict[str, Any]]:
    """The Hyperband plan: one dict per bracket, ``s`` from ``s_max`` down to 0.

    Each dict: ``s``, ``n`` (starting configurations), ``r`` (starting budget in units of
    ``min_epochs``) and ``rungs`` = ``[{"n": n_i, "r": r_i, "epochs": e_i}]`` where ``e_i`` is
    ``r_i * min_epochs`` rounded to an integer >= 1.
    """
    eta = int(reduction_factor)
    if eta < 2:
        raise ValueError("reduction_factor must be >= 2")
    if min_epochs < 1 or max_epochs < min_epochs:
        raise ValueError("need 1 <= min_epochs <= max_epochs")
    R = max_epochs / min_epochs
    s_max = _s_max(R, eta)
    out = []
    for s in range(s_max, -1, -1):
        n = -(-((s_max + 1) * eta ** s) // (s + 1))          # exact integer ceil
        r = R / eta ** s
        rungs = []
        for i in range(s + 1):
            r_i = r * eta ** i
            rungs.append({"n": n // eta ** i, "r": r_i, "epochs": max(1, int(round(r_i * min_epochs)))})
        out.append({"s": s, "n": n, "r": r, "rungs": rungs})
    return out


class _BracketDriver(Algorithm):
    """Synchronous successive halving inside brackets; brackets run in parallel when slots are free.

    A rung is complete when all its trials are observed; then the best ``n_{i+1}`` successful
    trials are promoted (failed trials never are). A promoted configuration keeps its
    ``config_id`` and may resume from the promoted trial's final checkpoint.
    Subclasses choose new configurations in ``_new_config(bracket, rung_budget)``.
    """

    multi_fidelity = True
    OPTIONS = {**Algorithm.OPTIONS, "reduction_factor": 3, "min_epochs": 1, "iterations": 1}

    def _validate_options(self) -> None:
        self._check_int_option("reduction_factor", 2)
        self._check_int_option("min_epochs", 1)
        self._check_int_option("iterations", 1)
        _check_fidelity_range(self.name, self.options)

    def plan(self) -> list[dict[str, Any]]:
        """The bracket plan of one Hyperband iteration (see :func:`hyperband_brackets`)."""
        return hyperband_brackets(self.options["max_epochs"], self.options["reduction_factor"],
                                  self.options["min_epochs"])

    def _init(self) -> None:
        self._brackets: list[dict[str, Any]] = []
        for it in range(self.options["iterations"]):
            for b in self.plan():
                self._brackets.append({
                    "iteration": it, "s": b["s"], "rungs": b["rungs"], "rung": 0,
                    "to_sample": b["rungs"][0]["n"], "queue": [], "trials": [[] for _ in b["rungs"]],
                    "started": False, "done": False,
                })

    # -- protocol
    def _suggest(self) -> Suggestion | None:
        for idx, b in enumerate(self._brackets):
            if b["done"]:
                continue
            rung = b["rung"]
            budget = b["rungs"][rung]["epochs"]
            info = {"iteration": b["iteration"], "bracket_index": idx}
            if b["queue"]:
                q = b["queue"].pop(0)
                b["started"] = True
                sug = self._new_trial(q["params"], budget, config_id=q["config_id"], bracket=b["s"], rung=rung,
                                      resume_from_trial=q["parent"], resume_epochs=q["resume_epochs"],
                                      info={**info, "source": "promotion"})
            elif rung == 0 and b["to_sample"] > 0:
                b["started"] = True
                b["to_sample"] -= 1
                params, source = self._new_config(b, budget)
                sug = self._new_trial(params, budget, bracket=b["s"], rung=0, info={**info, "source": source})
            else:
                continue
            b["trials"][rung].append(sug.trial_id)
            return sug
        return None

    def _finished(self) -> bool:
        return all(b["done"] for b in self._brackets)

    def _on_observe(self, rec: TrialRecord) -> None:
        idx = rec.info.get("bracket_index")
        if idx is None:
            return
        b = self._brackets[idx]
        rung = b["rung"]
        if b["done"] or rec.rung != rung:
            return
        if b["queue"] or (rung == 0 and b["to_sample"] > 0):
            return
        ids = b["trials"][rung]
        if any(self._trials[t].status == "pending" for t in ids):
            return
        # rung complete
        if rung + 1 >= len(b["rungs"]):
            b["done"] = True
            return
        ok = sorted((self._trials[t] for t in ids if self._trials[t].status == "ok"),
                    key=lambda r: (self._loss(r.value), r.trial_id))
        keep = ok[: b["rungs"][rung + 1]["n"]]
        b["rung"] = rung + 1
        b["queue"] = [{"config_id": r.config_id, "params": r.params, "parent": r.trial_id,
                       "resume_epochs": r.budget_epochs} for r in keep]
        if not keep:
            b["done"] = True

    def _extra_state(self) -> dict[str, Any]:
        return {"brackets": self._brackets}

    def _load_extra(self, extra: Mapping[str, Any]) -> None:
        self._brackets = [dict(b) for b in extra["brackets"]]

    # -- subclass hook
    def _new_config(self, bracket: Mapping[str, Any], budget_epochs: int) -> tuple[dict[str, Any], str]:
        raise NotImplementedError


@register
class Hyperband(_BracketDriver):
    """Hyperband with random sampling of new configurations.

    Options: ``max_epochs`` (R, 27), ``reduction_factor`` (eta, 3), ``min_epochs`` (1),
    ``iterations`` (1 full Hyperband loop: for R=27, eta=3 that is 4 brackets and 69 trials),
    ``seed`` (0), ``validations_per_trial`` (3).
    """

    name = "hyperband"

    def _new_config(self, bracket, budget_epochs):
        return self._sample_unseen(), "random"
