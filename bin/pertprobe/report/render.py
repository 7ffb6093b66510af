"""HTML and figure pieces shared by the report's sections: tables, embedded PNGs, predictor labels."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
import pandas as pd


def png(fig) -> str:
    """The figure as a base64 PNG, byte-identical for the same figure (no Software stamp)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode()


def table(df: pd.DataFrame, floatfmt: str = "{:.4f}", classes: pd.DataFrame | None = None) -> str:
    """An HTML table of `df` (its index is not shown), values escaped; `classes`, a frame of the same
    shape, gives each cell's CSS class (empty for none)."""
    def fmt(v: Any) -> str:
        if v is pd.NA:
            return ""
        if isinstance(v, (float, np.floating)):
            return "NaN" if np.isnan(v) else floatfmt.format(v)
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    marks = (classes.to_numpy(dtype=object) if classes is not None else np.full(df.shape, "", dtype=object))
    rows = "".join("<tr>" + "".join(f"<td class='{html.escape(str(c))}'>{fmt(v)}</td>" if c else f"<td>{fmt(v)}</td>"
                                    for v, c in zip(row, cls, strict=True)) + "</tr>"
                   for row, cls in zip(df.itertuples(index=False), marks, strict=True))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def label(row: pd.Series) -> str:
    """A predictor's name as statistics.csv writes it: `model`, or `model/embedding`."""
    return row["model"] + ("" if row["embedding"] == "none" else "/" + row["embedding"])
