"""The report's first screen, the verdict: does each predictor beat the best floor and the best
shortcut by a paired test, does a foundation-model input beat its random twin, and where each score
lies between the best floor (0) and the noise ceiling (1). Definitions: docs/metrics.md#verdict."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
from scipy import stats as st

from ..registry import select
from ..response.bounds import ANCHORS, OK, ROW_STATUSES
from ..response.predictors import floors, shortcuts
from .render import label, png, table

ALPHA = 0.05  # a predictor beats another where p_corrected < ALPHA and the 95% bootstrap CI excludes 0
CLIP = (-1.0, 2.0)  # the figure's widest range of fractions of the gap; scores beyond are drawn at its edge


def is_floor(board: pd.DataFrame) -> pd.Series:
    """Rows that are floors: a floor predictor, or any predictor on the random embedding."""
    return board["model"].isin(floors()) | (board["embedding"] == "random")


def is_predictor(board: pd.DataFrame) -> pd.Series:
    """Rows the verdict judges: neither an anchor nor a floor nor a shortcut probe."""
    return ~(board["model"].isin(set(ANCHORS) | set(shortcuts())) | is_floor(board))


def _oriented(board: pd.DataFrame) -> pd.Series:
    return board["mean"].where(board["higher_is_better"], -board["mean"])


def best_references(board: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x metric (index), the label of the best floor and of the best shortcut probe by
    oriented mean (columns `floor`, `shortcut`; ties go to the first label); missing where none."""
    frame = board.assign(oriented=_oriented(board), label=[label(r) for _, r in board.iterrows()])
    out = {}
    for role, rows in (("floor", is_floor(board)), ("shortcut", board["model"].isin(shortcuts()))):
        chosen = frame[rows].dropna(subset=["oriented"]).sort_values(
            ["dataset", "metric", "oriented", "label"], ascending=[True, True, False, True])
        out[role] = chosen.drop_duplicates(["dataset", "metric"]).set_index(["dataset", "metric"])["label"]
    return pd.DataFrame(out, columns=["floor", "shortcut"])


def pair_difference(stats: pd.DataFrame, dataset: str, metric: str, a: str, b: str) -> pd.Series | None:
    """The statistics.csv row of predictors a and b as a − b (mean_difference and the CI flipped where
    the file holds b − a), or None where the pair was not compared."""
    if stats.empty:
        return None
    here = stats[(stats["dataset"] == dataset) & (stats["metric"] == metric)]
    for x, y, sign in ((a, b, 1.0), (b, a, -1.0)):
        rows = here[(here["predictor_a"] == x) & (here["predictor_b"] == y)]
        if len(rows):
            row = rows.iloc[0].copy()
            row["mean_difference"] *= sign
            row["ci_low"], row["ci_high"] = sorted((sign * row["ci_low"], sign * row["ci_high"]))
            row["predictor_a"], row["predictor_b"] = a, b
            return row
    return None


NOT_COMPARED = {"difference": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_corrected": np.nan, "beats": False,
                "worse": False}


def compare(stats: pd.DataFrame, dataset: str, metric: str, a: str, b: str, higher_is_better: bool) -> dict:
    """Whether a beats b: the difference a − b and its 95% bootstrap CI oriented so that positive means
    a is better, p_corrected, `beats` (p_corrected < ALPHA and the CI above 0) and `worse` (the
    same rule with the CI below 0); NaN where the
    pair was not compared."""
    row = pair_difference(stats, dataset, metric, a, b)
    if row is None:
        return NOT_COMPARED
    sign = 1.0 if higher_is_better else -1.0
    lo, hi = sorted((sign * row["ci_low"], sign * row["ci_high"]))
    p = float(row["p_corrected"])
    return {"difference": sign * float(row["mean_difference"]), "ci_low": lo, "ci_high": hi, "p_corrected": p,
            "beats": bool(p < ALPHA and lo > 0), "worse": bool(p < ALPHA and hi < 0)}


def _primary_rows(board: pd.DataFrame) -> pd.DataFrame:
    primary = select("metric", "minimal")
    rows = board[board["metric"].isin(primary)].copy()
    rows["label"] = [label(r) for _, r in rows.iterrows()]
    rows["order"] = rows["metric"].map({m: i for i, m in enumerate(primary)})
    return rows.sort_values(["dataset", "order", "label"])


