"""The compiled encoder equals the fitted scikit-learn steps it is derived from, on every kind of row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MinMaxScaler

from components.data.synthetic import generate_marketing
from components.data.telco import load_telco
from components.model.compiled_encoder import EncoderNotCompiled, compile_encoder, use_compiled_encoder
from components.model.features import fit_transformer, load_transformer, save_transformer
from components.shared.config import Config, FeatureConfig, telco_config


def both_ways(transformer, rows: pd.DataFrame | dict) -> tuple[np.ndarray, np.ndarray]:
    transformer.compiled = None
    expected = transformer.transform(rows)
    assert use_compiled_encoder(transformer) is None
    try:
        return transformer.transform(rows), expected
    finally:
        transformer.compiled = None


def perturbed(frame: pd.DataFrame, columns: list[str], seed: int) -> pd.DataFrame:
    """Rows with nulls in every column, unseen categories and other date spellings."""
    rng = np.random.default_rng(seed)
    out = frame.sample(60, random_state=seed).reset_index(drop=True).astype(object)
    for column in columns:
        out.loc[rng.random(len(out)) < 0.2, column] = None
    return out


@pytest.fixture(scope="module")
def marketing():
    frame = generate_marketing(rows=600, seed=3)
    config = Config()
    return frame, fit_transformer(frame, config.dataset, config.features)


@pytest.fixture(scope="module")
def telco():
    frame = load_telco().head(1500)
    config = telco_config()
    return frame, fit_transformer(frame, config.dataset, config.features)


@pytest.mark.parametrize("table", ["marketing", "telco"])
def test_training_rows_encode_exactly_as_the_fitted_steps(table: str, request: pytest.FixtureRequest) -> None:
    frame, transformer = request.getfixturevalue(table)
    compiled, expected = both_ways(transformer, frame)
    assert compiled.shape == expected.shape == (len(frame), len(transformer.feature_names))
    np.testing.assert_allclose(compiled, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("table", ["marketing", "telco"])
def test_nulls_unseen_categories_and_json_shaped_values_encode_the_same(
    table: str, request: pytest.FixtureRequest
) -> None:
    frame, transformer = request.getfixturevalue(table)
    rows = perturbed(frame[transformer.input_columns], transformer.input_columns, seed=1)
    for column in transformer.categorical_inputs:
        rows.loc[::7, column] = "never-seen-in-training"
    compiled, expected = both_ways(transformer, rows)
    np.testing.assert_allclose(compiled, expected, rtol=1e-12, atol=1e-12)
    # one row as the endpoint hands it over: a mapping of column -> list, dates as strings
    row = {c: [None if pd.isna(v) else v] for c, v in rows.iloc[3].items()}
    for column in transformer.date_inputs:
        row[column] = ["03-04-2013"]
    compiled, expected = both_ways(transformer, row)
    np.testing.assert_allclose(compiled, expected, rtol=1e-12, atol=1e-12)


def test_rare_categories_land_where_the_encoder_groups_them() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=400),
            "plan": rng.choice(["a", "b", "c"], size=400).astype(object),
            "y": rng.integers(0, 2, size=400),
        }
    )
    frame.loc[:2, "plan"] = ["rare-1", "rare-2", "rare-1"]
    config = Config().with_overrides(["dataset.name=t", "dataset.target=y", "dataset.id_columns=[]"])
    config = config.with_overrides(["dataset.date_columns=[]", "dataset.drop_columns=[]"])
    transformer = fit_transformer(frame, config.dataset, FeatureConfig(derived="none"))
    assert any("infrequent" in name for name in transformer.feature_names)
    rows = pd.DataFrame({"x": [0.1, None, 2.0, 1.0], "plan": ["rare-2", "a", None, "brand-new"]})
    compiled, expected = both_ways(transformer, rows)
    np.testing.assert_allclose(compiled, expected, rtol=1e-12, atol=1e-12)


def test_a_saved_and_loaded_transformer_compiles(marketing, tmp_path) -> None:
    frame, transformer = marketing
    save_transformer(transformer, tmp_path / "t.skops")
    loaded = load_transformer(tmp_path / "t.skops")
    compiled, expected = both_ways(loaded, frame.head(50))
    np.testing.assert_allclose(compiled, expected, rtol=1e-12, atol=1e-12)


def test_steps_it_does_not_know_are_refused_and_the_fitted_steps_stay(marketing) -> None:
    frame, fitted = marketing
    save_path_free = fit_transformer(frame, Config().dataset, Config().features)
    save_path_free.numeric_pipeline.steps[1] = ("scale", MinMaxScaler().fit(np.zeros((2, 1))))
    with pytest.raises(EncoderNotCompiled, match="StandardScaler"):
        compile_encoder(save_path_free)
    reason = use_compiled_encoder(save_path_free)
    assert reason and "StandardScaler" in reason and save_path_free.compiled is None
    assert use_compiled_encoder(fitted) is None
    fitted.compiled = None


def test_an_encoder_the_probes_cannot_handle_falls_back_instead_of_failing(marketing) -> None:
    frame, _ = marketing
    transformer = fit_transformer(frame, Config().dataset, Config().features)
    transformer.categorical_pipeline.named_steps["onehot"].handle_unknown = "error"
    reason = use_compiled_encoder(transformer)
    assert reason and "handle_unknown='error'" in reason and transformer.compiled is None
    np.testing.assert_allclose(transformer.transform(frame.head(5)), transformer.transform(frame.head(5)))


def test_one_hot_without_rare_grouping_fits_and_compiles(marketing) -> None:
    frame, _ = marketing
    cfg = FeatureConfig(rare_category_min_frequency=0, max_categories=0)
    transformer = fit_transformer(frame, Config().dataset, cfg)
    compiled, expected = both_ways(transformer, frame.head(80))
    np.testing.assert_allclose(compiled, expected, rtol=1e-12, atol=1e-12)
