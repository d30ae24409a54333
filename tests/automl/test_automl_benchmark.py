"""The AutoML benchmark's real-curve replay and its epoch accounting (continued trials pay only new epochs)."""

from __future__ import annotations

import pytest

pytest.importorskip("scipy")

from benchmarks.automl_regret import run_ours  # noqa: E402
from benchmarks.tabular import CurveObjective  # noqa: E402

GRID = {"train.optim.lr": [1e-4, 1e-3], "dataset.batch_size": [4, 8]}


def _table(points):
    return {"epochs": 4, "grid": GRID, "points": [
        {"params": {"train.optim.lr": lr, "dataset.batch_size": bs}, "status": "SUCCESS",
         "curves": {"val_mAP50": curve, "val_loss": [1.0 - v for v in curve]}}
        for (lr, bs), curve in points.items()]}


def test_replay_is_best_so_far_at_grid_points_and_interpolates_between():
    obj = CurveObjective("val_mAP50", _table({(1e-4, 4): [0.1, 0.3, 0.2, 0.25], (1e-3, 4): [0.2, 0.4, 0.5, 0.6],
                                              (1e-4, 8): [0.0, 0.1, 0.1, 0.2], (1e-3, 8): [0.1, 0.2, 0.3, 0.4]}))
    assert obj.R == 4 and obj.f_star == pytest.approx(0.6)
    p = {"train.optim.lr": 1e-4, "dataset.batch_size": 4}
    assert [obj.observe(p, e) for e in (1, 2, 3, 4)] == pytest.approx([0.1, 0.3, 0.3, 0.3])   # best epoch so far
    mid = {"train.optim.lr": 10 ** -3.5, "dataset.batch_size": 4}                            # halfway on the log axis
    assert obj.true(mid) == pytest.approx((0.3 + 0.6) / 2)
    loss = CurveObjective("val_loss", _table({(1e-4, 4): [0.9, 0.5, 0.7, 0.6]}))
    assert loss.true(p) == pytest.approx(-0.1) and loss.name == "curves-loss"   # lowest loss 1 - 0.9, negated


def test_missing_grid_points_take_the_nearest_recorded_curve():
    obj = CurveObjective("val_mAP50", _table({(1e-3, 8): [0.1, 0.2, 0.3, 0.4], (1e-4, 8): [0.0, 0.0, 0.1, 0.1]}))
    assert obj.n_recorded == 2
    assert obj.true({"train.optim.lr": 1e-3, "dataset.batch_size": 4}) == pytest.approx(0.4)


def test_continued_trials_are_charged_only_their_new_epochs():
    obj = CurveObjective("val_mAP50", _table({(1e-4, 4): [0.1, 0.3, 0.2, 0.25], (1e-3, 4): [0.2, 0.4, 0.5, 0.6],
                                              (1e-4, 8): [0.0, 0.1, 0.1, 0.2], (1e-3, 8): [0.1, 0.2, 0.3, 0.4]}))
    for name in ("hyperband", "pbt"):
        run = run_ours(name, obj, seed=0, trials=3)
        assert run.epochs <= 3 * obj.R
        assert run.trajectory and all(a[0] <= b[0] for a, b in zip(run.trajectory, run.trajectory[1:]))
    # pbt: 3 members x 4 epochs = exactly the budget, although 9 trials ran (3 generations)
    assert run_ours("pbt", obj, seed=0, trials=3).epochs == 12
