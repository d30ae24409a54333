"""The AutoML algorithm protocol shared by every search algorithm.

Loop a controller runs (several trials may be in flight at once)::

    algo = get_algorithm("bayesian", space, "max", max_recommendations=20, max_epochs=27)
    while not algo.is_finished():
        while len(running) < max_concurrent and (s := algo.suggest()) is not None:
            running[s.trial_id] = launch(apply_params(base_spec, s.params), s)   # s.budget_epochs ...
        trial_id, best_metric, epochs, error = wait_for_any(running)
        algo.observe(trial_id, best_metric, epochs=epochs, error=error)      # None = failed
        store(json.dumps(algo.state()))                                      # durable resume
    trial_id, params, value = algo.best()

After a restart: ``algo = Algorithm.from_state(space, json.loads(stored))`` continues exactly
where the stored state left off (trials still in ``algo.pending()`` must be observed or failed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from ...errors import TaoSkillsError
from ...results import as_loss, check_direction
from ..space import SearchSpace

STATE_FORMAT = 1

#: Name -> class; filled by :func:`register`.
REGISTRY: dict[str, type["Algorithm"]] = {}


def register(cls: type["Algorithm"]) -> type["Algorithm"]:
    """Class decorator adding an :class:`Algorithm` subclass to the registry under ``cls.name``."""
    REGISTRY[cls.name] = cls
    return cls


def matched_intervals(budget_epochs: int, validations: int = 3) -> tuple[int, int]:
    """``(checkpoint_interval, validation_interval)`` for a trial of ``budget_epochs`` epochs.

    The interval is the largest divisor of the budget that still gives at least ``validations``
    validations (fewer when the budget is shorter), so the last epoch is always validated and
    checkpointed (a promoted trial resumes from that checkpoint) and the controller can report
    the best validation value, not the last one. 27 -> (9, 9); 9 -> (3, 3); 3 -> (1, 1); 20 -> (5, 5).
    """
    b = max(1, int(budget_epochs))
    want = max(1, min(int(validations), b))
    best = 1
    for d in range(1, b + 1):
        if b % d == 0 and b // d >= want:
            best = d
    return best, best


@dataclass
class Suggestion:
    """One trial to run.

    Attributes:
        trial_id: id to pass back to :meth:`Algorithm.observe`.
        config_id: id of the configuration; a configuration promoted to a longer budget keeps it.
        params: ``{dotted spec path: value}`` to merge into the base train spec
            (:func:`tao_sdk.automl.space.apply_params`).
        budget_epochs: total epochs this trial trains for (set ``train.num_epochs``).
        checkpoint_interval / validation_interval: epochs between checkpoints / validations,
            matched to the budget (see :func:`matched_intervals`).
        bracket: Hyperband bracket ``s`` (None for single-fidelity algorithms).
        rung: rung index inside the bracket (0 = first, cheapest budget).
        resume_from_trial: a promoted configuration may resume from this trial's final checkpoint
            (it trained the same params for ``resume_epochs`` epochs); None for a fresh start.
        resume_epochs: epochs already trained by ``resume_from_trial``.
        info: algorithm-specific extras (e.g. ``{"iteration": 0, "source": "model"}``).
    """

    trial_id: int
    config_id: int
    params: dict[str, Any]
    budget_epochs: int
    checkpoint_interval: int
    validation_interval: int
    bracket: int | None = None
    rung: int | None = None
    resume_from_trial: int | None = None
    resume_epochs: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (inverse: :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Suggestion":
        """Rebuild from :meth:`to_dict` output."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class TrialRecord(Suggestion):
    """A suggestion plus its outcome: ``status`` is ``pending``, ``ok`` or ``failed``.

    ``value`` is the reported metric (None when failed), ``epochs`` the epochs actually run,
    ``error`` the failure message.
    """

    status: str = "pending"
    value: float | None = None
    epochs: int | None = None
    error: str | None = None

    def suggestion(self) -> Suggestion:
        """The :class:`Suggestion` this record was created from."""
        return Suggestion.from_dict(self.to_dict())


