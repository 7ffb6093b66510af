#!/usr/bin/env python3
"""Write the tiny randomly-initialised foundation-model checkpoints of the bundled test data.

Each adapter writes its model's released file layout with a vocabulary over the bundled dataset's
genes; the `test` profile runs the real loading and embedding code on them. Deterministic.
Usage: python scripts/make_test_models.py [--h5ad assets/test_data/sim_crispri.h5ad] [--out assets/test_data/models]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bin"))


def main() -> None:
    import anndata as ad
    from pertprobe.models.gene_ids import dataset_gene_ids
    from pertprobe.registry import foundation_models
    from pertprobe.testing import esm2 as tiny_esm2
    from pertprobe.testing import genept as tiny_genept
    from pertprobe.testing import writer
    from pertprobe.testing.geneformer import synthetic_ensembl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--h5ad", default=ROOT / "assets/test_data/sim_crispri.h5ad", type=Path)
    parser.add_argument("--out", default=ROOT / "assets/test_data/models", type=Path)
    parser.add_argument("--models", default=",".join(foundation_models()))
    args = parser.parse_args()

    adata = ad.read_h5ad(args.h5ad, backed="r")
    genes = dataset_gene_ids(adata.var, "symbol")
    adata.file.close()
    if args.out.exists():
        shutil.rmtree(args.out)
    models = [m for m in args.models.split(",") if m]
    # The bundled data is keyed by symbol: made-up Ensembl IDs, also written as the --gene_id_map
    # of the test profile, let the Ensembl-keyed CellPLM vocabulary cover it.
    args.out.mkdir(parents=True)
    genes = genes.assign(ensembl=[synthetic_ensembl(s) for s in genes["symbol"]])
    genes[["symbol", "ensembl"]].to_csv(args.out / "gene_id_map.tsv", sep="\t", index=False)
    for name in models:
        writer(name).write_tiny_checkpoint(args.out / name, genes, seed=0)
    # Side inputs of the gene models cover 90% of the genes, so the report shows partial coverage.
    tiny_esm2.write_tiny_fasta(args.out / "proteins.fasta", genes, seed=0, coverage=0.9)
    tiny_genept.write_tiny_descriptions(args.out / "gene_descriptions.tsv", genes, seed=0, coverage=0.9)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: tiny checkpoints for {', '.join(models)} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
