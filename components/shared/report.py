"""Self-contained HTML and Markdown reports: images embedded, so an artifact is one file.

The KFP UI and the Vertex console render HTML and Markdown artifacts as pages; an embedded PNG
keeps each report viewable without a second request to the artifact store.
"""

from __future__ import annotations

import base64
import html
import io
from types import ModuleType
from typing import TYPE_CHECKING

# The text helpers live in components.shared.tables (no matplotlib); re-exported for existing callers.
from components.shared.tables import html_page, html_table, markdown_table  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend, imported on first use: the endpoint and the light
    stages import this module's callers but never draw, and the serving image has no matplotlib."""
    import matplotlib

    matplotlib.use("Agg")  # no display on pipeline workers
    import matplotlib.pyplot as plt

    return plt


def figure_to_img_tag(fig: Figure, alt: str, dpi: int = 90) -> str:
    """Render a matplotlib figure to an inline base64 PNG ``<img>`` tag and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'
