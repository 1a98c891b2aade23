"""Config schema, grid expansion, --set overrides and error messages (no jax compute)."""
import copy
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

import lrsweep
from lrsweep.core import config
from lrsweep.core.config import ConfigError, apply_overrides, expand_grid, load_config
from lrsweep.families.layer_balancing.fields import authors_line_grid


def base(**grid):
    """A tiny valid config dict (paper_deep, 3 layers -> 2 trainable) with the given grid."""
    return {"name": "t", "seeds": [0],
            "task": {"input_dim": 8, "n_train": 8},
            "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 4},
            "init": "orthogonal", "train": {"steps": 1},
            "grid": grid or {"lr": [1.0]}}


def students(cfg, overrides=None):
    return expand_grid(load_config(cfg, overrides))


def lr_pairs(df, m):
    return [tuple(r) for r in df[[f"lr_{i}" for i in range(1, m + 1)]].to_numpy().tolist()]


# --------------------------------------------------------------------------------------
# The authors' line grid
# --------------------------------------------------------------------------------------

# Written out by hand from the authors' recipe: step = max(1, C // 20), N = int(C / step),
# points (i step, (N - i) step) for i = 1..N-1.
LINE_EXPECTED = {
    30: [(float(i), float(30 - i)) for i in range(1, 30)],                  # step 1, N 30
    35: [(float(i), float(35 - i)) for i in range(1, 35)],                  # step 1, N 35
    45: [(2.0 * i, 2.0 * (22 - i)) for i in range(1, 22)],                  # step 2, N 22 (sum 44)
    27: [(float(i), float(27 - i)) for i in range(1, 27)],                  # step 1, N 27
    27000: [(1350.0 * i, 1350.0 * (20 - i)) for i in range(1, 20)],         # step 1350, N 20
    63000: [(3150.0 * i, 3150.0 * (20 - i)) for i in range(1, 20)],         # step 3150, N 20
    # C / step not an integer: N = int(C / step) TRUNCATES (round() would give 24, 28, 22, 24 and
    # one more point each; fig. 2's lines C = 55, 65, 95 are of this kind). Points sum to N step < C.
    # C = 47: step 2, C / step = 23.5, N = 23, eta_1 = 2..44, eta_2 = 44..2 (sum 46).
    47: [(2.0, 44.0), (4.0, 42.0), (6.0, 40.0), (8.0, 38.0), (10.0, 36.0), (12.0, 34.0), (14.0, 32.0),
         (16.0, 30.0), (18.0, 28.0), (20.0, 26.0), (22.0, 24.0), (24.0, 22.0), (26.0, 20.0), (28.0, 18.0),
         (30.0, 16.0), (32.0, 14.0), (34.0, 12.0), (36.0, 10.0), (38.0, 8.0), (40.0, 6.0), (42.0, 4.0),
         (44.0, 2.0)],
    # C = 55: step 2, C / step = 27.5, N = 27, eta_1 = 2..52, eta_2 = 52..2 (sum 54).
    55: [(2.0, 52.0), (4.0, 50.0), (6.0, 48.0), (8.0, 46.0), (10.0, 44.0), (12.0, 42.0), (14.0, 40.0),
         (16.0, 38.0), (18.0, 36.0), (20.0, 34.0), (22.0, 32.0), (24.0, 30.0), (26.0, 28.0), (28.0, 26.0),
         (30.0, 24.0), (32.0, 22.0), (34.0, 20.0), (36.0, 18.0), (38.0, 16.0), (40.0, 14.0), (42.0, 12.0),
         (44.0, 10.0), (46.0, 8.0), (48.0, 6.0), (50.0, 4.0), (52.0, 2.0)],
    65: [(3.0 * i, 3.0 * (21 - i)) for i in range(1, 21)],                  # step 3, 65/3 = 21.67, N 21 (sum 63)
    95: [(4.0 * i, 4.0 * (23 - i)) for i in range(1, 23)],                  # step 4, 95/4 = 23.75, N 23 (sum 92)
}


@pytest.mark.parametrize("C", sorted(LINE_EXPECTED))
def test_authors_line_grid_exact(C):
    got = authors_line_grid(C)
    assert got == LINE_EXPECTED[C]
    assert authors_line_grid(float(C)) == LINE_EXPECTED[C]


def test_authors_line_grid_spot_values():
    assert authors_line_grid(45)[:3] == [(2.0, 42.0), (4.0, 40.0), (6.0, 38.0)]
    assert authors_line_grid(45)[-1] == (42.0, 2.0)
    assert len(authors_line_grid(27000)) == 19
    assert authors_line_grid(27000)[0] == (1350.0, 25650.0)
    assert authors_line_grid(63000)[-1] == (59850.0, 3150.0)
    assert authors_line_grid(2) == [(1.0, 1.0)]
    # truncation, not rounding: N - 1 = 22, 26, 20, 22 points for C = 47, 55, 65, 95 (round: one more each)
    assert len(authors_line_grid(47)) == 22 and authors_line_grid(47)[-1] == (44.0, 2.0)
    assert len(authors_line_grid(55)) == 26 and authors_line_grid(55)[0] == (2.0, 52.0)
    assert len(authors_line_grid(65)) == 20 and authors_line_grid(65)[0] == (3.0, 60.0)
    assert len(authors_line_grid(95)) == 22 and authors_line_grid(95)[-1] == (88.0, 4.0)


