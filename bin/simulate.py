#!/usr/bin/env python3
"""Simulate a Perturb-seq screen with known ground truth."""

import click
from pertprobe.cli import command


@command("simulate.py", packages=["anndata", "numpy", "scipy"])
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output .h5ad (counts).")
@click.option("--truth", "truth_path", required=True, type=click.Path(dir_okay=False), help="Output ground-truth .h5ad.")
@click.option("--relationships", "relationships_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the known relationships (same-program target pairs) as TSV.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--perturbation-type", type=click.Choice(["CRISPRi", "CRISPRa", "KO", "drug"]), default="CRISPRi",
              show_default=True, help="drug: every compound of --compound-table, effects a function of its fingerprint.")
@click.option("--compound-table", default="", type=click.Path(dir_okay=False),
              help="drug: CSV compound,smiles (e.g. assets/compounds/well_known_drugs.csv).")
@click.option("--n-genes", default=500, show_default=True, type=click.IntRange(min=10))
@click.option("--n-programs", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--program-size", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--n-single", default=30, show_default=True, type=click.IntRange(min=2))
@click.option("--n-double", default=6, show_default=True, type=click.IntRange(min=0))
@click.option("--n-nonexpressed", default=10, show_default=True, type=click.IntRange(min=0))
@click.option("--cells-per-perturbation", default=80, show_default=True, type=click.IntRange(min=2))
@click.option("--n-control", default=600, show_default=True, type=click.IntRange(min=2))
@click.option("--n-batches", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-effect-sd", default=0.3, show_default=True, type=click.FloatRange(min=0))
@click.option("--n-covariates", default=1, show_default=True, type=click.IntRange(min=1),
              help="Cell lines (obs['cell_line']): every perturbation in every line, with line-specific responses.")
@click.option("--doses", default="", callback=lambda c, p, v: tuple(float(x) for x in v.split(",") if x.strip()),
              help="drug: comma-separated doses (obs['dose']), Hill-shaped responses.")
def main(out_path: str, truth_path: str, relationships_path: str | None, **params) -> None:
    """Write raw negative-binomial counts (OUT) and the true effects and programs (TRUTH)."""
    from pertprobe.data.simulate import SimulationConfig, simulate
    from pertprobe.io import write_h5ad, write_table

    sim = simulate(SimulationConfig(**params))
    write_h5ad(sim.to_anndata(), out_path)
    write_h5ad(sim.truth_anndata(), truth_path)
    if relationships_path:
        write_table(sim.program_relationships().set_index("gene_a"), relationships_path)
    click.echo(f"wrote {out_path}: {sim.counts.shape[0]} cells x {sim.counts.shape[1]} genes, "
               f"{sim.truth_obs['perturbation'].nunique()} perturbations in {len(sim.truth_obs)} conditions")


if __name__ == "__main__":
    main()
