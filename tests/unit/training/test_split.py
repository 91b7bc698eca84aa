"""Split: sizes are fractions of the whole, classes stay balanced, the seed makes it repeatable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.shared.config import SplitConfig
from components.shared.errors import DataValidationError
from components.training.split import split_frame


def make_frame(rows: int = 1000, positive_share: float = 0.15) -> pd.DataFrame:
    positives = int(rows * positive_share)
    return pd.DataFrame(
        {
            "ID": np.arange(rows),
            "x": np.random.default_rng(0).random(rows),
            "y": [1] * positives + [0] * (rows - positives),
        }
    )


def test_sizes_are_fractions_of_the_whole() -> None:
    train, test = split_frame(make_frame(), "y", SplitConfig(test_size=0.2))
    assert (len(train), len(test)) == (800, 200)


def test_stratified_and_disjoint() -> None:
    df = make_frame()
    parts = split_frame(df, "y", SplitConfig())
    for part in parts:
        assert part["y"].mean() == pytest.approx(0.15, abs=0.01)
        assert part.index.tolist() == list(range(len(part)))
    ids = pd.concat([p["ID"] for p in parts])
    assert ids.is_unique and sorted(ids) == df["ID"].tolist()


def test_same_seed_same_split_other_seed_other_split() -> None:
    df = make_frame()
    first = split_frame(df, "y", SplitConfig(seed=1))
    again = split_frame(df, "y", SplitConfig(seed=1))
    other = split_frame(df, "y", SplitConfig(seed=2))
    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert first[1]["ID"].tolist() != other[1]["ID"].tolist()


def test_too_few_rows_of_a_class_names_split_and_counts() -> None:
    df = make_frame(rows=100, positive_share=0.06)  # 6 positives: a 10% test split gets 1
    with pytest.raises(DataValidationError) as info:
        split_frame(df, "y", SplitConfig(test_size=0.1))
    message = str(info.value)
    assert "'test'" in message and "1: 1" in message


def test_class_too_small_to_stratify() -> None:
    df = make_frame(rows=50, positive_share=0.02)
    with pytest.raises(DataValidationError, match=r"class counts \{0: 49, 1: 1\}"):
        split_frame(df, "y", SplitConfig())


def test_target_must_be_mapped() -> None:
    df = make_frame().assign(y=lambda d: d["y"].map({1: "Yes", 0: "No"}))
    with pytest.raises(DataValidationError, match=r"'y' must hold int 0/1.*'No'"):
        split_frame(df, "y", SplitConfig())
    with pytest.raises(DataValidationError, match="'label' not found"):
        split_frame(make_frame(), "label", SplitConfig())
