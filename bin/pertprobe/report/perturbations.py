"""The report's per-perturbation views: scores per test perturbation against its response strength,
each perturbation's knockdown of its own target, and how similar the observed responses are.
Definitions: docs/metrics.md#per-perturbation-views."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..data.de import log2_fold_change
from ..data.pseudobulk import Pseudobulk
from ..registry import select
from ..response.metrics import directions
from .render import label, png, table
from .verdict import best_references, is_predictor

VIEW_METRICS = ("pearson_delta", "rank_delta")  # shown where present; else the first primary metric present
N_PREDICTORS = 4  # best non-floor predictors shown per metric, by leaderboard mean
N_STRONGEST, N_WEAKEST = 40, 10  # rows an HTML table keeps of a large screen
N_HEATMAP = 50  # strongest responders in the similarity heatmap
N_NEIGHBOURS = 3
NOT_KNOCKED_DOWN = 0.8  # CRISPRi/KO: a target with this share remaining or more is not knocked down
NOT_ACTIVATED = 1.25  # CRISPRa: a target at this share or less is not activated
PSEUDOCOUNT = 1.0  # normalised counts, for the target's log2 fold-change
BOTH = "floor = shortcut"  # the role of a best floor that is also the best shortcut
WORSE, FALLBACK = "▼", "†"  # markers: worse than the best floor on this perturbation; fell back to the mean
SCORE_COLUMNS = ["dataset", "task", "metric", "perturbation", "n_cells", "response_strength", "role", "predictor",
                 "value", "fallback", "worse_than_floor"]
KNOCKDOWN_COLUMNS = ["perturbation", "target", "control_mean", "perturbed_mean", "share_remaining",
                     "log2_fold_change", "on_target", "status"]


def deltas(pb: Pseudobulk) -> pd.DataFrame:
    """Observed Δ: each perturbation's pseudobulk minus the control's (perturbations × genes)."""
    return pb.means.loc[pb.perturbations] - pb.control


def response_strength(pb: Pseudobulk) -> pd.DataFrame:
    """Per perturbation, n_cells and response_strength ‖Δ‖ (Euclidean norm over genes), strongest first."""
    d = deltas(pb)
    out = pd.DataFrame({"perturbation": d.index, "n_cells": pb.n_cells.reindex(d.index).to_numpy(),
                        "response_strength": np.linalg.norm(d.to_numpy(dtype=np.float64), axis=1)})
    return out.sort_values(["response_strength", "perturbation"], ascending=[False, True], ignore_index=True)


def view_metrics(board: pd.DataFrame, dataset: str) -> list[str]:
    """The metrics the per-perturbation view shows for a dataset: VIEW_METRICS where present, else the
    first primary metric present (none without primary metrics)."""
    present = set(board.loc[board["dataset"] == dataset, "metric"])
    chosen = [m for m in VIEW_METRICS if m in present]
    return chosen or [m for m in select("metric", "minimal") if m in present][:1]


def shown_predictors(board: pd.DataFrame, dataset: str, metric: str) -> list[tuple[str, str]]:
    """(role, predictor label) for one dataset and metric: the best floor, the best shortcut (one
    entry, role BOTH, where they are the same), the N_PREDICTORS best predictors (`is_predictor`) by
    oriented leaderboard mean, and the ceiling."""
    refs = best_references(board)
    rows = board[(board["dataset"] == dataset) & (board["metric"] == metric)]
    ref = refs.loc[(dataset, metric)] if (dataset, metric) in refs.index else pd.Series(dtype=object)
    floor, shortcut = ref.get("floor"), ref.get("shortcut")
    out = []
    if isinstance(floor, str):
        out.append((BOTH if floor == shortcut else "floor", floor))
    if isinstance(shortcut, str) and shortcut != floor:
        out.append(("shortcut", shortcut))
    judged = rows[is_predictor(rows)].dropna(subset=["mean"])
    judged = judged.assign(label=[label(r) for _, r in judged.iterrows()],
                           oriented=judged["mean"].where(judged["higher_is_better"], -judged["mean"]))
    out += [("predictor", p) for p in judged.sort_values(["oriented", "label"], ascending=[False, True])["label"]
            .head(N_PREDICTORS)]
    if (rows["model"] == "ceiling").any():
        out.append(("ceiling", "ceiling"))
    return out


def perturbation_scores(metrics: pd.DataFrame, board: pd.DataFrame, pb: Pseudobulk, dataset: str) -> pd.DataFrame:
    """Long table (SCORE_COLUMNS) of one dataset and task: per view metric, test perturbation (strongest
    response first) and shown predictor, the value averaged over the seeds and splits the
    perturbation was tested in, whether the predictor fell back to the mean for it in any of them,
    and whether it is worse than the best floor on it (oriented by the metric's direction; never for
    the floor or the ceiling)."""
    here = metrics[metrics["dataset"] == dataset]
    if here["task"].nunique() > 1:
        raise ValueError("perturbation_scores scores one task at a time: pass that task's metrics and board")
    task = here["task"].iloc[0] if len(here) else ""
    pairs = here[["model", "embedding"]].drop_duplicates()
    labels = pd.Series([label(r) for _, r in pairs.iterrows()], index=pd.MultiIndex.from_frame(pairs))
    here = here.assign(predictor=labels.reindex(pd.MultiIndex.from_frame(here[["model", "embedding"]])).to_numpy(),
                       fallback=here["fallback"].fillna(False).astype(bool))
    strength = response_strength(pb).set_index("perturbation")
    tested = sorted(set(here["perturbation"]), key=lambda p: (-strength["response_strength"].get(p, -np.inf), p))
    frames = []
    for metric in view_metrics(board, dataset):
        shown = shown_predictors(board, dataset, metric)
        rows = here[(here["metric"] == metric) & here["predictor"].isin([p for _, p in shown])]
        per = rows.groupby(["predictor", "perturbation"]).agg(value=("value", "mean"), fallback=("fallback", "any"))
        grid = pd.MultiIndex.from_product([[p for _, p in shown], tested], names=["predictor", "perturbation"])
        per = per.reindex(grid).reset_index()
        per["fallback"] = per["fallback"].fillna(False).astype(bool)
        per["role"] = per["predictor"].map({p: r for r, p in shown})
        floor = next((p for r, p in shown if r in ("floor", BOTH)), None)
        sign = 1.0 if directions().get(metric, True) else -1.0
        floor_value = per.loc[per["predictor"] == floor].set_index("perturbation")["value"]
        worse = sign * (per["value"] - per["perturbation"].map(floor_value)) < 0
        per["worse_than_floor"] = worse & per["role"].isin(["shortcut", "predictor"])
        per["metric"], per["dataset"], per["task"] = metric, dataset, task
        per["n_cells"] = per["perturbation"].map(strength["n_cells"])
        per["response_strength"] = per["perturbation"].map(strength["response_strength"])
        per["order"] = per["perturbation"].map({p: i for i, p in enumerate(tested)})
        per["slot"] = per["predictor"].map({p: i for i, (_, p) in enumerate(shown)})
        frames.append(per.sort_values(["order", "slot"]))
    if not frames:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SCORE_COLUMNS]


def cap_rows(frame: pd.DataFrame, strongest: int = N_STRONGEST, weakest: int = N_WEAKEST) -> tuple[pd.DataFrame, int]:
    """The first `strongest` and last `weakest` rows of an ordered frame, and how many were left out."""
    if len(frame) <= strongest + weakest:
        return frame, 0
    return pd.concat([frame.head(strongest), frame.tail(weakest)]), len(frame) - strongest - weakest


def score_cells(scores: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One metric's `perturbation_scores` as the report shows it: a row per perturbation (the
    scores' order), columns perturbation, n_cells, ‖Δ‖ and one per shown predictor (headed by its
    role), values with WORSE / FALLBACK markers; and the matching frame of CSS classes."""
    sub = scores[scores["metric"] == metric]
    heads = {p: (p if r == "predictor" or p == r else f"{r}: {p}")
             for p, r in sub.drop_duplicates("predictor")[["predictor", "role"]].itertuples(index=False)}
    flags = sub[["value", "worse_than_floor", "fallback"]].itertuples(index=False)
    text = sub.assign(cell=[("—" if np.isnan(v) else f"{v:.3f}") + (f" {WORSE}" if w else "")
                            + (f" {FALLBACK}" if f else "") for v, w, f in flags],
                      css=np.where(sub["worse_than_floor"], "worse", "") + np.where(sub["fallback"], " fallback", ""))
    order = list(dict.fromkeys(sub["perturbation"]))
    first = sub.drop_duplicates("perturbation").set_index("perturbation").loc[order]
    base = pd.DataFrame({"perturbation": order, "n_cells": first["n_cells"].to_numpy(),
                         "‖Δ‖": [f"{v:.3f}" for v in first["response_strength"]]})
    cells = text.pivot(index="perturbation", columns="predictor", values="cell").loc[order, list(heads)]
    css = text.pivot(index="perturbation", columns="predictor", values="css").loc[order, list(heads)]
    shown = pd.concat([base, cells.rename(columns=heads).reset_index(drop=True)], axis=1)
    classes = pd.concat([pd.DataFrame("", index=range(len(order)), columns=base.columns),
                         css.rename(columns=heads).reset_index(drop=True).apply(lambda c: c.str.strip())], axis=1)
    return shown, classes


