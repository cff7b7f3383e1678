import numpy as np
import pytest

from orca.data.tabular import encode_tabular


def test_numeric_in_channel_zero_and_categoricals_one_hot_padded_to_the_widest():
    numeric = np.array([[0.5, -1.0], [2.0, 3.0]])
    categorical = np.array([[1, 0], [0, 3]])
    encoded = encode_tabular(numeric, categorical, cardinalities=[2, 4])
    assert encoded.shape == (2, 4, 4)  # C = widest category count, F = 2 + 2
    np.testing.assert_array_equal(encoded[:, 0, :2], numeric)
    np.testing.assert_array_equal(encoded[:, 1:, :2], 0)
    np.testing.assert_array_equal(encoded[0, :, 2], [0, 1, 0, 0])  # 2 categories, padded
    np.testing.assert_array_equal(encoded[1, :, 3], [0, 0, 0, 1])
    assert encoded[:, :, 2:].sum() == 4  # exactly one hot per categorical cell


def test_numeric_only_rows_have_one_channel():
    assert encode_tabular(np.ones((3, 5)), np.zeros((3, 0), dtype=int), []).shape == (3, 1, 5)


@pytest.mark.parametrize(
    ("numeric", "categorical", "cards", "message"),
    [
        ([[np.nan]], [[0]], [2], "numeric column 0 is NaN at row 0"),
        ([[1.0]], [[2]], [2], r"categorical column 0: code 2 outside \[0, 2\)"),
        ([[1.0]], [[0, 1]], [2], "2 categorical columns but 1 cardinalities"),
        ([[1.0], [2.0]], [[0]], [2], "same N"),
    ],
)
def test_bad_tabular_input_is_named(numeric, categorical, cards, message):
    with pytest.raises(ValueError, match=message):
        encode_tabular(np.array(numeric), np.array(categorical), cards)
