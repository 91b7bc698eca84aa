"""The profile's summary of py-spy's folded stacks: self and inclusive shares per frame."""

from __future__ import annotations

import pytest

from pipelines.bench.profile import top_frames

FOLDED = """\
main (a.py:1);loop (a.py:2);respond (b.py:10);predict (c.py:5) 6
main (a.py:1);loop (a.py:2);respond (b.py:10) 2
main (a.py:1);loop (a.py:2) 2
not a sample line
"""


def test_self_and_inclusive_shares_of_samples() -> None:
    own, inclusive = top_frames(FOLDED)
    assert own[0] == pytest.approx((60.0, "predict (c.py:5)"))
    assert dict((frame, share) for share, frame in own) == pytest.approx(
        {"predict (c.py:5)": 60.0, "respond (b.py:10)": 20.0, "loop (a.py:2)": 20.0}
    )
    shares = {frame: share for share, frame in inclusive}
    assert shares["main (a.py:1)"] == pytest.approx(100.0)
    assert shares["respond (b.py:10)"] == pytest.approx(80.0)


def test_a_frame_repeated_in_one_stack_counts_once_inclusively() -> None:
    _, inclusive = top_frames("f (x:1);g (x:2);f (x:1) 4\n")
    shares = {frame: share for share, frame in inclusive}
    assert shares == pytest.approx({"f (x:1)": 100.0, "g (x:2)": 100.0})


def test_no_samples_gives_empty_tables() -> None:
    assert top_frames("") == ([], [])
