"""Chemical perturbations: the compound table (compound -> SMILES) a drug dataset names in its
samplesheet row, checked with RDKit, and the molecular features computed from it.

Table format: CSV/TSV with a header `compound,smiles`; one row per compound, named exactly as
the dataset's perturbation labels name it (a combination `A+B` needs both). RDKit is imported only
here, lazily, so genetic runs never load it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import read_text_columns
from .dataset import split_targets

COLUMNS = ("compound", "smiles")
MORGAN_RADIUS = 2  # ECFP4
MORGAN_BITS = 2048
BUNDLED = Path(__file__).resolve().parents[3] / "assets" / "compounds" / "well_known_drugs.csv"


def read_compound_table(path: str | Path) -> dict[str, str]:
    """compound -> SMILES; a bad table raises `InputError` naming the file, the row and the fix."""
    from rdkit import Chem, RDLogger

    path = Path(path)
    table = read_text_columns(path, COLUMNS)
    for line, (name, smiles) in enumerate(zip(table["compound"], table["smiles"], strict=True), start=2):
        if not name or not smiles:
            raise InputError(f"{path} line {line}", "compound/smiles", "empty compound name or SMILES",
                             "give every compound its SMILES (or drop the row)")
    dup = table["compound"][table["compound"].duplicated()]
    if len(dup):
        raise InputError(path, "compound", f"repeated compounds (e.g. {dup.iloc[0]!r})", "keep one row per compound")
    RDLogger.DisableLog("rdApp.*")  # the error below names the row; RDKit's own messages go to stderr otherwise
    for line, (name, smiles) in enumerate(zip(table["compound"], table["smiles"], strict=True), start=2):
        if Chem.MolFromSmiles(smiles) is None:
            raise InputError(f"{path} line {line}", "smiles", f"{smiles!r} of {name!r} is not a parsable SMILES",
                             "fix the SMILES (RDKit must parse it), e.g. from PubChem's canonical SMILES")
    return dict(zip(table["compound"], table["smiles"], strict=True))


def check_compounds(perturbations: list[str], table: dict[str, str], path: str | Path) -> None:
    """Every compound a perturbation label names has a SMILES in the table."""
    absent = sorted({c for p in perturbations for c in split_targets(p)} - set(table))
    if absent:
        raise InputError(path, "compound", f"{len(absent)} compound(s) of the dataset have no SMILES (e.g. "
                         f"{', '.join(map(repr, absent[:4]))})", "add a row compound,smiles for each, named as in "
                         "the dataset's perturbation labels")


def morgan_fingerprints(table: dict[str, str], radius: int = MORGAN_RADIUS, n_bits: int = MORGAN_BITS) -> pd.DataFrame:
    """Compounds x bits: RDKit's Morgan (circular, ECFP-like) bit vector of each molecule."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    names = sorted(table)
    bits = np.stack([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(table[n])) for n in names])
    return pd.DataFrame(bits.astype(np.float64), index=pd.Index(names, name="compound"),
                        columns=[f"bit{i}" for i in range(n_bits)])


def physchem_descriptors(table: dict[str, str]) -> pd.DataFrame:
    """Compounds x RDKit's 2D descriptors (`Descriptors.CalcMolDescriptors`), descriptors that are
    not finite for every compound dropped."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    names = sorted(table)
    rows = [Descriptors.CalcMolDescriptors(Chem.MolFromSmiles(table[n])) for n in names]
    frame = pd.DataFrame(rows, index=pd.Index(names, name="compound")).astype(np.float64)
    return frame.loc[:, np.isfinite(frame.to_numpy()).all(axis=0)]
