"""The real Nextflow pipeline on the bundled test data: run, -resume, -stub-run, bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pertprobe.registry import names, select

# The test profile runs every registered foundation model.
CELL_MODELS = names("cell_embedder", checkpoint=True)
GENE_MODELS = names("gene_embedding", checkpoint=True)

from ..conftest import ROOT, TEST_DATA

pytestmark = pytest.mark.pipeline


def _nextflow() -> str | None:
    candidates = [os.environ.get("PERTPROBE_NEXTFLOW"), str(ROOT / ".nextflow-dist" / "bin" / "nextflow"),
                  shutil.which("nextflow")]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


NEXTFLOW = _nextflow()
if NEXTFLOW is None:
    pytest.skip("Nextflow not found: run `make nextflow` (or `make test`, which installs it) to run the pipeline "
                "tests", allow_module_level=True)


def nextflow(launch_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the pipeline from `launch_dir` with this interpreter's environment as the task environment."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    cmd = [NEXTFLOW, "run", str(ROOT), "-ansi-log", "false", "--venv", sys.prefix, *args]
    env = {**os.environ, "NXF_OFFLINE": "true"}
    result = subprocess.run(cmd, cwd=launch_dir, capture_output=True, text=True, env=env, timeout=5400)
    if check and result.returncode != 0:
        raise AssertionError(f"nextflow failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return result


def trace_statuses(trace: Path) -> list[str]:
    with trace.open() as fh:
        return [row["status"] for row in csv.DictReader(fh, delimiter="\t")]


def read_trace(trace: Path) -> pd.DataFrame:
    """The trace with `process`: the simple process name (PERTPROBE:RESPONSE_BENCHMARK:PREDICT -> PREDICT)."""
    table = pd.read_csv(trace, sep="\t")
    table["process"] = table["name"].str.split(" ").str[0].str.split(":").str[-1]
    return table


@pytest.fixture(scope="module")
def test_run(tmp_path_factory):
    launch = tmp_path_factory.mktemp("nf_run")
    nextflow(launch, "-profile", "test", "--outdir", "results", "-with-trace", "trace1.txt")
    return launch


def test_pipeline_writes_leaderboard_and_report(test_run):
    results = test_run / "results"
    from pertprobe.registry import names

    board = pd.read_csv(results / "leaderboard.csv")
    from pertprobe.response.bounds import ANCHORS

    assert set(board["task"]) == set(names("task"))  # the bundled screen has combinations: every task runs
    for _, here in board.groupby("task"):
        assert set(here["model"]) == set(names("predictor")) | set(ANCHORS)
        assert set(here["metric"]) == set(names("metric"))
    combos = board[board["task"] == "combination"]
    board = board[board["task"] == "unseen_perturbation"]
    # Gene-embedding sources: built-in ones plus every foundation-model table of the test profile.
    assert set(board.loc[board["model"] == "linear", "embedding"]) == {"data_pca", "random", *GENE_MODELS}
    rank = board[(board["metric"] == "rank_delta") & (board["embedding"] == "none")].set_index("model")["mean"]
    assert rank["mean"] == 0.5 and rank["no_change"] == 0.5
    assert rank["crispr_informed_mean"] < 0.3
    assert (board["n_splits"] == 2).all()  # 2 folds x 1 seed in the test profile
    assert board[["best_floor", "ceiling"]].notna().all().all()
    # Bounds that a reader cannot misread: the noise ceiling is above every floor (a split-half
    # "ceiling" was not: 0.102 against 0.081 for the CRISPR-informed mean on rank_delta).
    ceiling = board[board["model"] == "ceiling"].set_index("metric")
    assert (ceiling["gap"] > 0).all()
    defined = ceiling["gap_status"] == "ok"
    assert (ceiling.loc[defined, "fraction_of_gap"] == 1).all() and defined.mean() > 0.8
    assert ceiling.loc[~defined, "gap_status"].str.contains("within noise").all()
    assert rank["ceiling"] < rank["crispr_informed_mean"] < rank["split_half"] + 0.05
    mse = board[(board["metric"] == "mse") & (board["embedding"] == "none")].set_index("model")["mean"]
    assert mse["interpolated_duplicate"] < mse["split_half"]  # shrunk to the floor where a change is not significant
    # Coverage: floors predict every test perturbation; the bounds are not fitted.
    assert (board.loc[board["model"] == "crispr_informed_mean", "coverage"] == 1).all()
    assert board["coverage"].between(0, 1).all() and board.loc[board["model"] == "ceiling", "min_n_fit"].isna().all()
    de_counts = pd.read_csv(results / "preprocess" / "sim_crispri.de_counts.csv")
    assert de_counts["n_de_genes"].between(0, 20).all() and (de_counts["n_de_genes"] <= de_counts["n_significant"]).all()
    ok = board[board["gap_status"] == "ok"]
    assert ok["fraction_of_gap"].between(0, 1).all()
    assert set(board["gap_status"]) - {"ok", "below the best floor", "above the ceiling", "no defined value"} <= {
        "floor-to-ceiling gap within noise (< 2 SE)"}
    stats = pd.read_csv(results / "statistics.csv")
    assert {"p_perturbation", "p_corrected", "ci_low", "ci_high"} <= set(stats.columns) and len(stats) > 0
    html = (results / "report.html").read_text()
    assert "pertprobe report" in html and "data:image/png;base64," in html and "Paired comparisons" in html
    assert "Not better than the strongest shortcut probe" in html
    # Per-perturbation views from the pseudobulk REPORT now receives.
    assert "Per-perturbation views" in html and "Own-target knockdown" in html and "Similarity of observed" in html
    scores = pd.read_csv(results / "perturbations.csv")
    assert set(scores["dataset"]) == {"sim_crispri"} and (scores["response_strength"] > 0).all()
    knockdown = pd.read_csv(results / "knockdown.csv")
    assert knockdown["on_target"].mean() > 0.5  # the simulated CRISPRi keeps 15% of its expressed targets
    assert (results / "pipeline_info" / "software_versions.yml").read_text().count(':PREPROCESS":') == 1
    assert {p.name.split(".")[1] for p in (results / "embed_cells").glob("*.embedding.h5ad")} == {"pca", "scvi", "random"}
    assert "<h2>Embeddings</h2>" in html and "gene_coverage" in html
    assert "Cell-embedding benchmark" in html and "Known-relationship recall" in html
    trace = read_trace(test_run / "trace1.txt")
    assert set(trace["status"]) == {"COMPLETED"}
    # One PREDICT task per split x gene embedding (or none), one EVALUATE per split.
    n_splits, n_sources = 2 * len(names("task")), 2 + len(GENE_MODELS)
    assert (trace["process"] == "PREDICT").sum() == n_splits * (1 + n_sources)
    assert (trace["process"] == "EVALUATE").sum() == n_splits
    # scGPT fine-tuned as every variant, one task per split x variant, scored and reported like any predictor.
    variants = names("finetune_variant")
    assert (trace["process"] == "PREDICT_FINETUNE").sum() == n_splits * len(variants) == 28
    assert set(board.loc[board["model"] == "scgpt_finetune", "embedding"]) == set(variants)
    training = pd.read_csv(results / "training.csv")
    assert len(training) == n_splits * len(variants) and set(training["variant"]) == set(variants)
    assert training.groupby(["task", "fold"])["batch_digest"].nunique().eq(1).all()  # the same data for every variant
    assert (training.loc[training["variant"] == "lora", "n_trainable"] < training["n_parameters"].max()).all()
    assert (training.loc[training["variant"].isin(["no_pretraining", "simple_affine", "mlp"]), "n_tensors_loaded"] == 0).all()
    assert "Fine-tuned foundation models" in html and "scgpt_finetune/no_pretraining" in html
    metrics = pd.read_parquet(results / "metrics.parquet")
    assert metrics.groupby(["task", "split", "seed"])[["model", "embedding"]].nunique().eq(
        metrics[["model", "embedding"]].nunique()).all().all()
    # The combination task: held-out doubles only, scored by seen singles, additive its reference.
    assert set(metrics.loc[metrics["task"] == "combination", "perturbation"]) == {
        p for p in scores["perturbation"] if "+" in p}
    delta = combos[(combos["metric"] == "pearson_delta") & (combos["embedding"] == "none")].set_index("model")["mean"]
    assert delta["additive"] > delta["mean"]
    seen = pd.read_csv(results / "combination.csv")
    assert {"2/2", "1/2"} <= set(seen["seen"])  # the test profile holds a quarter of the singles out
    assert "<h1>Task combination</h1>" in html and "Combinations by seen singles" in html
    summary = json.loads((results / "preprocess" / "sim_crispri.summary.json").read_text())
    assert summary["tasks"] == {"unseen_perturbation": "2 splits", "combination": "2 splits"}
    assert summary["qc_min_genes_per_cell"] == 50 and summary["qc_min_genes_rule"].startswith("auto")


def test_cell_embedding_benchmark_has_every_task_with_its_random_floor(test_run):
    board = pd.read_csv(test_run / "results" / "cell_leaderboard.csv")
    assert set(board["model"]) == {"pca", "scvi", "random", *CELL_MODELS}
    assert set(board["alignment"]) == set(select("alignment", "minimal")) == {"none", "center"}  # test profile
    assert set(board["task"]) == set(names("cell_task"))
    assert {"none", "center"} < set(names("alignment"))
    assert board["random_floor"].notna().all()
    value = board.set_index(["model", "alignment", "metric"])["value"]
    # The floor sits at chance; PCA of data whose effects follow gene programs beats it.
    assert abs(value["random", "center", "recall"] - 0.10) < 0.08
    assert abs(value["random", "center", "top1_accuracy"] - value["random", "center", "top1_chance"]) < 0.03
    assert abs(value["random", "center", "structural_integrity"] - 0.5) < 0.02
    for model in ("pca", "scvi"):
        assert value[model, "center", "recall"] > value["random", "center", "recall"]
        assert value[model, "center", "top1_accuracy"] > 3 * value[model, "center", "top1_chance"]
        assert value[model, "center", "structural_integrity"] > value["random", "center", "structural_integrity"] + 0.01
    # Per-batch centring on controls removes the simulated batch shift from the PCA embedding.
    assert value["pca", "center", "ilisi"] > value["pca", "none", "ilisi"] + 0.3


def test_resume_reruns_nothing(test_run):
    before = (test_run / "results" / "leaderboard.csv").read_bytes()
    nextflow(test_run, "-profile", "test", "--outdir", "results", "-resume", "-with-trace", "trace2.txt")
    statuses = trace_statuses(test_run / "trace2.txt")
    assert statuses and set(statuses) == {"CACHED"}, statuses
    assert (test_run / "results" / "leaderboard.csv").read_bytes() == before


def test_stub_run_of_whole_pipeline(tmp_path):
    nextflow(tmp_path, "-profile", "test", "--outdir", "results", "-stub-run", "-with-trace", "trace.txt")
    trace = read_trace(tmp_path / "trace.txt")
    assert set(trace["status"]) == {"COMPLETED"}
    assert set(trace["process"]) == {"VALIDATE_SAMPLESHEET", "VALIDATE_SIDE_INPUTS", "VALIDATE_INPUT", "PREPROCESS", "EMBED_CELLS", "EMBED_CELLS_MODEL", "EXTRACT_GENE_EMBEDDINGS",
                         "EMBED_GENES", "PREDICT", "PREDICT_FINETUNE", "EVALUATE", "CEILING", "EVAL_CELL_EMBEDDINGS",
                         "REPORT"}
    assert (tmp_path / "results" / "report.html").exists()


def test_bad_dataset_column_fails_in_validate_input_with_the_fix(tmp_path):
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("dataset,h5ad,perturbation_type,gene_id_type,perturbation_col\n"
                     f"bad,{TEST_DATA / 'sim_crispri.h5ad'},CRISPRi,symbol,guide_identity\n")
    result = nextflow(tmp_path, "-profile", "test", "--input", str(sheet), "--outdir", "results", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "VALIDATE_INPUT" in out and "obs['guide_identity']" in out and "perturbation_col" in out
    assert not (tmp_path / "results" / "preprocess").exists()


def _stopped_before_any_work(launch: Path, result: subprocess.CompletedProcess, process: str, words: list[str]):
    """The run failed in `process` with a message holding `words`, ran no other kind of task and
    published nothing beyond pipeline_info/."""
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert process in out and all(w in out for w in words), out[-3000:]
    ran = {line.split("> ")[1].split(" ")[0].split(":")[-1] for line in out.splitlines() if "Submitted process >" in line}
    assert ran <= {"VALIDATE_SAMPLESHEET", "VALIDATE_SIDE_INPUTS", "APPLY_LABEL_MAP", "VALIDATE_INPUT"}, ran
    results = launch / "results"
    assert not results.exists() or {p.name for p in results.iterdir()} <= {"pipeline_info"}


def test_bad_known_relationships_stop_the_run_before_any_work(tmp_path):
    bad = tmp_path / "relationships.tsv"
    bad.write_text("a\tb\nGENE1\tGENE2\n")
    result = nextflow(tmp_path, "-profile", "test", "--known_relationships", str(bad), "--outdir", "results", check=False)
    _stopped_before_any_work(tmp_path, result, "VALIDATE_SIDE_INPUTS", [str(bad.name), "gene_a", "Fix:"])


def test_a_dataset_whose_labels_do_not_name_measured_genes_stops_before_any_work(tmp_path):
    import anndata as ad

    adata = ad.read_h5ad(TEST_DATA / "sim_crispri.h5ad")
    labels = adata.obs["perturbation"].astype(str)
    adata.obs["perturbation"] = labels.where(labels == "control", "sg" + labels + "_1")
    adata.write_h5ad(tmp_path / "guides.h5ad")
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("dataset,h5ad,perturbation_type,gene_id_type,batch_col\nguides,guides.h5ad,CRISPRi,symbol,batch\n")
    result = nextflow(tmp_path, "-profile", "test", "--input", str(sheet), "--outdir", "results", check=False)
    _stopped_before_any_work(tmp_path, result, "VALIDATE_INPUT", ["do not name measured genes", "guide", "Fix:"])


def test_a_label_map_turns_guides_into_their_targets(tmp_path):
    """Guide-level labels plus the samplesheet's label_map: APPLY_LABEL_MAP relabels them by target,
    so VALIDATE_INPUT sees the 46 target perturbations (here it stops on --n_folds, which shows the
    relabelled count, before any heavy task)."""
    import anndata as ad

    adata = ad.read_h5ad(TEST_DATA / "sim_crispri.h5ad")
    labels = adata.obs["perturbation"].astype(str)
    guides = labels.where(labels == "control", "sg" + labels + np.where(np.arange(len(labels)) % 2, "_1", "_2"))
    adata.obs["perturbation"] = guides
    adata.write_h5ad(tmp_path / "guides.h5ad")
    pairs = sorted(set(zip(guides, labels)) - {("control", "control")})
    (tmp_path / "guides.csv").write_text("label,target\n" + "".join(f"{g},{t}\n" for g, t in pairs))
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("dataset,h5ad,label_map,perturbation_type,gene_id_type,batch_col\n"
                     "guides,guides.h5ad,guides.csv,CRISPRi,symbol,batch\n")
    result = nextflow(tmp_path, "-profile", "test", "--input", str(sheet), "--n_folds", "100", "--outdir", "results",
                      check=False)
    assert "APPLY_LABEL_MAP" in result.stdout
    _stopped_before_any_work(tmp_path, result, "VALIDATE_INPUT", ["100 folds but only 46 perturbations"])


def test_more_folds_than_perturbations_stop_before_any_work(tmp_path):
    result = nextflow(tmp_path, "-profile", "test", "--n_folds", "100", "--outdir", "results", check=False)
    _stopped_before_any_work(tmp_path, result, "VALIDATE_INPUT", ["n_folds", "--n_folds 46 or fewer"])


def test_a_checkpoint_directory_without_its_weights_stops_the_run_at_start(tmp_path):
    broken = tmp_path / "scgpt"
    shutil.copytree(TEST_DATA / "models" / "scgpt", broken)
    (broken / "best_model.pt").unlink()
    result = nextflow(tmp_path, "-profile", "test", "--scgpt_model", str(broken), "--outdir", "results", "-stub-run",
                      check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "--scgpt_model" in out and "best_model.pt" in out and "Fix:" in out
    assert "Submitted process" not in out


def test_bad_samplesheet_names_line_and_field(tmp_path):
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("dataset,h5ad,perturbation_type,gene_id_type\n"
                     f"sim,{TEST_DATA / 'sim_crispri.h5ad'},CRISPRko,symbol\n")
    result = nextflow(tmp_path, "-profile", "test", "--input", str(sheet), check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{sheet} line 2" in out and "perturbation_type" in out and "CRISPRi" in out


@pytest.mark.parametrize(("profiles", "expected"), [
    ("slurm,gpu", ["process.executor = 'slurm'", "process.'withLabel:process_gpu'.clusterOptions = '--gres=gpu:1'",
                   "process.'withLabel:process_gpu'.accelerator = 1",
                   "process.'withName:.*_GPU'.clusterOptions = '--gres=gpu:1'", "process.'withName:.*_GPU'.accelerator = 1"]),
    ("awsbatch,docker,gpu", ["process.executor = 'awsbatch'", "docker.enabled = true",
                             "process.'withLabel:process_gpu'.containerOptions = '--gpus all'"]),
    ("singularity", ["singularity.enabled = true", "process.'withLabel:process_gpu'.containerOptions = '--nv'"]),
    ("apptainer", ["apptainer.enabled = true", "process.'withLabel:process_gpu'.containerOptions = '--nv'"]),
    ("test", ["params.n_folds = 2", "process.executor = 'local'"]),
    ("test_full", ["params.n_folds = 3", "params.seeds = '0,1'", "process.executor = 'local'"]),
    ("test,gpu", ["params.gpu = true", "process.'withLabel:process_gpu'.accelerator = 1"]),
])
def test_profiles_resolve(profiles, expected):
    result = subprocess.run([NEXTFLOW, "config", "-flat", "-profile", profiles, str(ROOT)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for line in expected:
        assert line in result.stdout, (line, result.stdout[-2000:])


def test_schema_documents_every_parameter():
    """nextflow_schema.json and nextflow.config declare the same parameters with the same defaults."""
    import json

    result = subprocess.run([NEXTFLOW, "config", "-flat", str(ROOT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    config = {}
    for line in result.stdout.splitlines():
        if line.startswith("params."):
            key, value = line.removeprefix("params.").split(" = ", 1)
            config[key] = value.strip("'")
    schema = json.loads((ROOT / "nextflow_schema.json").read_text())
    props = {k: v for group in schema["$defs"].values() for k, v in group["properties"].items()}
    assert set(props) == set(config)
    for key, prop in props.items():
        if "default" in prop and key != "venv":
            assert str(prop["default"]).lower() == config[key].lower(), key


def test_gpu_flag_routes_only_torch_predictors_to_the_gpu_process(tmp_path):
    nextflow(tmp_path, "-profile", "test", "--gpu", "true", "--outdir", "results", "-stub-run", "-with-trace", "t.txt")
    trace = read_trace(tmp_path / "t.txt")
    gpu = trace.loc[trace["process"] == "PREDICT_GPU", "tag"]
    cpu = trace.loc[trace["process"] == "PREDICT", "tag"]
    torch = [n for n in names("predictor", gpu=True) if n not in names("predictor", needs=("cells",))]
    assert set(torch) == {"latent_additive", "decoder_only"}  # fine-tuned predictors have their own process
    # the stub writes one split: the torch predictors on each of {data_pca, random, 4 foundation-model tables}
    assert len(gpu) == 1 * (2 + len(GENE_MODELS))
    assert all(t.endswith(": latent_additive,decoder_only") for t in gpu)
    assert not any(name in t for t in cpu for name in torch)
    embed_gpu = trace.loc[trace["process"] == "EMBED_CELLS_GPU", "tag"]
    embed_cpu = trace.loc[trace["process"] == "EMBED_CELLS", "tag"]
    assert sorted(embed_gpu) == ["sim_crispri scvi"]
    assert sorted(embed_cpu) == ["sim_crispri pca", "sim_crispri random"]
    # Foundation models always run under process_gpu; the gpu profile gives them the accelerator.
    models = trace.loc[trace["process"].isin(["EMBED_CELLS_MODEL", "EXTRACT_GENE_EMBEDDINGS"]), "tag"]
    assert sorted(models) == sorted([f"sim_crispri {m}" for m in (*CELL_MODELS, *GENE_MODELS)])
    finetune = trace.loc[trace["process"] == "PREDICT_FINETUNE", "tag"]
    assert sorted(finetune) == sorted(f"sim_crispri scgpt_finetune/{v} unseen_perturbation seed0 fold0"
                                      for v in names("finetune_variant"))
    # EVALUATE waits for every prediction of its split, CPU and GPU alike.
    assert (trace["process"] == "EVALUATE").sum() == 1


def test_fine_tuning_checks_its_checkpoint_and_variants_before_running(tmp_path):
    result = nextflow(tmp_path, "-profile", "test", "--outdir", "results", "--scgpt_model", "", "--cell_embedders",
                      "pca", "--gene_models", "esm2", "-stub-run", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "'scgpt_finetune' needs --scgpt_model" in out and "Submitted process" not in out
    result = nextflow(tmp_path, "-profile", "test", "--outdir", "results", "--finetune_variants", "full,half",
                      "-stub-run", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "--finetune_variants: unknown half" in out and "no_pretraining" in out
    assert "Submitted process" not in out


def test_foundation_model_without_checkpoint_fails_before_running(tmp_path):
    result = nextflow(tmp_path, "-profile", "test", "--outdir", "results", "--geneformer_model", "", "-stub-run",
                      check=False)
    assert result.returncode != 0
    assert "needs --geneformer_model" in result.stdout + result.stderr
    assert not (tmp_path / "results" / "preprocess").exists()


def test_a_drug_screen_runs_with_molecule_embeddings_and_without_target_floors(tmp_path):
    """A simulated drug screen (the bundled well-known drugs, with doses and compound pairs): the molecule
    embeddings run, the floors defined only for genetic perturbations are left out and said to be."""
    from pertprobe.data.compounds import BUNDLED
    from pertprobe.data.simulate import SimulationConfig, simulate

    adata = simulate(SimulationConfig(perturbation_type="drug", compound_table=str(BUNDLED), n_double=6, n_genes=300,
                                      n_programs=6, program_size=20, cells_per_perturbation=30, n_control=300,
                                      seed=2)).to_anndata()
    adata.obs["dose"] = np.where(adata.obs["perturbation"] == "control", 0.0, 1.0)
    adata.write_h5ad(tmp_path / "drugs.h5ad")
    shutil.copy(BUNDLED, tmp_path / "compounds.csv")
    (tmp_path / "sheet.csv").write_text("dataset,h5ad,perturbation_type,gene_id_type,batch_col,dose_col,compound_table\n"
                                        "drugs,drugs.h5ad,drug,symbol,batch,dose,compounds.csv\n")
    (tmp_path / "drugs.config").write_text("params { gene_models = ''; known_relationships = ''; cell_embedders = 'pca' }\n")
    nextflow(tmp_path, "-profile", "test", "-c", str(tmp_path / "drugs.config"), "--input", str(tmp_path / "sheet.csv"),
             "--outdir", "results", "--predictors", "minimal", "-with-trace", "trace.txt")
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert set(board["model"]) >= {"no_change", "mean", "linear"}
    assert not set(board["model"]) & {"crispr_informed_mean", "target_only"}  # no target gene: left out, not faked
    assert set(board.loc[board["model"] == "linear", "embedding"]) == {"morgan", "rdkit_descriptors", "random"}
    assert set(board["task"]) == set(names("task"))  # the compound pairs make the combination task
    html = (tmp_path / "results" / "report.html").read_text()
    assert "Not defined for drug perturbations, so left out" in html and "crispr_informed_mean" in html
    trace = read_trace(tmp_path / "trace.txt")
    assert set(trace["status"]) == {"COMPLETED"} and not (trace["process"] == "EXTRACT_GENE_EMBEDDINGS").any()


def test_a_drug_screen_without_its_compound_table_stops_at_start(tmp_path):
    shutil.copy(TEST_DATA / "sim_crispri.h5ad", tmp_path / "d.h5ad")
    (tmp_path / "sheet.csv").write_text("dataset,h5ad,perturbation_type,gene_id_type\nd,d.h5ad,drug,symbol\n")
    result = nextflow(tmp_path, "-profile", "test", "--input", str(tmp_path / "sheet.csv"), "--outdir", "results",
                      check=False)
    assert result.returncode != 0 and "needs the samplesheet's compound_table" in result.stdout + result.stderr
