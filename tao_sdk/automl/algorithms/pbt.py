"""PBT: population based training (Jaderberg et al., 2017), synchronous generations."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import Algorithm, Suggestion, TrialRecord, register


@register
class PBT(Algorithm):
    """A population trained in generations; the weak copy the strong, then perturb.

    ``max_recommendations`` members start from random configurations (member 0 from the template
    defaults when ``start_from_defaults``). Training is cut into ``generations`` segments of
    ``ceil(max_epochs / generations)`` epochs; each segment of a member is one trial that
    continues a checkpoint (``resume_from_trial``), so a member trains ``max_epochs`` epochs in
    all and no epoch twice. When every trial of a generation is observed:

    * **exploit**: the bottom ``exploit_fraction`` of the members (and every member whose trial
      failed: it left no checkpoint to continue) copies a top-``exploit_fraction`` member - its
      checkpoint (``resume_from_trial`` = the donor's trial) and its hyperparameters;
    * **explore**: the copied hyperparameters are perturbed: an ordered coordinate moves by
      ``+-perturb`` on the unit-cube encoding (a log dimension therefore by a factor), an
      unordered choice moves with probability ``resample_probability`` to another value.
      Dimensions under ``inherit_prefixes`` (default ``model.``: they fix the network's shape,
      so the copied weights only fit the donor's values) are inherited, never perturbed;
    * the other members continue their own checkpoint with unchanged hyperparameters.

    ``best()`` is the best member of the last generation (trials at ``max_epochs``). The result is
    a configuration *and* a checkpoint trained under a schedule of hyperparameters; the reported
    params are those of the final segment. The population is lost when every member fails.

    Options: ``max_recommendations`` (8 = population size), ``max_epochs`` (27),
    ``generations`` (3), ``exploit_fraction`` (0.25), ``perturb`` (0.1), ``resample_probability``
    (0.25), ``inherit_prefixes`` (``["model."]``), ``start_from_defaults`` (True), ``seed`` (0),
    ``validations_per_trial`` (3).
    """

    name = "pbt"
    OPTIONS = {**Algorithm.OPTIONS, "max_recommendations": 8, "generations": 3, "exploit_fraction": 0.25,
               "perturb": 0.1, "resample_probability": 0.25, "inherit_prefixes": ["model."],
               "start_from_defaults": True}

    def _validate_options(self) -> None:
        from ...errors import TaoSkillsError

        self._check_int_option("max_recommendations", 2)
        self._check_int_option("generations", 1)
        self._check_float_option("exploit_fraction", 0.0, 0.5)
        self._check_float_option("perturb", 0.0, 1.0)
        self._check_float_option("resample_probability", 0.0, 1.0)
        if self.options["generations"] > self.options["max_epochs"]:
            raise TaoSkillsError(f"pbt: generations ({self.options['generations']}) must be <= max_epochs "
                                 f"({self.options['max_epochs']}): every generation trains at least one epoch")
        prefixes = self.options["inherit_prefixes"]
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise TaoSkillsError(f"pbt: option inherit_prefixes must be a list of dotted-path prefixes (got {prefixes!r})")

    def generation_epochs(self) -> list[int]:
        """Total epochs a member has trained at the end of each generation (last = ``max_epochs``)."""
        g, total = self.options["generations"], self.options["max_epochs"]
        step = -(-total // g)
        return [min(total, step * (i + 1)) for i in range(g)]

    def _init(self) -> None:
        self._generation = 0
        self._queue: list[dict[str, Any]] = []         # next generation's planned trials
        self._current: list[int] = []                  # trial ids of the current generation
        self._done = False

    # -- protocol
    def _suggest(self) -> Suggestion | None:
        budget = self.generation_epochs()[self._generation]
        info = {"generation": self._generation}
        if self._generation == 0 and self._next_config < self.options["max_recommendations"]:
            member = self._next_config
            defaults = member == 0 and self.options["start_from_defaults"]
            params = self.space.repair(self.space.defaults()) if defaults else self._sample_unseen()
            s = self._new_trial(params, budget, rung=0, info={**info, "member": member,
                                                             "source": "defaults" if defaults else "random"})
        elif self._queue:
            q = self._queue.pop(0)
            s = self._new_trial(q["params"], budget, config_id=q["config_id"], rung=self._generation,
                                resume_from_trial=q["parent"], resume_epochs=q["resume_epochs"],
                                info={**info, "member": q["member"], "source": q["source"]})
        else:
            return None
        self._current.append(s.trial_id)
        return s

    def _finished(self) -> bool:
        return self._done

    def _on_observe(self, rec: TrialRecord) -> None:
        if rec.trial_id not in self._current or self._queue:
            return
        if self._generation == 0 and self._next_config < self.options["max_recommendations"]:
            return
        if any(self._trials[t].status == "pending" for t in self._current):
            return
        members = [self._trials[t] for t in self._current]
        ok = sorted((r for r in members if r.status == "ok"), key=lambda r: (self._loss(r.value), r.trial_id))
        if self._generation + 1 >= self.options["generations"] or not ok:
            self._done = True
            return
        self._queue = self._plan_next(ok, [r for r in members if r.status != "ok"])
        self._generation += 1
        self._current = []

    def _plan_next(self, ok: list[TrialRecord], failed: list[TrialRecord]) -> list[dict[str, Any]]:
        """Exploit / explore: one planned trial per member, in member order."""
        n_cut = max(1, int(self.options["exploit_fraction"] * len(ok))) if len(ok) > 1 else 0
        donors = ok[:max(1, n_cut)]
        losers = {r.trial_id for r in ok[len(ok) - n_cut:]} | {r.trial_id for r in failed}
        rng = self._rng()
        plan = []
        for r in sorted(ok + failed, key=lambda r: r.info["member"]):
            if r.trial_id in losers:
                donor = donors[int(rng.integers(0, len(donors)))]
                plan.append({"member": r.info["member"], "params": self._explore(donor.params, rng),
                             "config_id": self._take_config_id(), "parent": donor.trial_id,
                             "resume_epochs": donor.budget_epochs, "source": f"exploit trial {donor.trial_id}"})
            else:
                plan.append({"member": r.info["member"], "params": dict(r.params), "config_id": r.config_id,
                             "parent": r.trial_id, "resume_epochs": r.budget_epochs, "source": "continue"})
        return plan

    def _take_config_id(self) -> int:
        self._next_config += 1
        return self._next_config - 1

    def _explore(self, params: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Perturb ``params`` (inherited dimensions kept); see the class docstring."""
        u = np.array(self.space.to_unit(params), dtype=float)
        levels = self.space.unit_levels()
        inherit = [any(n.startswith(p) for p in self.options["inherit_prefixes"]) for n in self.space.names]
        step = self.options["perturb"]
        for j, lev in enumerate(levels):
            if inherit[j]:
                continue
            if lev is None:
                v = u[j] + (step if rng.random() < 0.5 else -step)
                u[j] = -v if v < 0 else (2 - v if v > 1 else v)    # reflect at the faces
            elif rng.random() < self.options["resample_probability"] and len(lev) > 1:
                u[j] = float(rng.choice([x for x in lev if abs(x - u[j]) > 1e-9]))
        out = self.space.from_unit(u.tolist())
        for j, name in enumerate(self.space.names):
            if inherit[j]:
                out[name] = params[name]
        return self.space.repair(out)

    def _extra_state(self) -> dict[str, Any]:
        return {"generation": self._generation, "queue": self._queue, "current": self._current, "done": self._done}

    def _load_extra(self, extra: Mapping[str, Any]) -> None:
        self._generation = int(extra["generation"])
        self._queue = [dict(q) for q in extra["queue"]]
        self._current = [int(t) for t in extra["current"]]
        self._done = bool(extra["done"])
