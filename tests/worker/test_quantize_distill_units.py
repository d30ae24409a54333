"""Unit tests of the quantize and distill building blocks on small torch models (CPU)."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from tao_sdk.worker import distillation as D  # noqa: E402
from tao_sdk.worker import quantization as Q  # noqa: E402
from tao_sdk.worker.errors import SpecError  # noqa: E402


class Net(nn.Module):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, width), nn.ReLU())
        self.head = nn.Linear(width, 5)

    def forward(self, x):
        return self.head(self.body(torch.relu(self.stem(x))))


def _net(width: int = 32, seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net(width).eval()


def _spec(**quant) -> dict:
    return {"quantize": quant}


def test_torchao_weight_only_shrinks_and_round_trips():
    model, x = _net(256), torch.randn(2, 3, 8, 8)
    ref = model(x)
    plan = Q.plan_from_spec(_spec(backend="torchao", mode="weight_only_ptq",
                                  layers=[{"module_name": "*", "weights": {"dtype": "int8"}}],
                                  skip_names=["stem"]))
    model, record, report = Q.quantize_model(model, plan)
    assert set(report.modules) == {"body.1", "head"}
    assert report.quantized_bytes < 0.5 * report.float_bytes
    assert (model(x) - ref).abs().max().item() < 0.05
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "quantization": record}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    fresh = Q.restore(_net(256, seed=1), ckpt["quantization"])
    fresh.load_state_dict(ckpt["model"], assign=True)
    assert torch.equal(fresh(x), model(x))


def test_modelopt_static_ptq_calibrates_and_round_trips():
    pytest.importorskip("modelopt.torch.quantization")
    model, x = _net(), torch.randn(2, 3, 8, 8)
    ref = model(x)
    plan = Q.plan_from_spec(_spec(backend="modelopt.pytorch", mode="static_ptq",
                                  layers=[{"module_name": "*", "weights": {"dtype": "int8"},
                                           "activations": {"dtype": "int8"}}]))
    calls = []

    def calibrate(m):
        calls.append(1)
        for _ in range(3):
            m(torch.randn(2, 3, 8, 8))

    model, record, report = Q.quantize_model(model, plan, calibrate)
    assert calls and set(report.modules) == {"stem", "body.1", "head"}
    assert 0 < (model(x) - ref).abs().max().item() < 0.1   # really fake-quantized
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "quantization": record}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    fresh = Q.restore(_net(seed=1), ckpt["quantization"])
    fresh.load_state_dict(ckpt["model"])
    assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("quant, needle", [
    ({"backend": "torchao", "mode": "static_ptq"}, "modelopt.pytorch"),
    ({"backend": "modelopt.onnx"}, "exported .onnx"),
    ({"backend": "nope"}, "use one of"),
    ({"layers": [{"module_name": "*", "weights": {"dtype": "int3"}}]}, "int8, int4"),
    ({"layers": [{"module_name": "*", "weights": {"dtype": "int8"},
                  "activations": {"dtype": "int8"}}]}, "weight_only_ptq"),
    ({"backend": "modelopt.pytorch", "mode": "static_ptq", "algorithm": "awq_full"}, "max"),
])
def test_plan_refusals_name_the_field(quant, needle):
    with pytest.raises(SpecError, match=needle):
        Q.plan_from_spec(_spec(**quant))


def test_unmatched_layer_pattern_lists_close_names():
    plan = Q.plan_from_spec(_spec(layers=[{"module_name": "heads", "weights": {"dtype": "int8"}}]))
    with pytest.raises(SpecError, match="close names: head"):
        Q.select_modules(_net(), plan)


def test_is_quantized_flag_mismatch_is_an_error():
    with pytest.raises(SpecError, match="evaluate.is_quantized=true"):
        Q.check_flag({"quantization": {"backend": "torchao"}}, False, "evaluate", "q.pth")
    with pytest.raises(SpecError, match="not a quantized checkpoint"):
        Q.check_flag({}, True, "export", "f.pth")
    Q.check_flag({}, False, "evaluate", "f.pth")


def test_distiller_loss_pulls_student_towards_teacher():
    teacher, student = _net(64, seed=0), _net(16, seed=1).train()
    bindings = D.parse_bindings({"distill": {"bindings": [
        {"student_module_name": "head", "teacher_module_name": "head", "criterion": "kl"},
        {"student_module_name": "stem", "teacher_module_name": "stem", "criterion": "L2",
         "weight": 0.5}]}})
    dist = D.Distiller(student, teacher, bindings, coef=2.0)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    x = torch.randn(16, 3, 8, 8)
    losses = []
    for _ in range(30):
        with dist.capture():
            student(x)
            dist.run_teacher(x)
        loss = dist.loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    assert all(p.grad is None for p in teacher.parameters())


def test_distill_binding_errors():
    with pytest.raises(SpecError, match="L1, L2"):
        D.parse_bindings({"distill": {"bindings": [
            {"student_module_name": "a", "teacher_module_name": "a", "criterion": "hinge"}]}})
    with pytest.raises(SpecError, match="is empty"):
        D.parse_bindings({"distill": {"bindings": []}})
    b = [D.Binding("heda", "head", "L1")]
    with pytest.raises(SpecError, match="close names: head"):
        D.Distiller(_net(), _net(), b)
    b = [D.Binding("body.*", "head", "L1")]
    with pytest.raises(SpecError, match="same number"):
        D.Distiller(_net(), _net(), b)


def test_bce_criterion_is_the_bernoulli_kl_of_sigmoid_scores():
    bce = D.CRITERIA[D.parse_bindings({"distill": {"bindings": [
        {"student_module_name": "h", "teacher_module_name": "h", "criterion": "bce"}]}})[0].criterion]
    t = torch.tensor([[-4.0, 0.0, 3.0]])
    assert bce(t, t).abs().item() < 1e-6  # zero when the student matches the teacher
    s = torch.zeros_like(t, requires_grad=True)
    p, q = torch.sigmoid(t), torch.tensor(0.5)
    expected = (p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))).mean()
    loss = bce(s, t)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()  # d/ds = (sigmoid(s) - sigmoid(t)) / n: pulls each score towards the teacher's
    assert torch.allclose(s.grad, (0.5 - p) / t.numel(), atol=1e-6)