@pytest.mark.parametrize("C", [30, 45, 55, 63000])
def test_lr_line_axis_two_trainable_layers(C):
    df = students(base(lr_line=[C]))
    assert lr_pairs(df, 2) == LINE_EXPECTED[C]
    assert (df["lr_line"] == C).all()
    np.testing.assert_allclose(df["lr_total"], df["lr_1"] + df["lr_2"])


@pytest.mark.parametrize("C", [30, 45, 27000])
@pytest.mark.parametrize("n_layers", [4, 8])
def test_lr_line_deeper_layers_share_the_rest(C, n_layers):
    cfg = base(lr_line=[C])
    cfg["model"]["n_layers"] = n_layers
    df = students(cfg)
    m = n_layers - 1
    line_sum = LINE_EXPECTED[C][0][0] + LINE_EXPECTED[C][0][1]  # N * step
    expected = [(e1,) + ((line_sum - e1) / (m - 1),) * (m - 1) for e1, _ in LINE_EXPECTED[C]]
    got = lr_pairs(df, m)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, rel=1e-12)
    assert f"lr_{m + 1}" not in df


def test_lr_line_4nn_matches_authors_eta2_eq_eta3():
    cfg = base(lr_line=[30])
    cfg["model"]["n_layers"] = 4
    df = students(cfg)
    assert (df["lr_2"] == df["lr_3"]).all()
    np.testing.assert_allclose(df["lr_2"], (30 - df["lr_1"]) / 2)
    assert df["lr_1"].tolist() == [float(i) for i in range(1, 30)]


def test_lr_line_times_seeds_and_several_lines():
    cfg = base(lr_line=[30, 45])
    cfg["seeds"] = [0, 1]
    df = students(cfg)
    assert len(df) == 2 * (29 + 21)
    assert df["student_id"].tolist() == list(range(len(df)))


# --------------------------------------------------------------------------------------
# Other learning-rate forms
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_layers", [3, 4])
def test_lr_total_times_fraction(n_layers):
    cfg = base(lr_total=[10, 20], lr_1_fraction=[0.25, 0.5, 1.0])
    cfg["model"]["n_layers"] = n_layers
    df = students(cfg)
    m = n_layers - 1
    assert len(df) == 6
    expected = set()
    for C, f in itertools.product([10, 20], [0.25, 0.5, 1.0]):
        expected.add((f * C,) + ((1 - f) * C / (m - 1),) * (m - 1))
    assert set(lr_pairs(df, m)) == expected
    np.testing.assert_allclose(df["lr_total"], df[[f"lr_{i}" for i in range(1, m + 1)]].sum(axis=1))
    assert set(df["lr_total"]) == {10.0, 20.0}
    assert set(df["lr_1_fraction"]) == {0.25, 0.5, 1.0}


def test_explicit_per_layer_lrs():
    df = students(base(lr_1=[1, 2], lr_2=[3]))
    assert sorted(lr_pairs(df, 2)) == [(1.0, 3.0), (2.0, 3.0)]
    assert sorted(df["lr_total"]) == [4.0, 5.0]


def test_shared_lr_every_layer():
    cfg = base(lr=[0.5, 2])
    cfg["model"]["n_layers"] = 4
    df = students(cfg)
    assert sorted(lr_pairs(df, 3)) == [(0.5, 0.5, 0.5), (2.0, 2.0, 2.0)]
    assert sorted(df["lr_total"]) == [1.5, 6.0]


def test_lr_total_with_one_explicit_layer_splits_the_rest():
    cfg = base(lr_total=[9], lr_1=[3])
    cfg["model"]["n_layers"] = 4
    df = students(cfg)
    assert lr_pairs(df, 3) == [(3.0, 3.0, 3.0)]


