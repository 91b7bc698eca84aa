"""Labels that arrive later: joined by id to the prediction log, validated like a labelled batch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from components.batch.champion import Champion
from components.batch.labels import join_labels
from components.batch.scoring import labelled_rows
from components.data.synthetic import generate_marketing
from components.monitoring.retraining import OBSERVED_AT
from components.shared.errors import DataValidationError
from tests.unit.batch.conftest import batch_file, score_file


@pytest.fixture
def scored(champion: Champion, tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    """An unlabelled batch scored into a prediction log (outcomes unknown at scoring time)."""
    raw = generate_marketing(rows=120, seed=12)
    score_file(
        champion,
        batch_file(tmp_path, raw.drop(columns=["Response"])),
        tmp_path / "out",
        log_dir=tmp_path / "log",
    )
    return raw, tmp_path / "log"


def test_labels_join_by_id_to_the_logged_inputs(
    champion: Champion, scored: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    raw, log = scored
    labels = raw[["ID", "Response"]].iloc[:80].copy()
    labels["ID"] = labels["ID"].astype(float)  # 1.0 and 1 are the same customer
    never_scored = pd.DataFrame({"ID": [987_654, 987_655], "Response": [1, 0]})
    pending = pd.DataFrame({"ID": [raw["ID"].iloc[100]], "Response": [None]})  # outcome not known yet
    path = tmp_path / "labels.csv"
    pd.concat([labels, never_scored, pending]).to_csv(path, index=False)

    joined = join_labels(str(path), log, champion.bundle, max_rows=10_000, seed=0)
    assert joined.label_rows == 82 and joined.joined == 80 and joined.unmatched == 2
    assert sorted(joined.unmatched_ids) == ["987654", "987655"] and joined.blank_labels == 1
    assert joined.report()["joined to the prediction log"] == 80

    # the rows are what a labelled batch of the same customers gives: the features as scored
    rows = joined.labelled.drop(columns=[OBSERVED_AT])
    direct = score_file(champion, batch_file(tmp_path, raw.iloc[:80], "direct.csv"), tmp_path / "direct")
    expected = labelled_rows(direct, max_rows=10_000, seed=0)
    pd.testing.assert_frame_equal(
        rows.sort_values("ID").reset_index(drop=True)[expected.columns],
        expected.sort_values("ID").reset_index(drop=True),
        check_dtype=False,
        check_categorical=False,
    )
    assert str(joined.labelled[OBSERVED_AT].dt.tz) == "UTC"


def test_bad_labels_are_refused_naming_file_column_and_value(
    champion: Champion, scored: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    raw, log = scored
    cases = {
        "no_target.csv": (raw[["ID"]], r"no_target\.csv lack column\(s\) \['Response'\]"),
        "no_id.csv": (raw[["Response"]], r"no_id\.csv lack column\(s\) \['ID'\]"),
        "maybe.csv": (
            raw[["ID", "Response"]].head(5).assign(Response=[1, 0, "maybe", 1, 0]),
            r"maybe\.csv: target column 'Response' has value 'maybe' in row 2",
        ),
        "blank_id.csv": (
            raw[["ID", "Response"]].head(3).assign(ID=[1.0, None, 3.0]),
            r"blank_id\.csv: id column 'ID' is blank in row 1",
        ),
        "conflict.csv": (
            pd.DataFrame({"ID": [raw["ID"].iloc[0]] * 2, "Response": [1, 0]}),
            rf"conflict\.csv: id '{raw['ID'].iloc[0]}' has two different outcomes",
        ),
    }
    for name, (frame, message) in cases.items():
        frame.to_csv(tmp_path / name, index=False)
        with pytest.raises(DataValidationError, match=message):
            join_labels(str(tmp_path / name), log, champion.bundle, max_rows=100, seed=0)
    with pytest.raises(DataValidationError, match="has no records"):
        raw[["ID", "Response"]].to_csv(tmp_path / "fine.csv", index=False)
        join_labels(str(tmp_path / "fine.csv"), tmp_path / "empty-log", champion.bundle, max_rows=100, seed=0)
