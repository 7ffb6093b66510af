"""Synthetic Perturb-seq data with known ground truth.

Model (all effects are log fold-changes on a gene's expected expression):

* genes have base expression fractions drawn log-normally; a few are not expressed at all;
* genes are grouped into programs; each program has a fixed loading vector over its genes, so
  perturbing any regulator of a program moves that program's genes together ("related" genes);
* a perturbation of regulator ``r`` in program ``k`` adds ``scale_r * loading_k`` plus a small
  response shared by all effective perturbations (the reason mean baselines are strong), scaled
  by the perturbation's efficacy class (strong, weak, no downstream effect);
* CRISPRi/KO multiply the target's expression by ``knockdown_fraction``; CRISPRa by
  ``activation_fold``;
* double perturbations ``A+B`` add both single effects, some with an extra interaction term;
* drugs (``perturbation_type='drug'``, compounds from ``compound_table``) have no target gene: a
  compound moves each program by a fixed random linear function of its Morgan fingerprint bits, so
  structurally similar compounds act alike (the signal a fingerprint embedding can carry), plus the
  shared response; doubles are compound pairs;
* perturbations of non-expressed genes change nothing (a null set);
* covariates (``n_covariates`` > 1, cell lines in ``obs['cell_line']``): every perturbation and the
  controls in every line; a line shifts baseline expression gene-wise and scales each program's
  response (shared response x line-specific gain), plus a line-specific response of the perturbation's
  own programme's genes — so a perturbation's mean over the other lines predicts it, imperfectly;
* doses (``doses``, drugs): every compound at every dose, its effect times a Hill curve
  d^h / (EC50^h + d^h) with a per-compound EC50 log-uniform over the dose range (``obs['dose']``);
* batches add a gene-wise log fold-change and a library-size shift;
* counts are negative binomial (gamma-Poisson) around ``library_size * expression``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

SIMULATED_TYPES = ("CRISPRi", "CRISPRa", "KO", "drug")


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of the simulator; the defaults give the bundled test dataset's size."""

    n_genes: int = 500
    n_programs: int = 5
    program_size: int = 30
    n_single: int = 30
    n_nonexpressed: int = 10
    n_double: int = 6
    cells_per_perturbation: int = 80
    n_control: int = 600
    n_batches: int = 2
    perturbation_type: str = "CRISPRi"
    knockdown_fraction: float = 0.15
    activation_fold: float = 4.0
    frac_weak: float = 0.15
    frac_no_effect: float = 0.1
    weak_scale: float = 0.25
    program_effect_sd: float = 0.8
    shared_response_sd: float = 0.1
    interaction_sd: float = 0.5
    batch_effect_sd: float = 0.3
    frac_nonexpressed_genes: float = 0.04
    dispersion: float = 5.0
    library_size: float = 4000.0
    control_label: str = "control"
    compound_table: str = ""  # drug: CSV compound,smiles (data/compounds.py); every compound is simulated
    drug_effect_sd: float = 1.0  # drug: SD of a compound's program scores, in units of the program loadings
    n_covariates: int = 1  # cell lines; > 1 simulates every perturbation in every line
    covariate_gain_sd: float = 0.4  # SD of a line's log gain on each program's response
    covariate_specific_sd: float = 0.3  # SD of a line-specific response on the perturbation's program genes
    covariate_baseline_sd: float = 0.3  # SD of a line's gene-wise baseline log shift
    doses: tuple[float, ...] = ()  # drug: doses each compound is simulated at (empty: one, full effect)
    hill_slope: float = 1.0  # drug: Hill coefficient of the dose response
    seed: int = 0

    def __post_init__(self) -> None:
        if self.perturbation_type not in SIMULATED_TYPES:
            raise ValueError(f"perturbation_type must be one of {SIMULATED_TYPES}, got {self.perturbation_type!r}")
        if self.n_programs * self.program_size > self.n_genes:
            raise ValueError("n_programs * program_size must not exceed n_genes")
        if self.perturbation_type == "drug" and not self.compound_table:
            raise ValueError("drug simulations need compound_table (a CSV compound,smiles)")
        if self.n_covariates < 1:
            raise ValueError("n_covariates must be at least 1")
        if self.doses and (self.perturbation_type != "drug" or min(self.doses) <= 0):
            raise ValueError("doses are for drug simulations and must be positive")
        if self.n_double > 0 and self.n_single < 2:
            raise ValueError("double perturbations need at least two single perturbations")
        if self.n_single > self.n_programs * self.program_size:
            raise ValueError("n_single must not exceed the number of program genes")