def verdict_table(board: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x predictor (`is_predictor`) x primary metric: the best floor and shortcut
    and, against each, `compare`'s columns prefixed `floor_` / `shortcut_`, with fraction_of_gap and
    gap_status."""
    refs = best_references(board)
    out = []
    rows = _primary_rows(board)
    for _, r in rows[is_predictor(rows)].iterrows():
        row = {"dataset": r["dataset"], "predictor": r["label"], "metric": r["metric"]}
        for role in ("floor", "shortcut"):
            ref = refs[role].get((r["dataset"], r["metric"]), np.nan)
            row[role] = ref
            result = (compare(stats, r["dataset"], r["metric"], r["label"], ref, r["higher_is_better"])
                      if isinstance(ref, str) else NOT_COMPARED)
            row |= {f"{role}_{k}": v for k, v in result.items()}
        out.append(row | {"fraction_of_gap": r["fraction_of_gap"], "gap_status": r["gap_status"]})
    return pd.DataFrame(out)


def random_twins(board: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x row on a gene embedding other than `random` or `none` x primary metric:
    its random twin (the same model on the random embedding; missing where not run) and `compare`'s
    columns against it."""
    rows = _primary_rows(board)
    present = set(zip(rows["dataset"], rows["model"], rows["embedding"], rows["metric"], strict=True))
    out = []
    for _, r in rows[~rows["model"].isin(ANCHORS) & ~rows["embedding"].isin(["random", "none"])].iterrows():
        has_twin = (r["dataset"], r["model"], "random", r["metric"]) in present
        twin = f"{r['model']}/random" if has_twin else np.nan
        result = (compare(stats, r["dataset"], r["metric"], r["label"], twin, r["higher_is_better"]) if has_twin
                  else NOT_COMPARED)
        out.append({"dataset": r["dataset"], "predictor": r["label"], "metric": r["metric"], "twin": twin} | result)
    return pd.DataFrame(out)


def gap_scores(board: pd.DataFrame, n_folds: dict[str, int]) -> pd.DataFrame:
    """Per dataset x predictor x primary metric, the score on the floor-to-ceiling scale
    (fraction_of_gap: 0 = best floor, 1 = ceiling) and `half_width`, the half width of its 95%
    interval over the J splits: the Nadeau–Bengio corrected standard error
    sd·√(1/J + 1/(K − 1)) for K folds, times the t quantile with J − 1 degrees of freedom, divided by
    the gap (the bounds taken as fixed); NaN with fewer than two splits or folds."""
    rows = _primary_rows(board)
    rows = rows[is_predictor(rows)]
    j = rows["n_splits"].astype(float)
    k = rows["dataset"].map(n_folds).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = rows["sd"] * np.sqrt(1 / j + 1 / (k - 1))
        half = st.t.ppf(0.975, j - 1) * se / rows["gap"]
    half = half.where((j >= 2) & (k >= 2) & rows["fraction_of_gap"].notna())
    return pd.DataFrame({"dataset": rows["dataset"], "predictor": rows["label"], "metric": rows["metric"],
                         "fraction_of_gap": rows["fraction_of_gap"], "half_width": half,
                         "gap_status": rows["gap_status"]}).reset_index(drop=True)


def gap_figure(scores: pd.DataFrame) -> str:
    """One dataset's `gap_scores` (metrics with a defined gap) as a base64 PNG: a row per predictor,
    a marker per metric with its 95% interval; scores beyond CLIP are drawn hollow at its edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predictors = sorted(scores["predictor"].unique())
    metrics = list(dict.fromkeys(scores["metric"]))
    fig, ax = plt.subplots(figsize=(9, min(5.0, 1.6 + 0.3 * len(predictors))))
    values = scores["fraction_of_gap"].to_numpy(dtype=float)
    spread = scores["half_width"].fillna(0).to_numpy(dtype=float)
    left = max(CLIP[0], min(-0.1, np.nanmin(values - spread)))
    right = min(CLIP[1], max(1.1, np.nanmax(values + spread)))
    y_of = {p: i for i, p in enumerate(predictors)}
    for m, metric in enumerate(metrics):
        sub = scores[scores["metric"] == metric]
        y = sub["predictor"].map(y_of).to_numpy() + (m - (len(metrics) - 1) / 2) * 0.6 / max(len(metrics), 1)
        x = sub["fraction_of_gap"].to_numpy(dtype=float)
        shown = np.clip(x, left, right)
        color = f"C{m}"
        ax.errorbar(shown, y, xerr=sub["half_width"].fillna(0).to_numpy(), fmt="none", ecolor=color, lw=1)
        inside = shown == x
        ax.scatter(shown[inside], y[inside], color=color, s=22, label=metric, zorder=3)
        ax.scatter(shown[~inside], y[~inside], facecolors="none", edgecolors=color, s=30, zorder=3)
    for x, name in ((0, "best floor"), (1, "ceiling")):
        ax.axvline(x, color="grey", ls="--", lw=1)
        ax.text(x, 1.01, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8,
                color="grey")
    ax.set_xlim(left, right)
    ax.set_ylim(-0.6, len(predictors) - 0.4)
    ax.set_yticks(range(len(predictors)), predictors, fontsize=8 if len(predictors) <= 20 else 6)
    ax.invert_yaxis()
    ax.set_xlabel("fraction of the floor-to-ceiling gap (0 = best floor, 1 = noise ceiling)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    out = png(fig)
    plt.close(fig)
    return out


def _mark(beats: bool, worse: bool) -> str:
    """✓ significantly better, ▼ significantly worse, ✗ not shown to differ."""
    return "✓" if beats else "▼" if worse else "✗"


def _test(role: str, r: pd.Series, name: str | None = None) -> str:
    """One line of a verdict cell: the test against the best `role`, called `name` (default `role`)."""
    name = name or role
    if not isinstance(r[role], str):
        return f"no {name}"
    if np.isnan(r[f"{role}_difference"]):
        return f"? {name}: not compared"
    mark = _mark(r[f"{role}_beats"], r[f"{role}_worse"])
    return (f"{mark} {name} {r[f'{role}_difference']:+.3f} [{r[f'{role}_ci_low']:+.3f}, {r[f'{role}_ci_high']:+.3f}]"
            f" p={r[f'{role}_p_corrected']:.2g}")


def _gap(r: pd.Series) -> str:
    if np.isnan(r["fraction_of_gap"]):
        return f"gap undefined: {r['gap_status']}"
    return f"{r['fraction_of_gap']:.0%} of gap" + ("" if r["gap_status"] == OK else f" ({r['gap_status']})")


def verdict_cells(verdict: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One dataset's `verdict_table` as the report shows it: a row per predictor, a column per metric
    (headed by its best floor and shortcut), each cell the two tests (one where the best floor is the
    best shortcut) and the share of the gap."""
    sub = verdict[verdict["dataset"] == dataset].copy()
    sub["cell"] = ["\n".join([_test("floor", r, "floor = shortcut"), _gap(r)] if r["floor"] == r["shortcut"] else
                             [_test("floor", r), _test("shortcut", r), _gap(r)]) for _, r in sub.iterrows()]
    heads = {m: f"{m}\nfloor {f if isinstance(f, str) else '—'} · shortcut {s if isinstance(s, str) else '—'}"
             for m, f, s in sub.drop_duplicates("metric")[["metric", "floor", "shortcut"]].itertuples(index=False)}
    wide = sub.pivot(index="predictor", columns="metric", values="cell")[list(heads)].fillna("")
    return wide.rename(columns=heads).reset_index()


def twin_cells(twins: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One dataset's `random_twins` as the report shows it: a row per predictor, a cell per metric."""
    sub = twins[twins["dataset"] == dataset].copy()

    def cell(r: pd.Series) -> str:
        if not isinstance(r["twin"], str):
            return "no random twin"
        if np.isnan(r["difference"]):
            return "? not compared"
        return (f"{_mark(r['beats'], r['worse'])} {r['difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
                f" p={r['p_corrected']:.2g}")

    sub["cell"] = [cell(r) for _, r in sub.iterrows()]
    metrics = list(dict.fromkeys(sub["metric"]))
    return sub.pivot(index="predictor", columns="metric", values="cell")[metrics].fillna("").reset_index()


EXPLANATION = (
    "How to read this. Each cell compares a predictor with the best floor (the strongest trivial baseline: "
    "mean, no change, a random embedding, …) and with the best shortcut probe (a baseline that exploits the "
    "target gene, a neighbour or metadata) of that dataset and metric, named in the column head. "
    "✓ means the predictor is better and the evidence is strong: the corrected p-value (Nadeau–Bengio "
    f"resampled t-test over folds × seeds: how surprising the difference would be if there were none) is "
    f"below {ALPHA:g} and the 95% bootstrap confidence interval over perturbations (the range of "
    "differences compatible with the data) lies entirely above 0; ▼ means it is worse by the same rule; "
    "✗ means neither is shown (the evidence is too weak either way). Differences are oriented so that "
    "positive is "
    "better whatever the metric's direction. “% of gap” places the score between the best floor (0%) "
    "and the noise ceiling (100%, what the truth itself would score on these noisy cells); it is left "
    "out, with the reason, where the ceiling is not clearly above the floor. The figure shows the same "
    "scale: 0 is the best floor, 1 the ceiling; bars are 95% intervals over splits. Random twin: the same "
    "model on a random gene embedding; an input that does not beat it adds nothing the model could not "
    "learn from arbitrary vectors.")


def headline(verdict: pd.DataFrame, twins: pd.DataFrame, dataset: str) -> list[str]:
    """One dataset's verdict in three sentences: who beats the best floor, the best shortcut, and
    which inputs beat their random twin (✓ on some primary metric; the metrics named)."""
    def who(frame: pd.DataFrame, column: str) -> str:
        sub = frame[(frame["dataset"] == dataset) & frame[column].astype(bool)] if len(frame) else frame
        if sub.empty:
            return "none"
        named = sub.groupby("predictor", sort=True)["metric"].agg(lambda m: ", ".join(m))
        return "; ".join(f"{p} ({m})" for p, m in named.items())

    return [f"Beat the best floor: {who(verdict, 'floor_beats')}.",
            f"Beat the best shortcut probe: {who(verdict, 'shortcut_beats')}.",
            f"Gene-embedding inputs that beat their random twin: {who(twins, 'beats')}."]


def verdict_section(board: pd.DataFrame, stats: pd.DataFrame, metrics: pd.DataFrame) -> list[str]:
    """The verdict's HTML: per dataset the headline, the gap figure and, folded, the verdict and
    random-twin tables, after one explanation of the rule; nothing without primary metrics."""
    if board.empty or not board["metric"].isin(select("metric", "minimal")).any():
        return []
    verdict, twins = verdict_table(board, stats), random_twins(board, stats)
    scores = gap_scores(board, metrics.groupby("dataset")["split"].nunique().to_dict())
    parts = [f"<h2>Verdict</h2><p class='note'>{html.escape(EXPLANATION)}</p>"]
    for dataset in sorted(board["dataset"].unique()):
        parts.append(f"<h3>{html.escape(dataset)}</h3><ul>"
                     + "".join(f"<li><b>{html.escape(line)}</b></li>" for line in headline(verdict, twins, dataset))
                     + "</ul>")
        here = scores[scores["dataset"] == dataset]
        defined = here[here["gap_status"].isin(ROW_STATUSES)]
        undefined = here.loc[~here["gap_status"].isin(ROW_STATUSES), ["metric", "gap_status"]].drop_duplicates()
        if defined["fraction_of_gap"].notna().any():
            parts.append(f"<img alt='{html.escape(dataset)}: floor to ceiling' "
                         f"src='data:image/png;base64,{gap_figure(defined.dropna(subset=['fraction_of_gap']))}'>")
        if len(undefined):
            parts.append("<p class='note'>Not in the figure (the floor-to-ceiling gap is undefined): " + html.escape(
                "; ".join(f"{m} ({s})" for m, s in undefined.itertuples(index=False))) + ".</p>")
        if not verdict.empty and (verdict["dataset"] == dataset).any():
            parts.append("<details><summary>Every predictor against the best floor and shortcut, per primary metric"
                         "</summary>" + table(verdict_cells(verdict, dataset)) + "</details>")
        if not twins.empty and (twins["dataset"] == dataset).any():
            parts.append("<details><summary>Gene-embedding inputs against their random twin</summary>"
                         + table(twin_cells(twins, dataset)) + "</details>")
    return parts
