"""The fine-tuning section: variants side by side with their bounds and training records, and each
variant tested against full fine-tuning, the best floor and the linear model (known answers)."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.report.finetune import comparisons, finetune_section, variant_table
from pertprobe.report.html import render_html
from pertprobe.report.leaderboard import leaderboard
from pertprobe.response.metrics import METRIC_COLUMNS
from pertprobe.response.statistics import paired_comparisons

# pearson_delta per (model, embedding); mean is the best floor, linear/data_pca the linear model.
MEANS = {("mean", "none"): 0.4, ("linear", "data_pca"): 0.5, ("linear", "random"): 0.2,
         ("scgpt_finetune", "full"): 0.6, ("scgpt_finetune", "no_pretraining"): 0.58,
         ("scgpt_finetune", "simple_affine"): 0.3, ("ceiling", "none"): 0.9}
PERTS = [f"p{i}" for i in range(12)]


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    rows = []
    for (model, embedding), mean in MEANS.items():
        for seed in (0, 1):
            for split in ("fold0", "fold1"):
                for p in PERTS:
                    value = mean + 0.001 * rng.standard_normal()
                    rows.append(("d", "unseen_perturbation", split, seed, model, embedding, p, "pearson_delta", value, False, 8.0))
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    training = pd.DataFrame([{"dataset": "d", "task": "unseen_perturbation", "predictor": "scgpt_finetune", "variant": v, "seed": s, "fold": f,
                              "n_parameters": n, "n_trainable": n, "n_tensors_loaded": t, "epochs": 15,
                              "seconds_per_epoch": 10.0 + f, "peak_memory_mb": 100.0 * (f + 1),
                              "final_train_mse": 0.1, "best_val_pearson": 0.5}
                             for v, n, t in (("full", 51_000_000, 200), ("no_pretraining", 51_000_000, 0),
                                             ("simple_affine", 32_000_000, 0))
                             for s in (0, 1) for f in (0, 1)])
    return leaderboard(metrics), paired_comparisons(metrics), training


def test_variant_table_joins_scores_bounds_and_training(inputs):
    board, _, training = inputs
    rows = variant_table(board, training, "d", "pearson_delta")
    assert rows["variant"].tolist() == ["full", "no_pretraining", "simple_affine"]  # registry order
    full = rows.iloc[0]
    assert full["mean"] == pytest.approx(0.6, abs=1e-3) and full["best_floor"] == pytest.approx(0.4, abs=1e-3)
    assert full["best_linear"] == pytest.approx(0.5, abs=1e-3) and full["ceiling"] == pytest.approx(0.9, abs=1e-3)
    assert full["n_parameters"] == 51_000_000 and full["n_runs"] == 4
    assert full["seconds_per_epoch"] == pytest.approx(10.5) and full["peak_memory_mb"] == 200.0


def test_each_variant_is_tested_against_full_the_floor_and_linear(inputs):
    board, stats, training = inputs
    rows = variant_table(board, training, "d", "pearson_delta")
    tests = comparisons(board, stats, rows, "d", "pearson_delta").set_index(["variant", "against"])
    assert tests.loc[("scgpt_finetune/full", "best floor (mean)"), "verdict"] == "better"
    assert tests.loc[("scgpt_finetune/full", "linear (linear/data_pca)"), "difference"] == pytest.approx(0.1, abs=2e-3)
    assert tests.loc[("scgpt_finetune/simple_affine", "scgpt_finetune/full"), "verdict"] == "worse"
    assert tests.loc[("scgpt_finetune/simple_affine", "best floor (mean)"), "verdict"] == "worse"
    assert ("scgpt_finetune/full", "scgpt_finetune/full") not in tests.index
    assert set(tests.columns) >= {"difference", "ci_low", "ci_high", "p_corrected"}


def test_the_section_is_in_the_report_only_with_training_records(inputs):
    board, stats, training = inputs
    metrics = pd.DataFrame(columns=METRIC_COLUMNS)
    assert finetune_section(board, None, stats) == []
    page = render_html(board, metrics, {}, [], "", stats, training=training)
    assert "Fine-tuned foundation models" in page and "by variant" in page
    assert "Fine-tuned foundation models" not in render_html(board, metrics, {}, [], "", stats)