@dataclass
class SimulatedPerturbSeq:
    """The simulated counts and the ground truth that generated them."""

    counts: sp.csr_matrix
    obs: pd.DataFrame
    var: pd.DataFrame
    truth_obs: pd.DataFrame
    truth_lfc: np.ndarray
    config: SimulationConfig

    def _config_record(self) -> dict:
        """The configuration as uns can store it (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()}

    def to_anndata(self):
        """The dataset as an AnnData satisfying pertprobe's input contract."""
        import anndata as ad

        adata = ad.AnnData(X=self.counts, obs=self.obs, var=self.var)
        adata.uns["simulation"] = self._config_record()
        return adata

    def truth_anndata(self):
        """Ground truth: perturbations x genes true log fold-changes, program membership in var."""
        import anndata as ad

        truth = ad.AnnData(X=self.truth_lfc.astype(np.float32), obs=self.truth_obs, var=self.var.copy())
        truth.uns["simulation"] = self._config_record()
        return truth

    def program_relationships(self) -> pd.DataFrame:
        """Known relationships (gene_a, gene_b, source='program'): every pair of single-perturbation
        targets that regulate the same gene program."""
        singles = self.truth_obs[self.truth_obs["target_program"] >= 0]
        rows = []
        for _, group in singles.groupby("target_program", sort=True):
            genes = sorted(group["perturbation"].unique())
            rows += [(a, b, "program") for i, a in enumerate(genes) for b in genes[i + 1:]]
        return pd.DataFrame(rows, columns=["gene_a", "gene_b", "source"])


