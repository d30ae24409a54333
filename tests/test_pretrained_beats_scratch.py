"""Training from pretrained weights beats training from scratch (issue 17), end to end through
the public SDK and the real worker on the demo's synthetic data:

1. the demo's tiny RT-DETR trains (the ``--quick`` demo's settings, fewer epochs);
2. its checkpoint is in TAO's Lightning layout (``state_dict`` under TAO's ``model.model.``
   keys, every key covered by the TAO key table, ``tao_model``, Lightning's bookkeeping); the
   file is rewritten with TAO's keys only (the worker's extras such as ``arch`` dropped), i.e. as
   TAO's own trainer writes it;
3. a train job starts from that file (``pretrained_model=``, what ``--pretrained-model`` sets)
   and another from scratch, same seed, data and epochs: the pretrained job's validation mAP50
   beats scratch by a clear margin and its load report (job result and status.json) says every
   tensor loaded: nothing skipped, nothing left at its initial value.

The same flow with the curves recorded: ``python -m benchmarks.pretrained_vs_scratch``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchmarks.pretrained_vs_scratch import compare, tao_layout_problems  # noqa: E402

pytestmark = pytest.mark.slow
#: Fewer epochs than the benchmark's :data:`PLAN` (the test's time budget); the margin stays wide.
TEST_PLAN = {"pretrain_epochs": 12, "epochs": 2}


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("TAO_SKILLS_ENTRYPOINT", raising=False)
    monkeypatch.setenv("TAO_WORKER_BACKBONE_SCALE", "tiny")
    # One torch thread per worker: the pretrained and the scratch job run side by side, and on a
    # shared 2-core machine two threads per process made a pre-training epoch take 21 s, one
    # thread about 6 s (load average 4-8).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_rtdetr_pretrained_beats_scratch(env, tmp_path):
    from tao_sdk import Workspace

    out = compare("rtdetr", Workspace(tmp_path / "ws"), tmp_path, TEST_PLAN)
    assert tao_layout_problems("rtdetr", out["checkpoint"]) == []
    load = out["load"]
    assert load["skipped"] == [] and load["left_at_init"] == 0, load
    assert load["loaded"] == load["model_tensors"] and load["layout"] == "tao", load
    assert out["status_load_line"]["weights"]["loaded"] == load["loaded"]
    pre, scratch = out["pretrained"]["final"], out["scratch"]["final"]
    assert pre >= scratch + 0.15, out