def test_lr_given_as_yaml_string_is_a_number(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("task: {input_dim: 8, n_train: 8}\nmodel: {width: 4}\ngrid: {lr: [1e-3]}\n")
    df = students(p)
    assert df["lr_1"].tolist() == [0.001]


# --------------------------------------------------------------------------------------
# Axes: product, zip, any scalar field, generators
# --------------------------------------------------------------------------------------

def test_cartesian_product_of_scalar_axes():
    cfg = base(width=[4, 8], n_layers=[2, 3], init=["orthogonal", "gaussian"], noise_std=[0.0, 0.1],
               steps=[1, 2], lr=[1.0])
    cfg["seeds"] = [0, 1, 2]
    df = students(cfg)
    assert len(df) == 2 * 2 * 2 * 2 * 2 * 3
    cols = ["width", "n_layers", "init", "noise_std", "steps", "seed"]
    got = sorted(map(tuple, df[cols].to_numpy().tolist()))
    want = sorted(itertools.product([4, 8], [2, 3], ["orthogonal", "gaussian"], [0.0, 0.1], [1, 2], [0, 1, 2]))
    assert got == want
    assert df["student_id"].is_unique
    # paper_deep with n_layers=2 trains one layer: no lr_2 for those students
    assert df.loc[df["n_layers"] == 2, "lr_2"].isna().all()
    assert df.loc[df["n_layers"] == 3, "lr_2"].eq(1.0).all()


def test_dotted_path_axis_and_alias_are_the_same():
    a = students(base(**{"model.width": [4, 8], "lr": [1.0]}))
    b = students(base(width=[4, 8], lr=[1.0]))
    assert a["width"].tolist() == b["width"].tolist() == [4, 8]


def test_zip_axes_vary_together():
    cfg = base(zip={"width": [4, 8], "steps": [1, 2]}, lr=[1.0, 2.0])
    df = students(cfg)
    assert len(df) == 4
    assert sorted(set(map(tuple, df[["width", "steps"]].to_numpy().tolist()))) == [(4, 1), (8, 2)]


def test_zip_list_of_groups_and_lr_zip():
    cfg = base(zip=[{"width": [4, 8], "steps": [1, 2]}, {"lr_1": [1, 2, 3], "lr_2": [4, 5, 6]}])
    df = students(cfg)
    assert len(df) == 6
    assert sorted(set(lr_pairs(df, 2))) == [(1.0, 4.0), (2.0, 5.0), (3.0, 6.0)]


# Two values per axis-able field, both valid and NOT the default where the field allows that (so an
# axis that is silently dropped, leaving the default in every row, cannot pass). Fields with fewer
# valid values use the default as their second value (2 choices, booleans), or their only value
# (train.optimizer: a single choice, so no axis of its can be told from the default).
# Each entry: (values, base-config edits that make both values valid).
AXIS_VALUES = {
    "seed": ([3, 5], {}),
    "task.kind": (["classification", "single_point"], {"task.input_dim": 1, "task.n_train": 1, "model.width": 1}),
    "task.label": ([0.5, -1.0], {"task.kind": "single_point", "task.input_dim": 1, "task.n_train": 1,
                                 "model.width": 1}),
    "train.sharpness_iters": ([5, 40], {}),
    "task.data": (["degenerate", "nonseparable"], {"task.kind": "classification"}),
    "task.margin": ([0.5, 2.0], {"task.kind": "classification"}),
    "task.flip_fraction": ([0.2, 0.4], {"task.kind": "classification", "task.data": "nonseparable"}),
    "task.input_dim": ([80, 96], {}),
    "task.n_train": ([32, 200], {}),
    "task.design": (["orthogonal", "gaussian"], {}),
    "task.target": (["orthonormal", "gaussian"], {}),
    "task.target_std": ([0.3, 0.7], {}),                     # default null (the authors' scale)
    "task.teacher_activation": (["relu", "linear"], {}),
    "task.noise_std": ([0.1, 0.5], {}),
    "task.n_test": ([16, 100], {}),
    "task.test_noise": ([True, False], {}),
    "model.parameterization": (["paper_2nn", "ntk"], {"model.n_layers": 2}),  # paper_2nn has 2 layers
    "model.n_layers": ([2, 5], {}),
    "model.width": ([16, 32], {}),
    "model.activation": (["relu", "linear"], {}),
    "model.output_dim": ([2, 3], {}),
    "init": (["gaussian", "zeros"], {}),
    "init_scale": ([0.5, 2.0], {}),
    "train.optimizer": (["sgd", "momentum"], {"train.batch_size": 4}),
    "train.batch_size": ([4, 8], {"train.optimizer": "sgd"}),
    "train.batch_schedule": (["ramp", "constant"], {"train.optimizer": "sgd", "train.batch_size": 4}),
    "train.batch_start": ([2.0, 3.0], {"train.optimizer": "sgd", "train.batch_size": 4, "train.batch_schedule": "ramp"}),
    "train.batch_end": ([2.0, 3.0], {"train.optimizer": "sgd", "train.batch_size": 4, "train.batch_schedule": "ramp"}),
    "train.batch_ramp_exponent": ([0.5, 2.0], {"train.optimizer": "sgd", "train.batch_size": 4,
                                               "train.batch_schedule": "ramp"}),
    "train.batch_index": ([1, 2], {"train.optimizer": "sgd", "train.batch_size": 4, "train.batch_schedule": "array",
                                   "train.batch_array": [[1], [2], [3]]}),
    "train.momentum": ([0.5, 0.0], {"train.optimizer": "momentum", "train.batch_size": 4}),
    "train.momentum_schedule": (["constant"], {}),  # its other value, array, needs train.momentum_array
    "train.momentum_index": ([1, 2], {"train.optimizer": "momentum", "train.momentum_schedule": "array",
                                      "train.momentum_array": [[0.1], [0.5], [0.9]]}),
    "train.schedule_floor": ([0.1, 0.5], {"train.schedule": "cosine"}),
    "train.schedule_index": ([1, 2], {"train.schedule": "array", "train.schedule_array": [[1], [0.5], [0.25]]}),
    "task.a": ([1.2, 2.0], {}),
    "task.b": ([1.5, 2.0], {}),
    "task.online": ([False, None], {"task.kind": "power_law_features", "train.optimizer": "sgd",
                                    "train.batch_size": 4, "model.parameterization": "standard", "model.n_layers": 1}),
    "train.loss": (["logistic", "exponential"], {"task.kind": "classification"}),
    "train.steps": ([3, 5], {}),
    "train.schedule": (["polynomial", "wsd"], {}),
    "train.schedule_exponent": ([0.5, 2.0], {}),
    "train.stable_fraction": ([0.25, 0.5], {}),
    "train.warmup_steps": ([1, 2], {"train.steps": 4}),    # warmup <= steps
    "train.log_every": ([2, 3], {}),
    "train.gradient": (["signal_only", "exact"], {}),
    "train.formulation": (["moments", "autodiff"], {}),
    "train.diverge_factor": ([10.0, 1e3], {}),
    "train.head": (["best_response", "gd"], {"model.parameterization": "standard", "model.n_layers": 2}),
    "train.update": (["alternating", "simultaneous"], {"model.parameterization": "standard", "model.n_layers": 2}),
    "train.head_steps": ([2, 3], {"model.parameterization": "standard", "model.n_layers": 2,
                                  "train.update": "alternating"}),
    "train.head_ridge": ([0.1, 0.2], {}),
    "train.newton_steps": ([2, 3], {"model.parameterization": "standard", "model.n_layers": 2,  # read by Newton
                                    "task.kind": "classification", "train.loss": "logistic",
                                    "train.head": "best_response", "train.head_ridge": 0.1}),
    "train.sketch_dim": ([4, 8], {}),
}


def test_axis_values_cover_every_axis_field():
    """A new axis-able field must get its values above: as many non-default values as it has, up to 2."""
    axis_fields = {p for p, f in config.FIELDS.items() if p != "name" and f.axis and f.value_type != "int_list"}
    assert set(AXIS_VALUES) == axis_fields
    for path, (values, _) in AXIS_VALUES.items():
        field = config.FIELDS[path]
        # an `array` kind needs its array field, which cannot be an axis: it is not counted
        n_other = len([c for c in field.choices if c not in (field.default, "array")]) if field.choices else (
            1 if field.value_type == "bool" else 2)
        assert len(set(values)) == len(values), path
        assert sum(v != field.default for v in values) == min(2, n_other), path


@pytest.mark.parametrize("path", sorted(AXIS_VALUES))
def test_every_scalar_field_can_be_an_axis(path):
    values, edits = AXIS_VALUES[path]
    cfg = base(**{path: list(values), "lr": [1.0]})
    cfg["task"] = {"input_dim": 64, "n_train": 64}  # fits every default (width 64)
    cfg["model"].pop("width")
    for edit, value in edits.items():
        section, key = edit.split(".")
        cfg[section][key] = value
    if path == "seed":
        del cfg["seeds"]  # `seeds` is the seed axis itself
    df = students(cfg)
    column = path.split(".")[-1]
    assert df[column].tolist() == list(values)  # one student per value, each carrying its axis value


@pytest.mark.parametrize("spec, want", [
    ({"linspace": [0, 1, 5]}, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ({"logspace": [-2, 0, 3]}, [0.01, 0.1, 1.0]),
    ({"geomspace": [1, 8, 4]}, [1.0, 2.0, 4.0, 8.0]),
    ({"range": [1, 2, 0.5]}, [1.0, 1.5, 2.0]),
    ({"values": [0.3, 0.7]}, [0.3, 0.7]),
    (0.5, [0.5]),
])
def test_lr_generators(spec, want):
    df = students(base(lr=spec))
    assert df["lr_1"].tolist() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("spec, want", [
    ({"range": [4, 12, 4]}, [4, 8, 12]),    # stop inclusive
    ({"range": [4, 11, 4]}, [4, 8]),
    ({"values": [4, 6]}, [4, 6]),
])
def test_int_generators(spec, want):
    cfg = base(width=spec, lr=[1.0])
    cfg["init"] = "gaussian"
    df = students(cfg)
    assert df["width"].tolist() == want
    assert df["width"].dtype.kind == "i"


def test_seeds_generator_and_single_seed():
    cfg = base()
    cfg["seeds"] = {"range": [0, 4, 1]}
    assert students(cfg)["seed"].tolist() == [0, 1, 2, 3, 4]
    cfg = base()
    del cfg["seeds"]
    cfg["seed"] = 7
    assert students(cfg)["seed"].tolist() == [7]


# --------------------------------------------------------------------------------------
# --set overrides
# --------------------------------------------------------------------------------------

def test_overrides_set_fields_and_grid():
    raw = base(lr_total=[5], lr_1_fraction=[0.5])
    raw["init"] = "gaussian"
    cfg = load_config(raw, ["train.steps=16", "model.width=128", "grid.lr_total=[1,2]"])
    assert cfg.base["train.steps"] == 16
    assert cfg.base["model.width"] == 128
    df = expand_grid(cfg)
    assert sorted(df["lr_total"]) == [1.0, 2.0]
    assert set(df["steps"]) == {16} and set(df["width"]) == {128}
    assert raw["train"]["steps"] == 1  # the input is not mutated


def test_apply_overrides_is_pure_and_parses_yaml():
    raw = base()
    out = apply_overrides(raw, ["task.noise_std=0.25", "name=foo", "init=gaussian"])
    assert out["task"]["noise_std"] == 0.25 and out["name"] == "foo" and out["init"] == "gaussian"
    assert "noise_std" not in raw["task"] and raw["name"] == "t"


@pytest.mark.parametrize("override", ["model.width=6", "width=6"])
def test_override_replaces_grid_axis(override):
    raw = base(width=[4, 8], lr=[1.0])
    raw["init"] = "gaussian"
    assert len(students(raw)) == 2
    df = students(raw, [override])
    assert df["width"].tolist() == [6]


def test_override_seeds_replaces_seed_axis():
    raw = base()
    raw["seeds"] = [0, 1]
    assert students(raw, ["seeds=[5,6,7]"])["seed"].tolist() == [5, 6, 7]
    assert students(raw, ["seed=3"])["seed"].tolist() == [3]


def test_override_init_replaces_init_axis():
    raw = base(init=["orthogonal", "gaussian"], lr=[1.0])
    assert students(raw, ["init=gaussian"])["init"].tolist() == ["gaussian"]


def test_override_errors():
    with pytest.raises(ConfigError, match="PATH=VALUE"):
        load_config(base(), ["model.width"])
    with pytest.raises(ConfigError, match="model.widht") as e:
        load_config(base(), ["model.widht=8"])
    assert "model.width" in str(e.value).replace("model.widht", "")
    with pytest.raises(ConfigError, match="model.width"):
        load_config(base(), ["model.width=big"])


# --------------------------------------------------------------------------------------
# Bad input: ConfigError naming the field and the allowed values
# --------------------------------------------------------------------------------------

def mutate(fn):
    cfg = base()
    fn(cfg)
    return cfg


BAD = [
    # (id, config dict, field, words that must appear in the message)
    ("unknown-top-level", mutate(lambda c: c.update(widht=3)), "widht", ["model.width", "grid", "task"]),
    ("unknown-top-level-near", mutate(lambda c: c.update(nmae="x")), "nmae", ["'name'"]),
    ("unknown-nested", mutate(lambda c: c["model"].update(widht=3)), "model.widht", ["'model.width'", "n_layers"]),
    ("unknown-task-key", mutate(lambda c: c["task"].update(n_trian=3)), "task.n_trian", ["n_train"]),
    ("unknown-init", mutate(lambda c: c.update(init="xavier")), "init", ["orthogonal", "gaussian"]),
    ("unknown-activation", mutate(lambda c: c["model"].update(activation="tanh")), "model.activation",
     ["linear", "relu"]),
    ("unknown-parameterization", mutate(lambda c: c["model"].update(parameterization="mup")),
     "model.parameterization", ["paper_2nn", "paper_deep", "standard"]),
    ("width-str", mutate(lambda c: c["model"].update(width="big")), "model.width", ["integer", "'big'"]),
    ("width-float", mutate(lambda c: c["model"].update(width=64.5)), "model.width", ["integer", "64.5"]),
    ("steps-bool", mutate(lambda c: c["train"].update(steps=True)), "train.steps", ["integer"]),
    ("init-int", mutate(lambda c: c.update(init=3)), "init", ["orthogonal", "gaussian"]),
    ("noise-str", mutate(lambda c: c["task"].update(noise_std="lots")), "task.noise_std", ["number"]),
    ("width-neg", mutate(lambda c: c["model"].update(width=-1)), "model.width", ["> 0", "-1"]),
    ("input-dim-zero", mutate(lambda c: c["task"].update(input_dim=0)), "task.input_dim", ["> 0"]),
    ("n-train-zero", mutate(lambda c: c["task"].update(n_train=0)), "task.n_train", ["> 0"]),
    ("steps-neg", mutate(lambda c: c["train"].update(steps=-1)), "train.steps", [">= 0"]),
    ("noise-neg", mutate(lambda c: c["task"].update(noise_std=-0.1)), "task.noise_std", [">= 0"]),
    ("seeds-neg", mutate(lambda c: c.update(seeds=[-1])), "seeds", [">= 0"]),
    ("seeds-and-seed", mutate(lambda c: c.update(seed=1)), "seeds", ["seed"]),
    ("section-not-mapping", mutate(lambda c: c.update(task=3)), "task", ["mapping"]),
    ("name-path", mutate(lambda c: c.update(name="../x")), "name", ["directory name"]),
    ("name-empty", mutate(lambda c: c.update(name="")), "name", ["directory name"]),
    ("name-axis", mutate(lambda c: c["grid"].update(name=["a"])), "grid.name", ["grid axis"]),
    ("ortho-init-shapes", mutate(lambda c: c["model"].update(width=16)), "init",
     ["input_dim", "width", "gaussian"]),
    ("ortho-init-shapes-axis", mutate(lambda c: c["grid"].update(width=[4, 16])), "init", ["gaussian"]),
    ("ortho-design", mutate(lambda c: c["task"].update(n_train=4, design="orthogonal")), "task.design",
     ["n_train", "input_dim"]),
    ("2nn-layers", mutate(lambda c: c["model"].update(parameterization="paper_2nn", n_layers=3)),
     "model.n_layers", ["2"]),
    ("2nn-relu", mutate(lambda c: c["model"].update(parameterization="paper_2nn", n_layers=2, width=4,
                                                     activation="relu")), "model.activation", ["linear"]),
    ("deep-one-layer", mutate(lambda c: c["model"].update(n_layers=1)), "model.n_layers", [">= 2"]),
    ("log-steps-past-end", mutate(lambda c: c["train"].update(log_steps=[0, 5])), "train.log_steps",
     ["train.steps"]),
    ("grid-empty-list", base(lr=[]), "grid.lr", ["empty"]),
    ("grid-unknown-generator", base(lr={"linspase": [0, 1, 3]}), "grid.lr", ["'linspace'", "logspace", "range"]),
    ("grid-linspace-2-args", base(lr={"linspace": [0, 1]}), "grid.lr", ["linspace", "three"]),
    ("grid-linspace-zero-count", base(lr={"linspace": [0, 1, 0]}), "grid.lr", ["count"]),
    ("grid-two-generators", base(lr={"linspace": [0, 1, 3], "range": [0, 1, 1]}), "grid.lr", ["one key"]),
    ("grid-zip-unequal", base(zip={"width": [4, 8], "steps": [1]}, lr=[1.0]), "grid.zip[0]",
     ["equal", "width", "steps"]),
    ("grid-zip-not-mapping", base(zip=[3], lr=[1.0]), "grid.zip[0]", ["mapping"]),
    ("grid-unknown-axis", base(widht=[4], lr=[1.0]), "grid.widht", ["'width'"]),
    ("grid-axis-twice", base(width=[4], zip={"width": [4]}, lr=[1.0]), "grid", ["width"]),
    ("grid-bad-axis-value", base(init=["xavier"], lr=[1.0]), "grid.init", ["orthogonal", "gaussian"]),
    ("grid-bad-int-axis", base(width=["big"], lr=[1.0]), "grid.width", ["integer"]),
    ("no-lr", base(width=[4]), "grid", ["lr_total", "lr_line"]),
    ("no-grid", mutate(lambda c: c.pop("grid")), "grid", ["learning rate"]),
    ("lr-negative", base(lr=[-1.0]), "grid.lr", [">= 0"]),
    ("lr-1-negative", base(lr_1=[-1.0], lr_2=[1.0]), "grid.lr_1", [">= 0"]),
    ("lr-total-negative", base(lr_total=[-1.0]), "grid.lr_total", [">= 0"]),
    ("lr-nan", base(lr=[float("nan")]), "grid.lr", ["finite"]),
    ("lr-string", base(lr=["fast"]), "grid.lr", ["number"]),
    ("fraction-above-1", base(lr_total=[1.0], lr_1_fraction=[1.5]), "grid.lr_1_fraction", ["[0, 1]"]),
    ("fraction-below-0", base(lr_total=[1.0], lr_1_fraction=[-0.1]), "grid.lr_1_fraction", ["[0, 1]"]),
    ("fraction-without-total", base(lr_1_fraction=[0.5]), "grid.lr_1_fraction", ["lr_total"]),
    ("lr-layer-missing", base(lr_1=[1.0]), "grid.lr_2", ["lr_2", "lr"]),
    ("lr-layer-too-many", base(lr_1=[1.0], lr_2=[1.0], lr_3=[1.0]), "grid.lr_3", ["2 trainable"]),
    ("lr-and-lr-total", base(lr=[1.0], lr_total=[2.0]), "grid.lr", ["lr_total"]),
    ("lr-line-and-lr-total", base(lr_line=[30], lr_total=[2.0]), "grid.lr_line", ["lr_total"]),
    ("lr-line-and-lr-2", base(lr_line=[30], lr_2=[2.0]), "grid.lr_line", ["lr_1..lr_L"]),
    ("lr-line-too-small", base(lr_line=[1]), "grid.lr_line", ["C >= 2"]),
    ("fraction-and-layer", base(lr_total=[2.0], lr_1_fraction=[0.5], lr_2=[1.0]), "grid.lr_1_fraction",
     ["lr_2"]),
    ("lr-total-overdrawn", base(lr_total=[1.0], lr_1=[3.0]), "grid.lr_total", [">= 0"]),
    ("top-level-list", [1, 2], "config", ["mapping"]),
]


@pytest.mark.parametrize("cfg, field, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises_config_error(cfg, field, words):
    with pytest.raises(ConfigError) as e:
        students(copy.deepcopy(cfg))
    assert e.value.field == field
    msg = str(e.value)
    assert msg.startswith(f"{field}:")
    for w in words:
        assert w in msg, (w, msg)
    assert isinstance(e.value, ValueError) and isinstance(e.value, lrsweep.ConfigError)


def test_section_left_empty_in_yaml_uses_defaults(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\ntask: {input_dim: 64}\ngrid: {lr: 1}\n")
    df = students(p)
    assert df["width"].tolist() == [config.FIELDS["model.width"].default]


@pytest.mark.parametrize("text, field", [
    ("", "grid"),                       # empty file: nothing to sweep
    ("# only a comment\n", "grid"),
    ("- a\n- b\n", "config"),           # a list, not a mapping
    ("just a string\n", "config"),
    ("model: {width: [1, 2\n", "config"),  # invalid YAML
])
def test_bad_yaml_files(tmp_path, text, field):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        students(p)
    assert e.value.field == field


def test_missing_file():
    with pytest.raises(ConfigError, match="not found") as e:
        load_config("/nonexistent/dir/c.yaml")
    assert e.value.field == "config"


def test_quickstart_config_is_valid():
    """The built-in config expands without error (its content is owned elsewhere: only sanity here)."""
    df = students(Path(__file__).parents[2] / "configs" / "quickstart.yaml")
    assert len(df) > 0 and df["student_id"].tolist() == list(range(len(df)))
    lr_cols = [c for c in df if c.startswith("lr_") and c[3:].isdigit()]
    assert (df[lr_cols].fillna(0) >= 0).all().all()
    np.testing.assert_allclose(df[lr_cols].fillna(0).sum(axis=1), df["lr_total"])


def test_resolved_config_round_trips():
    cfg = load_config(base(lr_total=[5, 6], lr_1_fraction={"linspace": [0.1, 0.9, 3]}), ["seeds=[1,2]"])
    again = load_config(cfg.to_dict())
    a, b = expand_grid(cfg), expand_grid(again)
    assert a.equals(b)
    assert len(a) == 2 * 3 * 2


def test_schema_lists_every_field():
    text = config.describe_schema()
    for path in config.FIELDS:
        assert f"`{path}`" in text
    assert "orthogonal, gaussian" in text


@pytest.mark.parametrize("grid", [{"seeds": [3, 4], "lr": [1.0]}, {"seed": [3, 4], "lr": [1.0]},
                                  {"zip": {"seeds": [3, 4], "lr": [1, 2]}}])
def test_seed_axis_inside_grid(grid):
    cfg = base(**grid)
    del cfg["seeds"]
    df = students(cfg)
    assert sorted(df["seed"]) == [3, 4]
    again = expand_grid(load_config(load_config(cfg).to_dict()))
    assert again["seed"].tolist() == df["seed"].tolist()


def test_array_file_relative_to_the_config(tmp_path, monkeypatch):
    """A relative .npy path in a config file is read next to the config (it failed from another
    working directory: the path was resolved against the cwd only)."""
    folder = tmp_path / "cfg"
    folder.mkdir()
    np.save(folder / "rates.npy", np.array([[1.0, 0.5], [0.25, 0.125]]))
    (folder / "sweep.yaml").write_text(
        "train: {schedule: array, schedule_array: rates.npy, steps: 2}\ngrid: {lr: [1.0]}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = config.load_config(folder / "sweep.yaml")
    df = config.expand_grid(cfg)
    assert sorted(df["schedule_index"]) == [0, 1]
    assert cfg.raw["train"]["schedule_array"] == [[1.0, 0.5], [0.25, 0.125]]


def test_log_steps_geomspace_is_rounded_deduplicated_and_checked():
    """{geomspace: [1, T, k]}: np.geomspace rounded to ints, repeats dropped, 0 and T always logged."""
    def logged(spec, steps):
        cfg = config.load_config({"train": {"steps": steps, "log_steps": spec}, "grid": {"lr": 0.1}})
        config.expand_grid(cfg)  # checks the steps against train.steps
        return config.log_steps(cfg.base)
    # 1, 3.16, 10, 31.6, 100 -> 1, 3, 10, 32, 100
    assert logged({"geomspace": [1, 100, 5]}, 100) == (0, 1, 3, 10, 32, 100)
    # 1, 1.17, ..., 3.43, 4 rounds to 1, 1, 1, 2, 2, 2, 3, 3, 3, 4
    assert logged({"geomspace": [1, 4, 10]}, 6) == (0, 1, 2, 3, 4, 6)
    assert len(logged({"geomspace": [1, 10 ** 6, 40]}, 10 ** 6)) <= 41  # bounded, however long the run
    for bad, words in (({"geomspace": [0, 10, 3]}, "1 <= first"), ({"geomspace": [1, 10]}, "three integers"),
                       ({"linspace": [1, 10, 3]}, "geomspace: [first, last, k]"), ({"geomspace": [1, 20, 3]}, "<= train.steps"),
                       ({"geomspace": [1.5, 10, 3]}, "three integers"), ({"geomspace": [1, 10, 0]}, "k >= 1"),
                       ({"geomspace": [5, 2, 3]}, "first <= last")):
        with pytest.raises(config.ConfigError, match="train.log_steps") as err:
            logged(bad, 10)
        assert words in str(err.value)


@pytest.mark.parametrize("spec, words", [("{geomspace: [1, 10, 0]}", "k >= 1"), ("{geomspace: [1, 50, 4]}", "<= train.steps=10"),
                                         ("{geomspace: [1, 10, 2.5]}", "three integers")])
def test_bad_log_steps_geomspace_exits_2_with_one_line(tmp_path, spec, words):
    """lrsweep run: exit 2, one stderr line naming train.log_steps, no run directory."""
    from conftest import cli_main
    path = tmp_path / "c.yaml"
    path.write_text(f"name: t\ntask: {{input_dim: 4, n_train: 4}}\nmodel: {{width: 2}}\n"
                    f"train: {{steps: 10, log_steps: {spec}}}\ngrid: {{lr: [0.1]}}\n")
    rc, _, err = cli_main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "train.log_steps" in lines[0] and words in lines[0], err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# The ranges the schema's docs state are the ranges validation checks (issue 24, case 9)
# --------------------------------------------------------------------------------------


# Ranges written in a field's doc: "in [lo, hi]" (closed) and "(x > lo)" / "(x >= lo)" (a lower bound).
_CLOSED = re.compile(r"\bin \[(-?[0-9.]+), (-?[0-9.]+)\]")
_LOWER = re.compile(r"\(\s*[a-z_]+ (>=?) (-?[0-9.]+)\)")


def _documented_ranges():
    """{path: (lo, strict, hi)} parsed from every field's doc (hi None: no upper bound)."""
    out = {}
    for path, field in config.FIELDS.items():
        if field.value_type not in ("int", "float"):
            continue
        for lo, hi in _CLOSED.findall(field.doc):
            out[path] = (float(lo), False, float(hi))
        for op, lo in _LOWER.findall(field.doc):
            out[path] = (float(lo), op == ">", None)
    return out


def test_documented_ranges_are_found():
    """The parser sees the ranges the docs state (written out here by hand from the docs)."""
    got = _documented_ranges()
    assert {"task.flip_fraction", "train.stable_fraction", "train.schedule_floor", "task.a", "task.b"} <= set(got)
    assert got["task.a"] == got["task.b"] == (1.0, True, None)
    assert got["task.flip_fraction"] == (0.0, False, 0.5)


@pytest.mark.parametrize("path", sorted(_documented_ranges()))
def test_documented_range_is_checked(path):
    """Every value outside a field's documented range is refused naming the field; the ends inside are
    accepted. Before: ``task.a: 0.5`` was accepted though the doc says a > 1."""
    lo, strict, hi = _documented_ranges()[path]
    field = config.FIELDS[path]
    outside = [lo if strict else lo - 0.25] + ([hi + 0.25] if hi is not None else [])
    inside = [lo + 0.25 if strict else lo] + ([hi] if hi is not None else [])
    for value in outside:
        with pytest.raises(ConfigError, match=re.escape(path)):
            config.check_value(field, value, path)
    for value in inside:
        assert config.check_value(field, value, path) == value


def _head(**train):
    """A student with a head and a body (standard, 2 layers), the given train fields."""
    return {"name": "t", "seeds": [0], "task": {"input_dim": 4, "n_train": 8},
            "model": {"parameterization": "standard", "n_layers": 2, "width": 4}, "init": "gaussian",
            "train": {"steps": 1, **train}, "grid": {"lr": [0.1]}}


# Ranges and conditions the docs state between fields, each with a config that breaks it (written from the doc).
CROSS_FIELD = {
    "train.warmup_steps": ({**base(), "train": {"steps": 2, "warmup_steps": 3}}, "at most train.steps"),
    "train.batch_end": ({**base(), "train": {"steps": 1, "optimizer": "sgd", "batch_size": 4,
                                             "batch_schedule": "ramp", "batch_end": 5}}, "at most train.batch_size"),
    "task.design": ({**base(), "task": {"input_dim": 8, "n_train": 4, "design": "orthogonal"}}, "n >= d"),
    "init": ({**base(), "task": {"input_dim": 2, "n_train": 8}}, "needs fan_in >= fan_out"),
    "train.head": ({**base(), "train": {"steps": 1, "head": "best_response"}},
                   "a standard or ntk student with n_layers >= 2"),
    "train.head_ridge": ({**_head(head="best_response", loss="logistic"),
                          "task": {"kind": "classification", "input_dim": 4, "n_train": 8}},
                         "> 0 needed for logistic and exponential"),
    "train.head_steps": (_head(head_steps=2), "of `alternating`"),
    "train.newton_steps": (_head(newton_steps=3), "of the logistic / exponential best response"),
}


def test_every_doc_with_a_bound_is_covered():
    """A field whose doc states a bound (>, <, at most, at least, in [...]) is in the parsed ranges or in
    CROSS_FIELD, or its bound is the field's own declared one (listed here with the reason)."""
    declared = {"task.margin", "train.sharpness_iters", "train.sketch_dim"}  # "at most k": what k means, not a bound
    shapes = {"model.activation", "train.optimizer", "train.metrics", "train.formulation", "name"}  # no bound stated
    bound = re.compile(r"(>|<|\bat most\b|\bat least\b|\bin \[)")
    stated = {p for p, f in config.FIELDS.items() if bound.search(f.doc)}
    missing = stated - set(_documented_ranges()) - set(CROSS_FIELD) - declared - shapes
    assert not missing, missing


@pytest.mark.parametrize("path", sorted(CROSS_FIELD))
def test_documented_condition_between_fields_is_checked(path):
    cfg, doc = CROSS_FIELD[path]
    assert doc in config.FIELDS[path].doc
    with pytest.raises(ConfigError, match=re.escape(path)):
        expand_grid(load_config(cfg))


def test_newton_steps_where_read_is_accepted():
    cfg = {**_head(head="best_response", loss="logistic", head_ridge=0.1, newton_steps=3),
           "task": {"kind": "classification", "input_dim": 4, "n_train": 8}}
    assert list(expand_grid(load_config(cfg))["newton_steps"]) == [3]