def _drug_effects(config: SimulationConfig, loadings: np.ndarray, shared: np.ndarray,
                  rng: np.random.Generator) -> tuple[list[dict], list[np.ndarray]]:
    """Every compound of the table (and `n_double` seeded compound pairs, additive with an interaction
    term on every second): program scores = its Morgan bits times a fixed Gaussian matrix, scaled to
    `drug_effect_sd` over compounds."""
    from .compounds import morgan_fingerprints, read_compound_table

    table = read_compound_table(config.compound_table)
    bits = morgan_fingerprints(table)
    weights = np.random.default_rng([config.seed, 17]).normal(size=(bits.shape[1], config.n_programs))
    scores = bits.to_numpy() @ weights
    scores = config.drug_effect_sd * (scores - scores.mean(axis=0)) / scores.std(axis=0).clip(min=1e-12)
    effect = {name: s @ loadings + shared for name, s in zip(bits.index, scores, strict=True)}
    rows = [{"targets": name, "class": "drug", "efficacy": 1.0, "target_program": -1} for name in bits.index]
    effects = list(effect.values())
    names = list(bits.index)
    pairs: set[tuple[str, str]] = set()
    while len(pairs) < min(config.n_double, len(names) * (len(names) - 1) // 2):
        a, b = sorted(rng.choice(names, size=2, replace=False).tolist())
        pairs.add((a, b))
    for i, (a, b) in enumerate(sorted(pairs)):
        lfc = effect[a] + effect[b] - shared
        if i % 2 == 1:
            lfc = lfc + rng.normal(0.0, config.interaction_sd, size=len(lfc)) * (loadings != 0).any(axis=0)
        rows.append({"targets": f"{a}+{b}", "class": "drug_double", "efficacy": 1.0, "target_program": -1})
        effects.append(lfc)
    return rows, effects


def _conditions(config: SimulationConfig, truth_obs: pd.DataFrame, truth_lfc: np.ndarray,
                program: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Each perturbation in each line (and, for drugs, at each dose): its truth row and effect, and each
    line's baseline log shift. One line and no doses return the perturbations unchanged (no draws)."""
    g = truth_lfc.shape[1]
    if config.n_covariates == 1 and not config.doses:
        return truth_obs, truth_lfc, np.zeros((1, g))
    rng = np.random.default_rng([config.seed, 23])  # its own stream: the default screen stays as it was
    lines = float(config.n_covariates > 1)  # one line: no line effects (the same draws, scaled to zero)
    baseline = rng.normal(0.0, lines * config.covariate_baseline_sd, size=(config.n_covariates, g))
    gain = np.exp(rng.normal(0.0, lines * config.covariate_gain_sd, size=(config.n_covariates, config.n_programs)))
    in_program = program >= 0
    gene_gain = np.ones((config.n_covariates, g))
    gene_gain[:, in_program] = gain[:, program[in_program]]
    specific = lines * config.covariate_specific_sd * in_program
    doses = config.doses or (None,)
    low, high = (min(doses), max(doses)) if config.doses else (1.0, 1.0)
    rows, effects = [], []
    for (_, row), lfc in zip(truth_obs.iterrows(), truth_lfc, strict=True):
        moved = np.abs(lfc) > 0
        ec50 = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if config.doses else None
        for c in range(config.n_covariates):
            line_lfc = lfc * gene_gain[c] + rng.normal(0.0, 1.0, size=g) * specific * moved
            for d in doses:
                scale = 1.0 if d is None else d ** config.hill_slope / (ec50 ** config.hill_slope + d ** config.hill_slope)
                rows.append({**row.to_dict(), "cell_line": f"line{c}", "dose": 0.0 if d is None else float(d),
                             "ec50": np.nan if ec50 is None else ec50})
                effects.append(line_lfc * scale)
    out = pd.DataFrame(rows)
    out.index = pd.Index([f"{r['perturbation']}|{r['cell_line']}|{r['dose']:g}" for _, r in out.iterrows()])
    return out, np.vstack(effects), baseline


def simulate(config: SimulationConfig) -> SimulatedPerturbSeq:
    """Simulate a Perturb-seq screen from `config` (deterministic in `config.seed`)."""
    rng = np.random.default_rng(config.seed)
    g = config.n_genes

    # Genes: expression fractions, programs and identifiers.
    base = rng.lognormal(mean=0.0, sigma=1.0, size=g)
    n_program_genes = config.n_programs * config.program_size
    program = np.full(g, -1, dtype=np.int64)
    program[:n_program_genes] = np.repeat(np.arange(config.n_programs), config.program_size)
    n_off = max(config.n_nonexpressed, int(round(config.frac_nonexpressed_genes * g)))
    nonprogram = np.arange(n_program_genes, g)
    if n_off > len(nonprogram):
        raise ValueError("not enough genes outside programs to hold the non-expressed genes")
    off_genes = rng.choice(nonprogram, size=n_off, replace=False)
    base[off_genes] = 0.0
    base = base / base.sum()
    var = pd.DataFrame(
        {
            "gene_symbol": [f"GENE{i:04d}" for i in range(g)],
            "gene_id": [f"ENSG9{i:010d}" for i in range(g)],
            "program": program,
            "expressed": base > 0,
            "base_fraction": base,
        }
    )
    var.index = pd.Index(var["gene_symbol"].to_numpy(), name=None)

    loadings = np.zeros((config.n_programs, g))
    for k in range(config.n_programs):
        members = program == k
        loadings[k, members] = rng.normal(0.0, config.program_effect_sd, size=members.sum())
    shared = rng.normal(0.0, config.shared_response_sd, size=g)
    shared[base == 0] = 0.0

    # Single perturbations: regulators spread over programs, then efficacy classes.
    program_genes = np.arange(n_program_genes)
    regulators = np.sort(rng.choice(program_genes, size=config.n_single, replace=False))
    # Regulators are co-expressed with their program (positive loadings, as members of one complex).
    loadings[program[regulators], regulators] = config.program_effect_sd * rng.uniform(0.5, 1.5, size=len(regulators))
    n_weak = int(round(config.frac_weak * config.n_single))
    n_none = int(round(config.frac_no_effect * config.n_single))
    classes = np.array(["strong"] * (config.n_single - n_weak - n_none) + ["weak"] * n_weak + ["no_effect"] * n_none)
    rng.shuffle(classes)
    efficacy = {"strong": 1.0, "weak": config.weak_scale, "no_effect": 0.0}

    target_lfc = {
        "CRISPRi": np.log(config.knockdown_fraction),
        "KO": np.log(config.knockdown_fraction),
        "CRISPRa": np.log(config.activation_fold),
    }.get(config.perturbation_type, 0.0)

    rows: list[dict] = []
    effects: list[np.ndarray] = []
    single_effect: dict[int, np.ndarray] = {}
    if config.perturbation_type == "drug":
        rows, effects = _drug_effects(config, loadings, shared, rng)
        regulators, classes = regulators[:0], classes[:0]
    for gene, cls in zip(regulators, classes, strict=True):
        eff = efficacy[cls]
        scale = rng.uniform(0.6, 1.4)
        lfc = eff * (scale * loadings[program[gene]] + shared)
        lfc[gene] = target_lfc
        single_effect[int(gene)] = lfc
        rows.append({"targets": var.index[gene], "class": cls, "efficacy": eff, "target_program": int(program[gene])})
        effects.append(lfc)

    for gene in np.sort(off_genes[: 0 if config.perturbation_type == "drug" else config.n_nonexpressed]):
        lfc = np.zeros(g)
        lfc[gene] = target_lfc
        rows.append({"targets": var.index[gene], "class": "non_expressed", "efficacy": 0.0, "target_program": -1})
        effects.append(lfc)

    strong_regs = [int(r) for r, c in zip(regulators, classes, strict=True) if c != "no_effect"]
    pairs: set[tuple[int, int]] = set()
    while regulators.size and len(pairs) < config.n_double:
        a, b = sorted(rng.choice(strong_regs, size=2, replace=False).tolist())
        pairs.add((a, b))
    for i, (a, b) in enumerate(sorted(pairs)):
        lfc = single_effect[a] + single_effect[b]
        cls = "double_additive"
        if i % 2 == 1:
            cls = "double_interaction"
            mask = (program == program[a]) | (program == program[b])
            lfc[mask] += rng.normal(0.0, config.interaction_sd, size=mask.sum())
        lfc[a], lfc[b] = target_lfc, target_lfc
        name = f"{var.index[a]}+{var.index[b]}"
        rows.append({"targets": name, "class": cls, "efficacy": 1.0, "target_program": -1})
        effects.append(lfc)

    truth_obs = pd.DataFrame(rows)
    truth_obs.index = pd.Index(truth_obs["targets"].to_numpy(), name=None)
    truth_obs = truth_obs.rename(columns={"targets": "perturbation"})
    truth_lfc = np.vstack(effects)

    truth_obs, truth_lfc, baseline = _conditions(config, truth_obs, truth_lfc, program)

    # Cells: controls first (in every line), then each condition; batches assigned at random.
    lines = [f"line{c}" for c in range(config.n_covariates)]
    n_line_controls = np.diff(np.linspace(0, config.n_control, config.n_covariates + 1).round().astype(int))
    labels, lfc_rows, cell_line, dose = [], [], [], []
    for line, n in zip(lines, n_line_controls, strict=True):
        labels += [config.control_label] * n
        lfc_rows += [None] * n
        cell_line += [line] * n
        dose += [0.0] * n
    for lfc, (_, row) in zip(truth_lfc, truth_obs.iterrows(), strict=True):
        n = max(2, int(rng.poisson(config.cells_per_perturbation)))
        labels += [row["perturbation"]] * n
        lfc_rows += [lfc] * n
        cell_line += [row.get("cell_line", lines[0])] * n
        dose += [row.get("dose", 0.0)] * n
    n_cells = len(labels)
    line_of = np.asarray([int(x.removeprefix("line")) for x in cell_line])
    batch = rng.integers(0, config.n_batches, size=n_cells)
    batch_lfc = rng.normal(0.0, config.batch_effect_sd, size=(config.n_batches, g))
    batch_depth = rng.uniform(0.7, 1.3, size=config.n_batches)
    depth = config.library_size * batch_depth[batch] * rng.lognormal(0.0, 0.3, size=n_cells)

    zero = np.zeros(g)
    mats = []
    chunk = 2048
    for start in range(0, n_cells, chunk):
        stop = min(start + chunk, n_cells)
        lfc = np.vstack([zero if r is None else r for r in lfc_rows[start:stop]])
        shift = batch_lfc[batch[start:stop]] + baseline[line_of[start:stop]]
        mu = depth[start:stop, None] * base[None, :] * np.exp(lfc + shift)
        lam = rng.gamma(shape=config.dispersion, scale=mu / config.dispersion)
        mats.append(sp.csr_matrix(rng.poisson(lam).astype(np.float32)))
    counts = sp.vstack(mats, format="csr")

    order = rng.permutation(n_cells)
    counts = counts[order]
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(np.asarray(labels, dtype=object)[order]),
            "batch": pd.Categorical([f"batch{b}" for b in batch[order]]),
        },
        index=pd.Index([f"cell{i:06d}" for i in range(n_cells)]),
    )
    if config.n_covariates > 1:
        obs["cell_line"] = pd.Categorical(np.asarray(cell_line, dtype=object)[order])
    if config.doses:
        obs["dose"] = np.asarray(dose, dtype=np.float64)[order]
    return SimulatedPerturbSeq(counts, obs, var, truth_obs, truth_lfc, config)
