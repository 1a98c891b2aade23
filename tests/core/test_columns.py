"""lrsweep.core.columns: the column helpers every reader of a table shares."""
import numpy as np
import pandas as pd

from lrsweep.core import columns


def test_lr_columns_are_the_layer_rates_in_layer_order():
    names = ["lr_2", "lr_total", "lr_10", "lr_1", "lr_1_fraction", "lr_line", "lr_0", "lr_01", "width", "lr_9"]
    assert columns.lr_columns(names) == ["lr_1", "lr_2", "lr_9", "lr_10"]
    assert columns.lr_columns(pd.DataFrame(columns=names)) == ["lr_1", "lr_2", "lr_9", "lr_10"]
    assert columns.lr_columns(3) == ["lr_1", "lr_2", "lr_3"] and columns.lr_columns(np.int64(0)) == []
    assert columns.layer_of("lr_12") == 12 and not columns.is_layer_rate("lr_total")


def test_field_value_by_path_or_short_name():
    assert columns.short_name("model.width") == "width"
    assert columns.field_value({"model.width": 8}, "model.width") == 8
    assert columns.field_value({"width": 4}, "model.width") == 4


def test_broadcast_columns_are_recognised_without_reading_rows():
    constant = np.broadcast_to(np.float64(0.5), (4,))
    assert columns.is_broadcast(constant)
    assert columns.is_broadcast(pd.Series(constant, copy=False))
    assert not columns.is_broadcast(np.full(4, 0.5)) and not columns.is_broadcast(pd.Series([0.5] * 4))


def test_row_codes_number_rows_by_first_appearance_and_first_rows_finds_them():
    a = np.array([3, 1, 3, 2, 1, 3])
    b = np.array([np.nan, 0.0, np.nan, 0.0, 0.0, 1.0])
    codes, n = columns.row_codes([a, b, np.broadcast_to(np.int64(7), (6,))])
    assert codes.tolist() == [0, 1, 0, 2, 1, 3] and n == 4
    want = pd.DataFrame({"a": a, "b": b}).groupby(["a", "b"], sort=False, dropna=False).ngroup().to_numpy()
    np.testing.assert_array_equal(codes, want)
    assert columns.first_rows(codes).tolist() == [0, 1, 3, 5]


def test_seed_mean_sem():
    df = pd.DataFrame({"point": [0, 0, 0, 1, 2, 2], "loss": [1.0, 2.0, 3.0, 5.0, np.nan, np.nan]})
    out = columns.seed_mean_sem(df.groupby("point")["loss"], sizes=True)
    assert list(out.columns) == ["point", "n_students", "n_seeds", "mean", "sem"]
    assert out["n_students"].tolist() == [3, 1, 2] and out["n_seeds"].tolist() == [3, 1, 0]
    assert out["mean"].iloc[0] == 2.0 and out["sem"].iloc[0] == 1.0 / np.sqrt(3)
    assert np.isnan(out["sem"].iloc[1]) and np.isnan(out["mean"].iloc[2])
