"""Foundation models through the commands the pipeline runs: embed_cells.py and extract_gene_embeddings.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from pertprobe.errors import InputError
from pertprobe.models.checkpoint import directory_hash
from pertprobe.models.gene_ids import GeneIdMap, dataset_gene_ids, target_gene_ids
from pertprobe.response.gene_embeddings import embedding_metadata, read_embedding
from pertprobe.testing import esm2 as tiny_esm2
from pertprobe.testing import geneformer as tiny_geneformer
from pertprobe.testing import genept as tiny_genept
from pertprobe.testing import uce as tiny_uce

from ...conftest import BIN


def run(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, small_sim):
    """A small simulated input, its processed dataset, and tiny checkpoints over its genes."""
    root = tmp_path_factory.mktemp("models")
    small_sim.to_anndata().write_h5ad(root / "d.h5ad")
    result = run(BIN / "preprocess.py", "--h5ad", "d.h5ad", "--batch-col", "batch", "--prefix", "d", "--n-hvg", "50",
                 "--n-folds", "3", "--seeds", "0", "--min-genes-per-cell", "20", cwd=root)
    assert result.returncode == 0, result.stderr
    genes = dataset_gene_ids(ad.read_h5ad(root / "d.h5ad", backed="r").var, "symbol")
    tiny_geneformer.write_tiny_checkpoint(root / "geneformer", genes, seed=0)
    tiny_uce.write_tiny_checkpoint(root / "uce", genes, seed=0)
    tiny_esm2.write_tiny_checkpoint(root / "esm2", genes, seed=0)
    tiny_esm2.write_tiny_fasta(root / "p.fasta", genes, seed=0, coverage=0.9)
    tiny_genept.write_tiny_checkpoint(root / "genept", genes, seed=0)
    tiny_genept.write_tiny_descriptions(root / "g.tsv", genes, seed=0, coverage=0.9)
    return root


@pytest.mark.parametrize("model", ["geneformer", "uce"])
def test_embed_cells_with_a_foundation_model_follows_the_embedding_contract(workdir, model):
    out = f"{model}.h5ad"
    result = run(BIN / "embed_cells.py", "--h5ad", "d.processed.h5ad", "--counts-h5ad", "d.h5ad", "--batch-col", "batch",
                 "--model", model, "--checkpoint", model, "--batch-size", "8", "--out", out, cwd=workdir)
    assert result.returncode == 0, result.stderr
    processed = ad.read_h5ad(workdir / "d.processed.h5ad", backed="r")
    assert f"{model}: cells " in result.stderr and f"{processed.n_obs}/{processed.n_obs} cells (100%)" in result.stderr
    emb = ad.read_h5ad(workdir / out)
    assert list(emb.obs_names) == list(processed.obs_names)  # QC-passing cells, processed order
    assert (emb.obs["perturbation"].to_numpy() == processed.obs["perturbation"].to_numpy()).all()
    assert np.isfinite(emb.X).all() and emb.X.std(axis=0).max() > 0
    info = emb.uns["embedding"]
    assert info["model"] == model and info["checkpoint_hash"] == directory_hash(workdir / model)
    assert info["n_tensors_loaded"] > 0 and info["gene_coverage"]["fraction"] == 1.0
    # all input genes, not the processed gene selection
    assert info["gene_coverage"]["n_genes"] == ad.read_h5ad(workdir / "d.h5ad", backed="r").n_vars > processed.n_vars


def test_embed_cells_rejects_unknown_model_options_and_missing_checkpoint(workdir):
    bad = run(BIN / "embed_cells.py", "--h5ad", "d.processed.h5ad", "--counts-h5ad", "d.h5ad", "--model", "geneformer",
              "--checkpoint", "geneformer", "--model-option", "nonsense=1", "--out", "x.h5ad", cwd=workdir)
    assert bad.returncode == 2 and "unknown model option(s) nonsense" in bad.stderr and "emb_layer" in bad.stderr
    missing = run(BIN / "embed_cells.py", "--h5ad", "d.processed.h5ad", "--model", "uce", "--out", "x.h5ad", cwd=workdir)
    assert missing.returncode == 2 and "needs --checkpoint" in missing.stderr
    assert not (workdir / "x.h5ad").exists()


def test_too_little_gene_coverage_fails_with_the_fix(workdir):
    ids = pd.DataFrame({"symbol": [f"OTHER{i}" for i in range(5)], "ensembl": ""}, index=[f"OTHER{i}" for i in range(5)])
    tiny_geneformer.write_tiny_checkpoint(workdir / "foreign", ids, seed=0)
    result = run(BIN / "embed_cells.py", "--h5ad", "d.processed.h5ad", "--counts-h5ad", "d.h5ad", "--model",
                 "geneformer", "--checkpoint", "foreign", "--out", "f.h5ad", cwd=workdir)
    assert result.returncode == 2
    assert "covers 0/" in result.stderr and "--gene-id-map" in result.stderr
    assert not (workdir / "f.h5ad").exists()


@pytest.mark.parametrize(("model", "side"), [("esm2", ["--side-input", "p.fasta"]), ("genept", ["--side-input", "g.tsv"]),
                                             ("geneformer", [])])
def test_gene_tables_cover_the_perturbation_targets(workdir, model, side):
    out = f"{model}.parquet"
    result = run(BIN / "extract_gene_embeddings.py", "--h5ad", "d.processed.h5ad", "--counts-h5ad", "d.h5ad",
                 "--model", model, "--checkpoint", model, *side, "--out", out, cwd=workdir)
    assert result.returncode == 0, result.stderr
    table = read_embedding(workdir / out)
    perts = ad.read_h5ad(workdir / "d.processed.h5ad", backed="r").obs["perturbation"].astype(str).unique()
    targets = {t for p in perts if p != "control" for t in p.split("+")}
    assert set(table.index) <= targets
    meta = embedding_metadata(workdir / out)
    assert meta["model"] == model and meta["targets_covered"] == {"n_targets": len(targets), "n_covered": len(table)}
    if model == "geneformer":
        assert set(table.index) == targets  # the tiny vocabulary holds every gene
    else:
        assert 0.5 * len(targets) <= len(table) < len(targets)  # side inputs cover 90% of the genes


@pytest.mark.slow
def test_contextual_geneformer_gene_table_is_keyed_by_target_label(workdir):
    for kind in ("token", "contextual"):  # this test's own token table: no dependence on test order
        result = run(BIN / "extract_gene_embeddings.py", "--h5ad", "d.processed.h5ad", "--counts-h5ad", "d.h5ad",
                     "--model", "geneformer", "--checkpoint", "geneformer", "--model-option", f"kind={kind}",
                     "--out", f"{kind}.parquet", cwd=workdir)
        assert result.returncode == 0, result.stderr
    table, token = read_embedding(workdir / "contextual.parquet"), read_embedding(workdir / "token.parquet")
    assert set(table.index) <= set(token.index) and len(table) > 0
    assert not np.allclose(table.to_numpy(), token.loc[table.index].to_numpy())


def test_gene_id_map_fills_and_targets_resolve(tmp_path):
    var = pd.DataFrame({"gene_symbol": ["TP53", "MYC"]}, index=["ENSG00000141510.17", "ENSG00000136997"])
    genes = dataset_gene_ids(var, "ensembl")
    assert list(genes["ensembl"]) == ["ENSG00000141510", "ENSG00000136997"] and list(genes["symbol"]) == ["TP53", "MYC"]
    id_map = GeneIdMap.from_pairs([("KRAS", "ENSG00000133703")])
    targets = target_gene_ids(["control", "TP53+KRAS", "ENSG00000000003"], "control", genes, id_map)
    assert targets.loc["TP53", "ensembl"] == "ENSG00000141510"  # measured gene, found by symbol
    assert targets.loc["KRAS", "ensembl"] == "ENSG00000133703"  # unmeasured, filled from the map
    assert targets.loc["ENSG00000000003", "symbol"] == "" and "control" not in targets.index
    bad = tmp_path / "map.csv"
    bad.write_text("gene,ensembl\nTP53,ENSG00000141510\n")
    with pytest.raises(InputError, match="column 'symbol'"):
        GeneIdMap.from_table(bad)


def checkpoint_contents(directory: Path) -> dict[str, object]:
    """What a checkpoint directory holds, without the library-version stamps writers add.

    JSON files minus `*_version` keys (e.g. config.json's transformers_version), safetensors and torch
    files as their tensors (name, dtype, shape, values), everything else as bytes. A library upgrade
    that changes only a stamp or a container format leaves this unchanged; a changed weight does not.
    """
    import hashlib
    import json

    import torch
    from safetensors.numpy import load_file

    def canonical(value):
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in sorted(value.items()) if not str(k).endswith("_version")}
        if isinstance(value, (list, tuple)):
            return [canonical(v) for v in value]
        if isinstance(value, torch.Tensor):
            return [str(value.dtype), list(value.shape), hashlib.sha256(value.contiguous().numpy().tobytes()).hexdigest()]
        return value

    out: dict[str, object] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = str(path.relative_to(directory))
        if path.suffix == ".json":
            out[name] = canonical(json.loads(path.read_text()))
        elif path.suffix == ".safetensors":
            out[name] = {k: [str(v.dtype), list(v.shape), hashlib.sha256(v.tobytes()).hexdigest()]
                         for k, v in sorted(load_file(path).items())}
        elif path.suffix in (".pt", ".torch", ".ckpt"):
            out[name] = canonical(torch.load(path, map_location="cpu", weights_only=True))
        else:
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_checkpoint_contents_ignore_version_stamps_but_not_weights(tmp_path):
    import json
    import shutil

    from ...conftest import TEST_DATA

    copy = tmp_path / "geneformer"
    shutil.copytree(TEST_DATA / "models" / "geneformer", copy)
    before = checkpoint_contents(copy)
    config = json.loads((copy / "config.json").read_text())
    config["transformers_version"] = "99.0.0"
    (copy / "config.json").write_text(json.dumps(config, indent=1))
    assert checkpoint_contents(copy) == before
    config["num_hidden_layers"] += 1
    (copy / "config.json").write_text(json.dumps(config))
    assert checkpoint_contents(copy) != before


def test_bundled_tiny_checkpoints_match_their_generator(tmp_path):
    """assets/test_data/models is what `make test-models` writes (deterministic, in the released layouts)."""
    from ...conftest import ROOT, TEST_DATA

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_test_models.py"), "--out", str(tmp_path / "m")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert checkpoint_contents(tmp_path / "m") == checkpoint_contents(TEST_DATA / "models")


def test_predict_finetune_writes_stable_predictions_that_evaluate_scores(workdir, small_sim):
    """predict_finetune.py twice: the same prediction bytes (timings only in training.csv), scored by
    evaluate.py like any prediction; a bad variant is refused with the choices."""
    from pertprobe.io import read_table, read_table_metadata
    from pertprobe.testing.scgpt import write_tiny_checkpoint

    genes = dataset_gene_ids(ad.read_h5ad(workdir / "d.processed.h5ad", backed="r").var, "symbol")
    write_tiny_checkpoint(workdir / "scgpt", genes, seed=0)
    args = ["--h5ad", "d.processed.h5ad", "--pseudobulk", "d.pseudobulk.parquet", "--splits", "d.splits.csv",
            "--seed", "0", "--fold", "1", "--predictor", "scgpt_finetune", "--variant", "no_transformer",
            "--checkpoint", "scgpt", "--dataset", "d", "--epochs", "2", "--max-steps", "3", "--batch-size", "8",
            "--pool-size", "8", "--max-cells-per-perturbation", "8"]
    stem = "d.scgpt_finetune.no_transformer.unseen_perturbation.seed0.fold1"
    outputs = []
    for out in ("a", "b"):
        result = run(BIN / "predict_finetune.py", *args, "--out-dir", out, cwd=workdir)
        assert result.returncode == 0, result.stderr
        outputs.append((workdir / out / f"{stem}.prediction.parquet").read_bytes())
    assert outputs[0] == outputs[1]
    meta = read_table_metadata(workdir / "a" / f"{stem}.prediction.parquet")
    assert meta["model"] == "scgpt_finetune" and meta["embedding"] == "no_transformer"
    assert meta["info"]["loaded_groups"] == "input_encoder" and meta["info"]["steps"] == 3
    record = read_table(workdir / "a" / f"{stem}.training.csv")
    assert record["variant"].tolist() == ["no_transformer"] and record["n_tensors_loaded"].item() > 0
    result = run(BIN / "evaluate.py", "--prediction", f"a/{stem}.prediction.parquet", "--pseudobulk",
                 "d.pseudobulk.parquet", "--de", "d.de.parquet", "--splits", "d.splits.csv", "--metrics", "minimal",
                 "--out", "m.parquet", cwd=workdir)
    assert result.returncode == 0, result.stderr
    scored = read_table(workdir / "m.parquet")
    assert set(scored["embedding"]) == {"no_transformer"} and scored["value"].notna().any()
    at = args.index("--variant")
    bad = run(BIN / "predict_finetune.py", *args[:at], "--variant", "half", *args[at + 2:], cwd=workdir)
    assert bad.returncode != 0 and "'half' is not one of" in bad.stderr and "no_pretraining" in bad.stderr