class Algorithm:
    """Base class of every AutoML search algorithm (Optuna-like ask/tell protocol).

    Construct through :func:`tao_sdk.automl.algorithms.get_algorithm`. Subclasses declare
    ``name`` and ``OPTIONS`` (option -> default) and implement ``_suggest``; they may override
    ``_on_observe``, ``_finished``, ``_extra_state`` and ``_load_extra``.
    """

    name: ClassVar[str] = ""
    #: Options every algorithm accepts, with defaults; subclasses extend.
    OPTIONS: ClassVar[dict[str, Any]] = {"seed": 0, "max_epochs": 27, "validations_per_trial": 3}
    multi_fidelity: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, direction: str, **options: Any):
        if not isinstance(space, SearchSpace):
            raise TaoSkillsError("space must be a tao_sdk.automl.space.SearchSpace")
        if len(space) == 0:
            raise TaoSkillsError("the search space is empty: nothing to search (check include/exclude and "
                                 "space.skipped)")
        self.space = space
        self.direction = check_direction(direction)
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise TaoSkillsError(f"{self.name}: unknown option(s) {unknown}; accepted: "
                                 + ", ".join(f"{k}={v!r}" for k, v in self.OPTIONS.items()))
        opts = dict(self.OPTIONS)
        opts.update(options)
        self.options: dict[str, Any] = opts
        self._check_int_option("seed", 0)
        self._check_int_option("max_epochs", 1)
        self._check_int_option("validations_per_trial", 1)
        self._validate_options()
        self._draws = 0
        self._next_trial = 0
        self._next_config = 0
        self._trials: dict[int, TrialRecord] = {}
        self._init()

    # ------------------------------------------------------------------ public protocol
    def suggest(self) -> Suggestion | None:
        """The next trial to run, or None when nothing can start now.

        None means either "wait: observe a running trial first" (``pending()`` is not empty) or
        "finished" (:meth:`is_finished`). May be called again before earlier suggestions are
        observed: every algorithm supports several trials in flight.
        """
        if self.is_finished():
            return None
        return self._suggest()

    def observe(self, trial_id: int, value: float | None, *, epochs: int, error: str | None = None) -> None:
        """Report a trial's result.

        Args:
            trial_id: the suggestion's ``trial_id``.
            value: the BEST validation value of the monitored metric over the trial (not the last
                one); ``None`` when the trial failed. A failed trial is recorded with ``error``,
                is never promoted and can never be the best. NaN / inf count as failures.
            epochs: epochs the trial actually completed.
            error: why the trial failed (required message when ``value`` is None is recommended).

        Reporting the same result twice is a no-op; a different second result is an error.
        """
        rec = self._trials.get(trial_id) if isinstance(trial_id, int) and not isinstance(trial_id, bool) else None
        if rec is None:
            raise TaoSkillsError(f"observe: unknown trial_id {trial_id!r}; pending trials: {self.pending()}")
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
            raise TaoSkillsError(f"observe: epochs must be an int >= 0 (got {epochs!r})")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TaoSkillsError(f"observe: value must be a number or None (got {value!r})")
            value = float(value)
            if not math.isfinite(value):
                error = f"non-finite metric value {value!r}" + (f"; {error}" if error else "")
                value = None
        status = "ok" if value is not None else "failed"
        if value is None and not error:
            error = "trial failed (no metric reported)"
        if rec.status != "pending":
            if rec.status == status and rec.value == value and rec.epochs == epochs:
                return
            raise TaoSkillsError(f"observe: trial {trial_id} was already reported as {rec.status} "
                                 f"(value {rec.value!r}); results are final")
        rec.status, rec.value, rec.epochs = status, value, int(epochs)
        rec.error = None if status == "ok" else str(error)
        self._on_observe(rec)

    def is_finished(self) -> bool:
        """True when no trial is pending and the algorithm will suggest nothing more."""
        return not self.pending() and self._finished()

    def best(self) -> tuple[int, dict[str, Any], float] | None:
        """``(trial_id, params, value)`` of the best successful trial, or None when none succeeded.

        Multi-fidelity algorithms compare only trials at the largest budget reached by any
        successful trial (a 27-epoch result beats any 3-epoch result). Failed trials never count.
        """
        ok = [r for r in self._trials.values() if r.status == "ok"]
        if not ok:
            return None
        top = max(r.budget_epochs for r in ok)
        ok = [r for r in ok if r.budget_epochs == top]
        r = min(ok, key=lambda r: (self._loss(r.value), r.trial_id))
        return r.trial_id, dict(r.params), float(r.value)

    def trials(self) -> list[TrialRecord]:
        """Every trial so far (copies), in trial-id order."""
        return [TrialRecord(**self._trials[k].to_dict()) for k in sorted(self._trials)]

    def pending(self) -> list[int]:
        """Ids of suggested trials not yet observed."""
        return sorted(k for k, r in self._trials.items() if r.status == "pending")

    def state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot; :meth:`from_state` restores it exactly.

        Store it after every :meth:`suggest` and :meth:`observe` (e.g. with
        ``json.dumps(state, allow_nan=False)``) so a killed controller resumes where it stopped.
        """
        return {
            "format": STATE_FORMAT,
            "algorithm": self.name,
            "direction": self.direction,
            "options": dict(self.options),
            "space_signature": self.space.signature(),
            "space_dims": self.space.names,
            "draws": self._draws,
            "next_trial": self._next_trial,
            "next_config": self._next_config,
            "trials": [self._trials[k].to_dict() for k in sorted(self._trials)],
            "extra": self._extra_state(),
        }

    @classmethod
    def from_state(cls, space: SearchSpace, state: Mapping[str, Any]) -> "Algorithm":
        """Rebuild an algorithm from :meth:`state` output (callable on the base class).

        Raises TaoSkillsError when the state is malformed, belongs to another algorithm or was
        taken on a different search space (schema regenerated, other include/overrides).
        """
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise TaoSkillsError(f"AutoML state has an unknown format (expected format {STATE_FORMAT})")
        name = state.get("algorithm")
        target = REGISTRY.get(str(name))
        if target is None:
            raise TaoSkillsError(f"AutoML state names unknown algorithm {name!r}; known: {sorted(REGISTRY)}")
        if cls is not Algorithm and not issubclass(target, cls):
            raise TaoSkillsError(f"state belongs to algorithm '{name}', not '{cls.name}'")
        if state.get("space_signature") != space.signature():
            raise TaoSkillsError(
                "AutoML state was saved for a different search space (dims then: "
                f"{', '.join(state.get('space_dims') or [])}; now: {', '.join(space.names)}). "
                "Rebuild the space with the same schema, include, exclude and overrides to resume.")
        algo = target(space, state["direction"], **state["options"])
        algo._draws = int(state["draws"])
        algo._next_trial = int(state["next_trial"])
        algo._next_config = int(state["next_config"])
        algo._trials = {int(t["trial_id"]): TrialRecord(**t) for t in state["trials"]}
        algo._load_extra(state.get("extra") or {})
        return algo

    # ------------------------------------------------------------------ helpers for subclasses
    def _check_int_option(self, key: str, minimum: int) -> int:
        v = self.options.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise TaoSkillsError(f"{self.name}: option {key} must be an integer >= {minimum} (got {v!r})")
        return v

    def _check_float_option(self, key: str, lo: float, hi: float) -> float:
        v = self.options.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise TaoSkillsError(f"{self.name}: option {key} must be a number in [{lo}, {hi}] (got {v!r})")
        return float(v)

    def _rng(self) -> np.random.Generator:
        """A fresh generator derived from (seed, draw counter): restores exactly from state."""
        g = np.random.default_rng([int(self.options["seed"]), self._draws, 0x7A0])
        self._draws += 1
        return g

    def _loss(self, value: float) -> float:
        """Value to minimise internally."""
        return as_loss(value, self.direction)

    def _new_trial(self, params: Mapping[str, Any], budget_epochs: int, *, config_id: int | None = None,
                   bracket: int | None = None, rung: int | None = None, resume_from_trial: int | None = None,
                   resume_epochs: int = 0, info: Mapping[str, Any] | None = None) -> Suggestion:
        if config_id is None:
            config_id = self._next_config
            self._next_config += 1
        ck, val = matched_intervals(budget_epochs, self.options["validations_per_trial"])
        rec = TrialRecord(trial_id=self._next_trial, config_id=config_id, params=_plain(params),
                          budget_epochs=int(budget_epochs), checkpoint_interval=ck, validation_interval=val,
                          bracket=bracket, rung=rung, resume_from_trial=resume_from_trial,
                          resume_epochs=int(resume_epochs), info=dict(info or {}))
        self._trials[rec.trial_id] = rec
        self._next_trial += 1
        return rec.suggestion()

    def _seen(self, params: Mapping[str, Any]) -> bool:
        return any(r.params == params for r in self._trials.values())

    def _sample_unseen(self, rng: np.random.Generator | None = None, tries: int = 20) -> dict[str, Any]:
        """A random configuration not tried before (after ``tries`` draws, the last one anyway)."""
        rng = rng if rng is not None else self._rng()
        p = self.space.sample(rng)
        for _ in range(tries - 1):
            if not self._seen(p):
                break
            p = self.space.sample(rng)
        return p

    # ------------------------------------------------------------------ subclass hooks
    def _validate_options(self) -> None:
        """Check algorithm-specific options (raise TaoSkillsError)."""

    def _init(self) -> None:
        """Set up algorithm-specific state."""

    def _suggest(self) -> Suggestion | None:
        raise NotImplementedError

    def _on_observe(self, rec: TrialRecord) -> None:
        """React to a result (promotion, model update...)."""

    def _finished(self) -> bool:
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra(self, extra: Mapping[str, Any]) -> None:
        pass


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as plain JSON types (numpy scalars converted)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[str(k)] = v
    return out
