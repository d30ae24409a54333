"""AutoML algorithms: protocol, bracket maths, failures, concurrency, durable state, quality."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tao_sdk.automl.algorithms import (Algorithm, Suggestion, algorithm_names, algorithm_options, get_algorithm,
                                       hyperband_brackets, matched_intervals)
from tao_sdk.automl.space import SearchSpace
from tao_sdk.errors import TaoSkillsError

#: Every registered algorithm (a new one joins every test below with no edit here).
ALL = algorithm_names()


def small_space(d: int = 3, with_choice: bool = True) -> SearchSpace:
    props = {f"x{i}": {"type": "number", "tao_value_type": "float", "minimum": 0.0, "maximum": 1.0, "default": 0.5}
             for i in range(d)}
    props["lr"] = {"type": "number", "tao_value_type": "float", "minimum": 0.0, "maximum": 1.0, "default": 1e-3,
                   "math_cond": "> 0.0"}
    names = [f"p.x{i}" for i in range(d)] + ["p.lr"]
    if with_choice:
        props["opt"] = {"type": "string", "tao_value_type": "categorical", "enum": ["adam", "sgd"], "default": "adam"}
        props["n"] = {"type": "integer", "tao_value_type": "int", "minimum": 1, "maximum": 8, "default": 4}
        names += ["p.opt", "p.n"]
    schema = {"type": "object", "properties": {"p": {"type": "object", "properties": props}},
              "automl_default_parameters": names}
    return SearchSpace.from_schema(schema)


def make_objective(space: SearchSpace, seed: int):
    """Smooth objective in [0, 1] (maximised), optimum away from the defaults; lower at short budgets."""
    r = np.random.default_rng(1000 + seed)
    ustar = r.uniform(0.15, 0.85, len(space))
    cat = np.array(space.categorical_mask)

    def f(params, epochs=27):
        u = np.array(space.to_unit(params))
        d2 = np.where(cat, (np.abs(u - ustar) > 0.3) * 0.3, (u - ustar) ** 2)
        return float(1.0 - d2.sum() / len(u) * 3) - 0.2 * (1 - epochs / 27)

    return f


def drive(algo: Algorithm, f, concurrency: int = 1, fail_every: int = 0, limit: int = 500) -> list[int]:
    """Run an algorithm to the end with ``concurrency`` trials in flight; returns failed trial ids."""
    running: list[Suggestion] = []
    failed = []
    n = 0
    while not algo.is_finished():
        while len(running) < concurrency and (s := algo.suggest()) is not None:
            running.append(s)
        assert running, "not finished, nothing running, nothing suggested"
        s = running.pop(0)
        n += 1
        if fail_every and n % fail_every == 0:
            algo.observe(s.trial_id, None, epochs=1, error="CUDA out of memory")
            failed.append(s.trial_id)
        else:
            algo.observe(s.trial_id, f(s.params, s.budget_epochs), epochs=s.budget_epochs)
        assert n < limit
    return failed


# ------------------------------------------------------------------ bracket maths
def test_hyperband_table_r81_eta3():
    plan = hyperband_brackets(81, 3)
    table = {b["s"]: [(r["n"], r["epochs"]) for r in b["rungs"]] for b in plan}
    assert table == {
        4: [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        3: [(34, 3), (11, 9), (3, 27), (1, 81)],
        2: [(15, 9), (5, 27), (1, 81)],
        1: [(8, 27), (2, 81)],
        0: [(5, 81)],
    }


def test_hyperband_defaults_r27_and_exact_powers():
    plan = hyperband_brackets(27, 3)
    assert [b["s"] for b in plan] == [3, 2, 1, 0]
    assert [b["n"] for b in plan] == [27, 12, 6, 4]
    assert [r["epochs"] for r in plan[0]["rungs"]] == [1, 3, 9, 27]
    # log(243)/log(3) is 4.999... in floating point: s_max must still be 5
    assert hyperband_brackets(243, 3)[0]["s"] == 5
    assert hyperband_brackets(1000, 10)[0]["s"] == 3
    assert hyperband_brackets(26, 3)[0]["s"] == 2
    assert hyperband_brackets(10, 2, min_epochs=2)[0]["rungs"][0]["epochs"] == 2


def test_matched_intervals():
    assert matched_intervals(27) == (9, 9)
    assert matched_intervals(9) == (3, 3)
    assert matched_intervals(3) == (1, 1)
    assert matched_intervals(1) == (1, 1)
    assert matched_intervals(20) == (5, 5)
    assert matched_intervals(10) == (2, 2)


def test_hyperband_suggestions_carry_rung_budgets_and_promotions():
    space = small_space()
    algo = get_algorithm("hyperband", space, "max", max_epochs=27, reduction_factor=3, seed=1)
    f = make_objective(space, 1)
    drive(algo, f, concurrency=4)
    trials = algo.trials()
    assert len(trials) == sum(r["n"] for b in hyperband_brackets(27, 3) for r in b["rungs"]) == 69
    for t in trials:
        assert t.budget_epochs % t.validation_interval == 0 and t.budget_epochs % t.checkpoint_interval == 0
        assert t.budget_epochs in (1, 3, 9, 27)
        if t.rung and t.rung > 0:
            parent = trials[t.resume_from_trial]
            assert parent.config_id == t.config_id and parent.params == t.params
            assert t.resume_epochs == parent.budget_epochs and parent.status == "ok"
    b = algo.best()
    assert trials[b[0]].budget_epochs == 27


# ------------------------------------------------------------------ registry and protocol errors
def test_registry_and_option_errors():
    space = small_space()
    from tao_sdk.automl.algorithms.base import REGISTRY

    assert ALL == sorted(REGISTRY) and {"random", "bayesian", "hyperband"} <= set(ALL)
    for name in ALL:  # each name builds the algorithm registered under it
        assert isinstance(get_algorithm(name, space, "max"), REGISTRY[name])
    with pytest.raises(TaoSkillsError, match=", ".join(ALL)):  # an unknown name lists every one
        get_algorithm("tpe", space, "max")
    with pytest.raises(TaoSkillsError, match="unknown option.*max_recommendations"):
        get_algorithm("bayesian", space, "max", max_recomendations=5)
    with pytest.raises(TaoSkillsError, match="direction must be 'max' or 'min'"):
        get_algorithm("random", space, "epe")
    with pytest.raises(TaoSkillsError, match="reduction_factor"):
        get_algorithm("hyperband", space, "min", reduction_factor=1)
    for name in ("hyperband", "asha", "bohb"):
        with pytest.raises(TaoSkillsError, match="max_epochs / min_epochs must be >= reduction_factor"):
            get_algorithm(name, space, "max", max_epochs=2)
    assert algorithm_options("bayesian")["max_recommendations"] == 20
    assert algorithm_options("hyperband")["max_epochs"] == 27 and algorithm_options("asha")["reduction_factor"] == 3


def test_observe_errors_and_idempotence():
    space = small_space()
    algo = get_algorithm("random", space, "max", max_recommendations=3)
    s = algo.suggest()
    with pytest.raises(TaoSkillsError, match="unknown trial_id 99"):
        algo.observe(99, 0.5, epochs=1)
    with pytest.raises(TaoSkillsError, match="epochs"):
        algo.observe(s.trial_id, 0.5, epochs=-1)
    algo.observe(s.trial_id, 0.5, epochs=27)
    algo.observe(s.trial_id, 0.5, epochs=27)            # same report again: no-op
    with pytest.raises(TaoSkillsError, match="already reported"):
        algo.observe(s.trial_id, 0.7, epochs=27)
    s2 = algo.suggest()
    algo.observe(s2.trial_id, float("nan"), epochs=27)  # NaN metric = failure
    assert algo.trials()[1].status == "failed" and "non-finite" in algo.trials()[1].error


def test_bayesian_first_trial_is_the_template_defaults():
    space = small_space()
    algo = get_algorithm("bayesian", space, "max")
    s = algo.suggest()
    assert s.params == space.defaults() and s.info["source"] == "defaults"


# ------------------------------------------------------------------ failures
@pytest.mark.parametrize("name", algorithm_names())  # every registered algorithm
def test_failed_trials_are_never_best_nor_promoted(name):
    space = small_space()
    # direction "min" with positive values: recording a failure as 0.0 would make it the best
    algo = get_algorithm(name, space, "min", seed=2, max_epochs=9,
                         **({"max_recommendations": 12} if name in ("random", "bayesian", "asha") else {}))
    f = make_objective(space, 2)
    failed = set(drive(algo, lambda p, e: 1.0 + f(p, e), concurrency=3, fail_every=3))
    assert failed
    trials = algo.trials()
    for t in trials:
        if t.trial_id in failed:
            assert t.status == "failed" and t.value is None and t.error == "CUDA out of memory"
        if t.resume_from_trial is not None:
            assert t.resume_from_trial not in failed
    best = algo.best()
    assert best is not None and best[0] not in failed and best[2] >= 1.0 - 1.0


def test_all_failed_has_no_best():
    space = small_space()
    algo = get_algorithm("random", space, "max", max_recommendations=3)
    while (s := algo.suggest()) is not None:
        algo.observe(s.trial_id, None, epochs=0, error="boom")
    assert algo.is_finished() and algo.best() is None


# ------------------------------------------------------------------ concurrency
@pytest.mark.parametrize("name", algorithm_names())  # every registered algorithm
def test_many_trials_in_flight(name):
    space = small_space()
    algo = get_algorithm(name, space, "max", seed=4, max_epochs=9,
                         **({"max_recommendations": 10} if name in ("random", "bayesian", "asha") else {}))
    batch = [algo.suggest() for _ in range(5)]
    assert all(s is not None for s in batch)
    assert len({s.trial_id for s in batch}) == 5
    assert len({json.dumps(s.params, sort_keys=True) for s in batch}) == 5
    assert algo.pending() == sorted(s.trial_id for s in batch)
    f = make_objective(space, 4)
    for s in batch:
        algo.observe(s.trial_id, f(s.params, s.budget_epochs), epochs=s.budget_epochs)
    drive(algo, f, concurrency=5)
    assert algo.is_finished() and algo.best() is not None


# ------------------------------------------------------------------ durable state
@pytest.mark.parametrize("name", algorithm_names())  # every registered algorithm
def test_state_round_trip_mid_run(name):
    space = small_space()
    opts = {"seed": 5, "max_epochs": 9}
    if name in ("random", "bayesian", "asha"):
        opts["max_recommendations"] = 10
    a = get_algorithm(name, space, "max", **opts)
    f = make_objective(space, 5)
    # mid-run: some observed, one failed, two still in flight
    for i in range(7):
        s = a.suggest()
        if i == 2:
            a.observe(s.trial_id, None, epochs=0, error="node lost")
        elif i < 5:
            a.observe(s.trial_id, f(s.params, s.budget_epochs), epochs=s.budget_epochs)
    text = json.dumps(a.state(), allow_nan=False)
    b = Algorithm.from_state(space, json.loads(text))
    assert b.state() == a.state()
    assert b.pending() == a.pending()
    # identical next suggestion, then identical continuation
    sa, sb = a.suggest(), b.suggest()
    assert sa == sb
    for algo in (a, b):
        for tid in algo.pending():
            t = algo.trials()[tid]
            algo.observe(tid, f(t.params, t.budget_epochs), epochs=t.budget_epochs)
        drive(algo, f, concurrency=2)
    assert [t.to_dict() for t in a.trials()] == [t.to_dict() for t in b.trials()]
    assert a.best() == b.best()


def test_state_refuses_another_space():
    space = small_space()
    a = get_algorithm("bayesian", space, "max")
    a.suggest()
    state = json.loads(json.dumps(a.state()))
    with pytest.raises(TaoSkillsError, match="different search space"):
        Algorithm.from_state(small_space(d=4), state)
    with pytest.raises(TaoSkillsError, match="unknown format"):
        Algorithm.from_state(space, {"format": 99})
    with pytest.raises(TaoSkillsError, match="unknown algorithm"):
        Algorithm.from_state(space, {**state, "algorithm": "nope"})


# ------------------------------------------------------------------ quality on a smooth objective
def _mean_regret(name: str, space: SearchSpace, seeds, **opts) -> float:
    regrets = []
    for seed in seeds:
        f = make_objective(space, seed)
        algo = get_algorithm(name, space, "max", seed=seed, **opts)
        drive(algo, f, concurrency=1)
        regrets.append(1.0 - f(algo.best()[1]))
    return float(np.mean(regrets))


def test_bayesian_beats_random_on_a_smooth_objective():
    space = small_space(d=4, with_choice=False)
    seeds = range(4)
    r = _mean_regret("random", space, seeds, max_recommendations=15)
    b = _mean_regret("bayesian", space, seeds, max_recommendations=15)
    assert b < 0.5 * r, (b, r)


def test_bohb_and_hyperband_beat_random_at_equal_epoch_budget():
    space = small_space(d=4, with_choice=False)
    seeds = range(12)
    # one Hyperband iteration at R=9, eta=3 costs 9*1+3*3+1*9 + 5*3+1*9 + 3*9 = 78 epochs; random: 9 x 9 = 81
    r = _mean_regret("random", space, seeds, max_recommendations=9, max_epochs=9)
    bo = _mean_regret("bohb", space, seeds, max_epochs=9)
    hb = _mean_regret("hyperband", space, seeds, max_epochs=9)
    assert bo < r and hb < r, (bo, hb, r)


# ------------------------------------------------------------------ PBT / DEHB specifics
def test_pbt_members_continue_or_copy_checkpoints_and_train_each_epoch_once():
    space = small_space()
    algo = get_algorithm("pbt", space, "max", seed=3, max_epochs=9, generations=3, max_recommendations=8,
                         exploit_fraction=0.25, inherit_prefixes=["p.opt"])
    assert algo.generation_epochs() == [3, 6, 9]
    f = make_objective(space, 3)
    drive(algo, f, concurrency=3)
    trials = algo.trials()
    by_id = {t.trial_id: t for t in trials}
    assert len(trials) == 24 and [sum(t.rung == g for t in trials) for g in range(3)] == [8, 8, 8]
    assert sum(t.budget_epochs - t.resume_epochs for t in trials) == 8 * 9   # no epoch trained twice
    exploits = [t for t in trials if t.info["source"].startswith("exploit")]
    assert len(exploits) == 2 * 2                                            # bottom quarter, twice
    for t in trials:
        if t.rung == 0:
            assert t.resume_from_trial is None
            continue
        parent = by_id[t.resume_from_trial]
        assert parent.rung == t.rung - 1 and t.resume_epochs == parent.budget_epochs
        if t in exploits:
            # copied from a top-quarter member of the previous generation, perturbed, model dims inherited
            peers = sorted((p for p in trials if p.rung == parent.rung), key=lambda p: -p.value)
            assert parent.trial_id in {p.trial_id for p in peers[:2]}
            assert t.params != parent.params and t.params["p.opt"] == parent.params["p.opt"]
            assert t.config_id != parent.config_id
        else:
            assert t.params == parent.params and t.config_id == parent.config_id
    best = algo.best()
    assert by_id[best[0]].budget_epochs == 9


def test_pbt_failed_member_copies_a_survivor():
    space = small_space()
    algo = get_algorithm("pbt", space, "max", seed=1, max_epochs=4, generations=2, max_recommendations=4)
    gen0 = [algo.suggest() for _ in range(4)]
    assert algo.suggest() is None
    for i, s in enumerate(gen0):
        if i == 0:
            algo.observe(s.trial_id, None, epochs=1, error="CUDA out of memory")
        else:
            algo.observe(s.trial_id, 0.1 * i, epochs=s.budget_epochs)
    gen1 = [algo.suggest() for _ in range(4)]
    assert algo.suggest() is None
    member0 = next(s for s in gen1 if s.info["member"] == 0)
    assert member0.resume_from_trial == gen0[3].trial_id and member0.info["source"].startswith("exploit")
    assert {s.resume_from_trial for s in gen1} >= {gen0[2].trial_id}


def test_dehb_breeds_configurations_from_the_best_trials():
    space = small_space(d=4, with_choice=False)
    algo = get_algorithm("dehb", space, "max", seed=2, max_epochs=9, iterations=2)
    drive(algo, make_objective(space, 2), concurrency=2)
    sources = [t.info["source"] for t in algo.trials()]
    assert "evolution" in sources and "random" in sources


def test_bohb_gp_model_proposes_by_expected_improvement_and_round_trips():
    space = small_space(d=4, with_choice=False)
    with pytest.raises(TaoSkillsError, match="model must be one of tpe, gp"):
        get_algorithm("bohb", space, "max", model="rf")
    a = get_algorithm("bohb", space, "max", seed=1, max_epochs=9, model="gp", min_points_in_model=4)
    f = make_objective(space, 1)
    for _ in range(12):
        s = a.suggest()
        a.observe(s.trial_id, f(s.params, s.budget_epochs), epochs=s.budget_epochs)
    b = Algorithm.from_state(space, json.loads(json.dumps(a.state())))
    s = a.suggest()
    assert s == b.suggest()
    a.observe(s.trial_id, f(s.params, s.budget_epochs), epochs=s.budget_epochs)
    drive(a, f)
    assert "model" in [t.info["source"] for t in a.trials()]
