"""Search space built from train schemas: dims, rules, user control, encoding."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from automl_fixtures import MIXED_EXPECTED, REAL_SKILLS

from tao_sdk.errors import TaoSkillsError
from tao_sdk.automl.space import (BoolDim, CategoricalDim, FloatDim, IntDim, OrderedIntDim, SearchSpace,
                                  apply_params, never_searched_reason)


def kinds(space: SearchSpace) -> dict[str, str]:
    return {d.name: d.kind for d in space.dims}


# ------------------------------------------------------------------ default set and dims
def test_mixed_schema_dims_and_kinds(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema)
    assert kinds(space) == MIXED_EXPECTED
    skipped = dict(space.skipped)
    assert "worker" in skipped["dataset.num_workers"]
    assert "test-time" in skipped["dataset.augmentation.tta_flip"]
    assert "evaluation" in skipped["dataset.val_augmentation.jitter"]
    assert "seed" in skipped["train.seed"]
    assert "absent" in skipped["dataset.augmentation.removed_field"]


def test_disabled_collection_disables_its_children(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema)
    # cutmix_prob is in automl_default_parameters and says automl_enabled: true itself,
    # but its collection dataset.heavy_aug is listed as disabled
    assert "dataset.heavy_aug.cutmix_prob" not in space
    assert "dataset.heavy_aug" in dict(space.skipped)["dataset.heavy_aug.cutmix_prob"]
    with pytest.raises(TaoSkillsError, match="disabled"):
        SearchSpace.from_schema(mixed_schema, include=["dataset.heavy_aug.mixup_prob"])
    # a collection disabled by its own node (automl_enabled: false) disables children too
    mixed_schema["automl_disabled_parameters"] = ["model.frozen"]
    with pytest.raises(TaoSkillsError, match="automl_enabled: false"):
        SearchSpace.from_schema(mixed_schema, include=["dataset.heavy_aug.mixup_prob"])


def test_per_field_automl_enabled_false_is_never_searched(mixed_schema):
    mixed_schema["automl_disabled_parameters"] = []
    mixed_schema["automl_default_parameters"].append("model.frozen")
    space = SearchSpace.from_schema(mixed_schema)
    assert "model.frozen" not in space
    assert "automl_enabled: false" in dict(space.skipped)["model.frozen"]


@pytest.mark.parametrize("path", ["dataset.workers", "dataset.num_workers", "a.tta", "a.tta_scales",
                                  "model.test_time_aug", "dataset.test_min_size", "dataset.val_dataset.x",
                                  "evaluate.batch_size", "train.gpu_ids", "train.num_gpus", "train.seed",
                                  "train.num_epochs", "train.checkpoint_interval", "train.validation_interval",
                                  "inference.conf", "dataset.infer_dataset.augmentation.p"])
def test_never_searched_rule(path):
    assert never_searched_reason(path)


@pytest.mark.parametrize("path", ["train.optim.lr", "dataset.batch_size", "model.num_queries",
                                  "dataset.augmentation.distortion_prob", "train.ema.decay", "model.dec_layers",
                                  "dataset.train_dataset.augmentation.h_flip_prob", "train.optim.momentum"])
def test_never_searched_rule_keeps_hyperparameters(path):
    assert never_searched_reason(path) is None


# ------------------------------------------------------------------ math_cond, bounds, scales
def test_math_conditions(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema)
    bs = space["dataset.batch_size"]
    assert isinstance(bs, OrderedIntDim) and bs.values == (2, 4, 8, 16, 32, 64)          # "^ 2"
    img = space["dataset.img_size"]
    assert isinstance(img, IntDim) and img.step == 32 and (img.low, img.high) == (256, 1024)  # "/ 32"
    rng = random.Random(0)
    for _ in range(300):
        p = space.sample(rng)
        assert p["dataset.img_size"] % 32 == 0
        assert p["dataset.crop_max"] > p["dataset.crop_min"]                               # "> depends_on"
        assert p["train.optim.lr"] > 0                                                     # "> 0.0"
        assert not space.validate(p)
    # the parent of "> depends_on" leaves room for the child
    assert space["dataset.crop_min"].high <= space["dataset.crop_max"].high - 1


def test_depends_on_orders_sampling(mixed_schema):
    names = SearchSpace.from_schema(mixed_schema).names
    assert names.index("dataset.crop_min") < names.index("dataset.crop_max")
    assert names.index("model.num_queries") < names.index("model.num_select")


def test_depends_on_cycle_is_an_error(mixed_schema):
    ds = mixed_schema["properties"]["dataset"]["properties"]
    ds["crop_min"]["depends_on"] = "dataset.crop_max"
    with pytest.raises(TaoSkillsError, match="cycle"):
        SearchSpace.from_schema(mixed_schema)


def test_bad_math_cond_is_reported(mixed_schema):
    mixed_schema["properties"]["model"]["properties"]["num_queries"]["math_cond"] = "is prime"
    with pytest.raises(TaoSkillsError, match="model.num_queries: math_cond 'is prime'"):
        SearchSpace.from_schema(mixed_schema)


def test_log_scale_for_learning_rates_and_weight_decay(fixture_schema):
    space = SearchSpace.from_schema(fixture_schema)
    lr = space["train.optim.lr"]
    assert isinstance(lr, FloatDim) and lr.log
    assert lr.low == pytest.approx(1e-6) and lr.high == pytest.approx(1e-2)   # default 1e-4 x/ 100, inside (0, 1]
    assert space["train.optim.weight_decay"].log and space["train.optim.lr_backbone"].log
    assert not space["train.optim.momentum"].log and not space["train.ema.decay"].log
    assert not space["dataset.augmentation.distortion_prob"].log
    # log-uniform: each decade gets about a quarter of the samples
    rng = random.Random(1)
    decades = Counter(math.floor(math.log10(space.sample(rng)["train.optim.lr"])) for _ in range(2000))
    assert set(decades) == {-6, -5, -4, -3}
    assert min(decades.values()) > 350


def test_unbounded_default_fields_get_a_range_from_their_default(fixture_schema):
    space = SearchSpace.from_schema(fixture_schema)
    assert (space["dataset.batch_size"].low, space["dataset.batch_size"].high) == (1, 8)
    nq = space["model.num_queries"]
    assert (nq.low, nq.high, nq.log) == (1, 600, True)


def test_option_weights_bias_sampling(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema)
    bb = space["model.backbone"]
    assert isinstance(bb, CategoricalDim) and bb.weights == (0.6, 0.3, 0.1)
    rng = random.Random(3)
    counts = Counter(space.sample(rng)["model.backbone"] for _ in range(2000))
    assert counts["resnet_18"] > counts["resnet_50"] > counts["convnext_tiny"]
    assert 0.5 < counts["resnet_18"] / 2000 < 0.7


def test_num_select_rule(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema)
    ns = space["model.num_select"]
    assert any("num_queries" in c.describe() for c in ns.constraints)
    rng = random.Random(5)
    for _ in range(300):
        p = space.sample(rng)
        assert p["model.num_select"] <= p["model.num_queries"]
        assert p["model.num_select"] < p["model.num_queries"] * 3
    # one class: num_select < num_queries * 1 means strictly fewer than the queries
    mixed_schema["properties"]["dataset"]["properties"]["num_classes"]["default"] = 1
    space1 = SearchSpace.from_schema(mixed_schema)
    for _ in range(300):
        p = space1.sample(rng)
        assert p["model.num_select"] < p["model.num_queries"]
    # the rule also holds when num_queries is not searched (value from the base spec)
    space2 = SearchSpace.from_schema(mixed_schema, exclude=["model.num_queries"],
                                     base_spec={"model": {"num_queries": 40}})
    assert space2.constants["model.num_queries"] == 40
    assert all(space2.sample(rng)["model.num_select"] <= 39 for _ in range(200))
    bad = dict(space.defaults(), **{"model.num_select": 250, "model.num_queries": 100})
    assert any("num_select" in msg for msg in space.validate(bad))


# ------------------------------------------------------------------ user control
def test_include_narrows_and_extends(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema, include=["train.optim.lr", "model.dropout"])
    assert space.names == ["train.optim.lr", "model.dropout"]
    assert space["model.dropout"].source == "include" and space["train.optim.lr"].source == "default"
    plus = SearchSpace.from_schema(mixed_schema, include=["@default", "model.dropout", "model.act"])
    assert set(plus.names) == set(MIXED_EXPECTED) | {"model.dropout", "model.act"}
    coll = SearchSpace.from_schema(mixed_schema, include=["train.optim"])
    assert set(coll.names) == {"train.optim.lr", "train.optim.momentum", "train.optim.weight_decay",
                               "train.optim.warmup"}


def test_include_unbounded_field_needs_overrides(mixed_schema):
    with pytest.raises(TaoSkillsError, match="no finite maximum.*overrides"):
        SearchSpace.from_schema(mixed_schema, include=["model.head_dim"])
    space = SearchSpace.from_schema(mixed_schema, include=["model.head_dim"],
                                    overrides={"model.head_dim": {"minimum": 64, "maximum": 512, "step": 64}})
    d = space["model.head_dim"]
    assert (d.low, d.high, d.step) == (64, 512, 64)


def test_unknown_names_get_suggestions(mixed_schema):
    with pytest.raises(TaoSkillsError, match="did you mean 'train.optim.lr'"):
        SearchSpace.from_schema(mixed_schema, include=["train.optim.lrr"])
    with pytest.raises(TaoSkillsError, match="did you mean 'train.optim.lr'"):
        SearchSpace.from_schema(mixed_schema, include=["lr"])
    with pytest.raises(TaoSkillsError, match="did you mean 'train.optim.momentum'"):
        SearchSpace.from_schema(mixed_schema, exclude=["train.optim.momentun"])
    with pytest.raises(TaoSkillsError, match="did you mean 'train.optim.weight_decay'"):
        SearchSpace.from_schema(mixed_schema, overrides={"train.optim.weightdecay": {"maximum": 0.1}})


def test_never_searched_and_disabled_names_are_errors(mixed_schema):
    with pytest.raises(TaoSkillsError, match="never searched.*worker"):
        SearchSpace.from_schema(mixed_schema, include=["dataset.num_workers"])
    with pytest.raises(TaoSkillsError, match="disabled"):
        SearchSpace.from_schema(mixed_schema, include=["model.frozen"])
    with pytest.raises(TaoSkillsError, match="list-valued"):
        SearchSpace.from_schema(mixed_schema, include=["train.optim.lr_steps"])


def test_exclude(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema, exclude=["train.optim", "model.backbone"])
    assert not any(n.startswith("train.optim") for n in space.names) and "model.backbone" not in space


def test_overrides(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema, overrides={
        "train.optim.lr": {"minimum": 1e-5, "maximum": 1e-3, "log": True},
        "train.optim.momentum": {"minimum": 0.8, "maximum": 0.99},
        "model.backbone": {"enum": ["resnet_18", "resnet_50"], "option_weights": [1, 3]},
        "model.dropout": {"minimum": 0.0, "maximum": 0.3},           # implies include
    })
    lr = space["train.optim.lr"]
    assert (lr.low, lr.high, lr.log) == (pytest.approx(1e-5), pytest.approx(1e-3), True)
    mom = space["train.optim.momentum"]
    assert (mom.low, mom.high, mom.log) == (0.8, 0.99, False)
    assert space["model.backbone"].choices == ("resnet_18", "resnet_50")
    assert "model.dropout" in space
    with pytest.raises(TaoSkillsError, match="outside the schema range"):
        SearchSpace.from_schema(mixed_schema, overrides={"train.optim.lr": {"minimum": 0.0, "maximum": 2.0}})
    with pytest.raises(TaoSkillsError, match="unknown key"):
        SearchSpace.from_schema(mixed_schema, overrides={"train.optim.lr": {"max": 0.1}})
    with pytest.raises(TaoSkillsError, match="not allowed by the schema"):
        SearchSpace.from_schema(mixed_schema, overrides={"model.backbone": {"enum": ["vit_huge"]}})
    with pytest.raises(TaoSkillsError, match="log scale needs a positive minimum"):
        SearchSpace.from_schema(mixed_schema, overrides={"model.dropout": {"minimum": 0.0, "maximum": 0.3,
                                                                         "log": True}})


# ------------------------------------------------------------------ values and encoding
def test_defaults_sample_and_unit_round_trip(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema, base_spec={"train": {"optim": {"lr": 3e-4}}})
    d = space.defaults()
    assert d["train.optim.lr"] == 3e-4 and d["model.backbone"] == "resnet_50" and d["dataset.batch_size"] == 16
    assert not space.validate(d)
    rng = random.Random(7)
    for _ in range(200):
        p = space.sample(rng)
        u = space.to_unit(p)
        assert len(u) == len(space) and all(0.0 <= x <= 1.0 for x in u)
        assert space.from_unit(u) == p
    for _ in range(200):   # every point of the cube decodes to a valid configuration
        assert not space.validate(space.from_unit([rng.random() for _ in range(len(space))]))
    assert space.from_unit([0.0] * len(space))["train.optim.lr"] == pytest.approx(space["train.optim.lr"].low)
    with pytest.raises(TaoSkillsError):
        space.from_unit([0.5])


def test_categorical_mask_and_levels(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema)
    mask = dict(zip(space.names, space.categorical_mask))
    assert mask["model.backbone"] and mask["dataset.augmentation.mosaic"] and not mask["model.depth"]
    levels = dict(zip(space.names, space.unit_levels()))
    assert levels["model.backbone"] == pytest.approx([1 / 6, 0.5, 5 / 6])
    assert isinstance(space["dataset.augmentation.mosaic"], BoolDim)


def test_describe_table_and_signature(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema)
    rows = space.describe()
    assert [r["name"] for r in rows] == space.names
    lr = next(r for r in rows if r["name"] == "train.optim.lr")
    assert lr["scale"] == "log" and lr["kind"] == "float" and lr["default"] == 2e-4
    table = space.table()
    assert "train.optim.lr" in table and "log" in table
    assert space.signature() == SearchSpace.from_schema(mixed_schema).signature()
    assert space.signature() != SearchSpace.from_schema(mixed_schema, exclude=["model.depth"]).signature()


def test_apply_params():
    spec = {"train": {"optim": {"lr": 1e-4}, "num_epochs": 10}}
    out = apply_params(spec, {"train.optim.lr": 3e-4, "model.num_queries": 100})
    assert out == {"train": {"optim": {"lr": 3e-4}, "num_epochs": 10}, "model": {"num_queries": 100}}
    assert spec["train"]["optim"]["lr"] == 1e-4
    with pytest.raises(TaoSkillsError, match="not a mapping"):
        apply_params(spec, {"train.num_epochs.x": 1})


def test_fixture_matches_rtdetr_shape(fixture_schema):
    space = SearchSpace.from_schema(fixture_schema)
    assert len(space) == 14
    assert "dataset.workers" in dict(space.skipped)


# ------------------------------------------------------------------ the packaged schemas
@pytest.mark.parametrize("skill", REAL_SKILLS)
def test_real_train_schemas(real_schema, skill):
    schema = real_schema(skill)
    space = SearchSpace.from_schema(schema)
    assert 1 <= len(space) <= 20
    for name in space.names:
        assert never_searched_reason(name) is None
        assert not any(name == d or name.startswith(d + ".") for d in schema.get("automl_disabled_parameters", []))
    rng = random.Random(11)
    for _ in range(100):
        p = space.sample(rng)
        assert not space.validate(p)
        assert space.from_unit(space.to_unit(p)) == p
    assert not space.validate(space.defaults())
    if "train.optim.lr" in space:
        assert space["train.optim.lr"].log
    if "model.num_select" in space:
        assert any("num_queries" in c.describe() for c in space["model.num_select"].constraints)
    if skill == "tao-train-fast-foundation-stereo":
        assert not any(seg in n for n in space.names for seg in ("val_dataset", "test_dataset", "infer_dataset"))


def test_narrowed_enum_keeps_schema_weights_and_bad_weights_fail(mixed_schema):
    space = SearchSpace.from_schema(mixed_schema, overrides={"model.backbone": {"enum": ["convnext_tiny", "resnet_18"]}})
    assert space["model.backbone"].weights == (0.1, 0.6)
    with pytest.raises(TaoSkillsError, match="2 option weights for 3 choices"):
        SearchSpace.from_schema(mixed_schema, overrides={"model.backbone": {"option_weights": [1, 2]}})


def test_tao_converter_shape_is_understood():
    """TAO's own converter writes TAO value types into "type" and 'inf' bounds: still usable."""
    schema = {"type": "object", "properties": {"train": {"type": "collection", "properties": {
        "lr": {"type": "float", "default": 1e-4, "minimum": 0.0, "maximum": 1.0, "math_cond": "> 0.0"},
        "bs": {"type": "int", "default": 4, "minimum": 1, "maximum": "inf"},
        "opt": {"type": "categorical", "default": "sgd", "enum": ["sgd", "adam"]}}}},
        "automl_default_parameters": ["train.lr", "train.bs", "train.opt"]}
    space = SearchSpace.from_schema(schema)
    assert kinds(space) == {"train.lr": "float", "train.bs": "int", "train.opt": "categorical"}
    assert space["train.lr"].log and space["train.bs"].high == 8