def score_figure(scores: pd.DataFrame) -> str:
    """Score against response strength, a panel per metric and a colour per shown predictor, with a
    running median over strength-ordered perturbations; base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(scores["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(min(7.6, 3.8 * len(metrics)), 3.2), squeeze=False,
                             layout="constrained")
    for ax, metric in zip(axes[0], metrics, strict=True):
        sub = scores[scores["metric"] == metric]
        for i, predictor in enumerate(dict.fromkeys(sub["predictor"])):
            rows = sub[sub["predictor"] == predictor].dropna(subset=["value", "response_strength"])
            rows = rows.sort_values(["response_strength", "perturbation"])
            x, y = rows["response_strength"].to_numpy(), rows["value"].to_numpy()
            role = rows["role"].iloc[0] if len(rows) else "predictor"
            style = {"floor": "--", BOTH: "--", "shortcut": ":", "ceiling": "-."}.get(role, "-")
            ax.scatter(x, y, s=8, alpha=0.45, color=f"C{i}")
            if len(x):
                window = max(3, len(x) // 8)
                running = pd.Series(y).rolling(window, center=True, min_periods=1).median().to_numpy()
                ax.plot(x, running, ls=style, color=f"C{i}", lw=1.4, label=predictor)
        ax.set_xlabel("response strength ‖Δ‖")
        ax.set_ylabel(metric)
        ax.set_title(metric, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, frameon=False)
    out = png(fig)
    plt.close(fig)
    return out


def knockdown_table(pb: Pseudobulk) -> pd.DataFrame:
    """Per perturbation × measured target (KNOCKDOWN_COLUMNS), sorted by share remaining: the target's
    control and perturbed mean in normalised counts (expm1 of the log-normalised pseudobulk means),
    share_remaining = perturbed / control (NaN where the control is 0), log2 fold-change with
    PSEUDOCOUNT, and whether the target moved as the perturbation type intends (`on_target`:
    CRISPRi/KO share < NOT_KNOCKED_DOWN, CRISPRa share > NOT_ACTIVATED) with a `status` word."""
    kind = pb.perturbation_type
    control = pd.Series(np.expm1(pb.control), index=pb.genes)
    rows = []
    for p in pb.perturbations:
        for gene in pb.targets.get(p, []):
            if gene not in control.index:
                continue
            c, v = float(control[gene]), float(np.expm1(pb.means.at[p, gene]))
            share = v / c if c > 0 else np.nan
            if np.isnan(share):
                on, status = False, "not expressed in control"
            elif kind == "CRISPRa":
                on = share > NOT_ACTIVATED
                status = "activated" if on else "not activated"
            elif kind in ("CRISPRi", "KO"):
                on = share < NOT_KNOCKED_DOWN
                status = "knocked down" if on else "not knocked down"
            else:
                on, status = False, f"no rule for {kind}"
            rows.append({"perturbation": p, "target": gene, "control_mean": c, "perturbed_mean": v,
                         "share_remaining": share,
                         "log2_fold_change": float(log2_fold_change(pb.means.at[p, gene],
                                                                    pb.control[pb.genes.get_loc(gene)], PSEUDOCOUNT)),
                         "on_target": bool(on), "status": status})
    out = pd.DataFrame(rows, columns=KNOCKDOWN_COLUMNS)
    return out.sort_values(["share_remaining", "perturbation", "target"], na_position="last", ignore_index=True)


def knockdown_summary(knockdown: pd.DataFrame, perturbation_type: str) -> str:
    """One line: how many perturbations have a measured target, and how many have every one moved."""
    n = knockdown["perturbation"].nunique()
    moved = int(knockdown.groupby("perturbation")["on_target"].all().sum()) if n else 0
    verb = "activated" if perturbation_type == "CRISPRa" else "knocked down"
    return (f"{n} perturbation(s) have a measured target; {moved} have every measured target {verb} "
            f"(share remaining {'>' if perturbation_type == 'CRISPRa' else '<'} "
            f"{NOT_ACTIVATED if perturbation_type == 'CRISPRa' else NOT_KNOCKED_DOWN:g}).")


def similarity(pb: Pseudobulk, perturbations: list[str] | None = None) -> pd.DataFrame:
    """Cosine similarity of observed Δ between perturbations (all by default); NaN for a Δ of 0."""
    d = deltas(pb)
    d = d.loc[perturbations] if perturbations is not None else d
    x = d.to_numpy(dtype=np.float64)
    norm = np.linalg.norm(x, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = x / norm[:, None]
    unit[norm == 0] = np.nan
    sim = np.clip(unit @ unit.T, -1.0, 1.0)
    return pd.DataFrame(sim, index=d.index, columns=d.index)


def cluster_order(sim: pd.DataFrame) -> list[str]:
    """The perturbations of a similarity matrix in average-linkage order on cosine distance 1 − s
    (scipy `linkage` + `leaves_list`; a NaN similarity counts as 0)."""
    if len(sim) < 3:
        return list(sim.index)
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    dist = 1.0 - np.nan_to_num(sim.to_numpy(dtype=np.float64), nan=0.0)
    np.fill_diagonal(dist, 0.0)
    dist = np.clip((dist + dist.T) / 2, 0.0, 2.0)
    return [sim.index[i] for i in leaves_list(linkage(squareform(dist, checks=False), method="average"))]


def nearest_neighbours(sim: pd.DataFrame, k: int = N_NEIGHBOURS) -> pd.DataFrame:
    """Per perturbation (the matrix's order), its k most similar other perturbations and their cosine
    (columns neighbour_i, cosine_i; ties by name, NaN similarities skipped)."""
    rows = []
    for p in sim.index:
        others = sim.loc[p].drop(p).dropna()
        ranked = sorted(others.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        row: dict = {"perturbation": p}
        for i in range(k):
            name, value = ranked[i] if i < len(ranked) else ("", np.nan)
            row |= {f"neighbour_{i + 1}": name, f"cosine_{i + 1}": value}
        rows.append(row)
    return pd.DataFrame(rows, columns=["perturbation"] + [f"{c}_{i + 1}" for i in range(k)
                                                          for c in ("neighbour", "cosine")])


def similarity_figure(sim: pd.DataFrame) -> str:
    """A clustered cosine-similarity heatmap (`cluster_order`), base64 PNG of at most 8 × 7 inches,
    padding included."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = cluster_order(sim)
    values = sim.loc[order, order].to_numpy(dtype=np.float64)
    n = len(order)
    fig, ax = plt.subplots(figsize=(min(7.6, 2.5 + 0.11 * n), min(6.6, 2.0 + 0.1 * n)), layout="constrained")
    image = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    size = 7 if n <= 30 else 5
    ax.set_xticks(range(n), order, rotation=90, fontsize=size)
    ax.set_yticks(range(n), order, fontsize=size)
    fig.colorbar(image, ax=ax, fraction=0.04, label="cosine similarity of Δ")
    out = png(fig)
    plt.close(fig)
    return out


def perturbation_tables(metrics: pd.DataFrame, board: pd.DataFrame,
                        pseudobulks: dict[str, Pseudobulk]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """perturbations.csv and knockdown.csv: `perturbation_scores` per task (from that task's metrics and
    board) and `knockdown_table` once (it does not depend on the task), with leading dataset (and task)
    columns, of every dataset of the board that has a pseudobulk."""
    here = [d for d in sorted(board["dataset"].unique()) if d in pseudobulks]
    scores = [perturbation_scores(metrics[metrics["task"] == task], board[board["task"] == task], pseudobulks[d], d)
              for task in sorted(board["task"].unique()) for d in here]
    knockdown = [knockdown_table(pseudobulks[d]).assign(dataset=d)[["dataset", *KNOCKDOWN_COLUMNS]] for d in here]
    return (pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(columns=SCORE_COLUMNS),
            pd.concat(knockdown, ignore_index=True) if knockdown else pd.DataFrame(columns=["dataset",
                                                                                           *KNOCKDOWN_COLUMNS]))


def _img(alt: str, data: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _note(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


EXPLANATION = (
    "Fold means hide which perturbations a predictor gets right. Per dataset: each test perturbation's score "
    "(averaged over the seeds and splits it was tested in) for the best floor, the best shortcut, the best "
    f"{N_PREDICTORS} predictors by leaderboard mean and the ceiling, ordered by response strength ‖Δ‖ (the "
    f"Euclidean norm of its observed pseudobulk minus control), strongest first; {WORSE} and a red cell: worse "
    f"than the best floor on that perturbation; {FALLBACK}: the predictor fell back to the mean for it. Then each "
    "perturbation's knockdown of its own target, and the cosine similarity of the observed responses. "
    "Definitions: docs/metrics.md#per-perturbation-views.")


def _capped_table(shown: pd.DataFrame, classes: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    """`table` of `cap_rows(shown)` with a "…" row where rows were left out."""
    kept, left_out = cap_rows(shown.reset_index(drop=True))
    cut = classes.reset_index(drop=True).loc[kept.index]
    if left_out:
        gap = pd.DataFrame([["…"] + [""] * (shown.shape[1] - 1)], columns=shown.columns)
        blank = pd.DataFrame([[""] * shown.shape[1]], columns=shown.columns)
        kept = pd.concat([kept.head(N_STRONGEST), gap, kept.tail(N_WEAKEST)], ignore_index=True)
        cut = pd.concat([cut.head(N_STRONGEST), blank, cut.tail(N_WEAKEST)], ignore_index=True)
    return table(kept, floatfmt, cut)


def _left_out(n: int, what: str, first: str, last: str, csv: str) -> str:
    left_out = cap_rows(pd.DataFrame(index=range(n)))[1]
    return (f" The {N_STRONGEST} {first} and {N_WEAKEST} {last} of {n} {what}; {left_out} left out "
            f"(all in {csv}).") if left_out else ""


def _score_views(dataset: str, scores: pd.DataFrame) -> list[str]:
    parts = ["<h4>Scores per perturbation</h4>"]
    if scores.empty:
        return parts + [_note("No primary metric to show per perturbation.")]
    parts.append(_img(f"{dataset}: score against response strength", score_figure(scores)))
    for metric in dict.fromkeys(scores["metric"]):
        shown, classes = score_cells(scores, metric)
        note = _left_out(len(shown), "perturbations", "strongest", "weakest", "perturbations.csv")
        parts.append(f"<h5>{html.escape(metric)}</h5>" + (_note(note.strip()) if note else "")
                     + _capped_table(shown, classes))
    return parts


def _knockdown_view(pb: Pseudobulk) -> list[str]:
    kd = knockdown_table(pb)
    parts = ["<h4>Own-target knockdown</h4>"]
    if kd.empty:
        return parts + [_note("No perturbation has a measured target.")]
    classes = pd.DataFrame("", index=kd.index, columns=kd.columns)
    classes.loc[~kd["on_target"], "status"] = "worse"
    note = _left_out(len(kd), "rows", "lowest shares", "highest", "knockdown.csv")
    return parts + [_note(knockdown_summary(kd, pb.perturbation_type) + note), _capped_table(kd, classes)]


def _similarity_view(pb: Pseudobulk, dataset: str) -> list[str]:
    strength = response_strength(pb)
    responders = strength.loc[strength["response_strength"] > 0, "perturbation"].tolist()
    parts = ["<h4>Similarity of observed responses</h4>"]
    if len(responders) < 2:
        return parts + [_note("Fewer than two perturbations with a response: no similarity to show.")]
    sim = similarity(pb, responders)
    top = responders[:N_HEATMAP]
    capped = len(responders) > N_HEATMAP
    parts.append(_note(f"Cosine similarity of Δ, clustered (average linkage on 1 − cosine)"
                       + (f"; the {N_HEATMAP} strongest of {len(responders)} responders." if capped else ".")))
    parts.append(_img(f"{dataset}: similarity of responses", similarity_figure(sim.loc[top, top])))
    neighbours = nearest_neighbours(sim).set_index("perturbation").loc[top].reset_index()
    shown_for = f", shown for the {N_HEATMAP} strongest." if capped else "."
    parts.append(_note(f"Each perturbation's {N_NEIGHBOURS} nearest neighbours by cosine among all "
                       f"{len(responders)} responders{shown_for}"))
    return parts + [table(neighbours, "{:.3f}")]


def perturbation_views(metrics: pd.DataFrame, board: pd.DataFrame, pseudobulks: dict[str, Pseudobulk] | None,
                       dataset_views: str | None = None) -> list[str]:
    """The per-perturbation views' HTML, a section per dataset of the board; one note where no pseudobulk
    was given, nothing for an empty board. The knockdown and similarity views describe the dataset, not
    a task: with `dataset_views` (the task whose section shows them) they are referred to, not repeated."""
    if board.empty:
        return []
    parts = ["<h2>Per-perturbation views</h2>"]
    if not pseudobulks:
        return parts + [_note("Skipped: no pseudobulk was given (report.py --pseudobulk).")]
    parts.append(_note(EXPLANATION))
    for dataset in sorted(board["dataset"].unique()):
        parts.append(f"<h3>{html.escape(dataset)}</h3>")
        pb = pseudobulks.get(dataset)
        if pb is None:
            parts.append(_note(f"No pseudobulk for {dataset}: its per-perturbation views are skipped."))
            continue
        scores = perturbation_scores(metrics, board, pb, dataset)
        parts += _score_views(dataset, scores)
        if dataset_views:
            parts.append(_note(f"Own-target knockdown and the similarity of observed responses: under task "
                               f"{dataset_views} (they do not depend on the task)."))
            continue
        parts += _knockdown_view(pb)
        parts += _similarity_view(pb, dataset)
    return parts
