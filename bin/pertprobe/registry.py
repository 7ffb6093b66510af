"""The one list of names: every task, predictor, gene-embedding source, cell embedder, foundation model,
metric, alignment and cell-benchmark task is an `Entry` registered next to its implementation.

Implementations register themselves with the `register` decorator when their module is imported;
`entries()` imports every implementation module first, so a lookup never depends on what the
caller happened to import. `pertprobe registry` (bin/registry.py) writes the records as the JSON
the pipeline reads at start (assets/registry.json) and the tables of docs/registry.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

KINDS = {
    "task": "split strategy of the response benchmark: which perturbations train and which test (PREPROCESS)",
    "predictor": "response predictor, trained per split on the training perturbations (PREDICT)",
    "gene_embedding": "gene (perturbation) embedding source of the response benchmark (EMBED_GENES, "
                      "EXTRACT_GENE_EMBEDDINGS)",
    "cell_embedder": "cell embedder of the cell-embedding benchmark (EMBED_CELLS, EMBED_CELLS_MODEL)",
    "metric": "response metric per test perturbation (EVALUATE, CEILING)",
    "alignment": "alignment of a cell embedding on control cells (EVAL_CELL_EMBEDDINGS)",
    "cell_task": "task of the cell-embedding benchmark (EVAL_CELL_EMBEDDINGS)",
    "finetune_variant": "weight-loading or architecture control of a fine-tuned predictor (PREDICT_FINETUNE)",
}
PROFILES = ("minimal", "paper", "full")
# Modules whose import registers entries (the implementations, not a list of names).
IMPLEMENTATIONS = (
    "pertprobe.data.tasks", "pertprobe.response.predictors", "pertprobe.response.gene_embeddings",
    "pertprobe.response.molecule_embeddings", "pertprobe.response.metrics",
    "pertprobe.response.de_agreement",
    "pertprobe.cells.embedders", "pertprobe.cells.alignment", "pertprobe.cells.benchmark",
    "pertprobe.models.cellplm", "pertprobe.models.esm2", "pertprobe.models.geneformer",
    "pertprobe.models.genept", "pertprobe.models.scgpt", "pertprobe.models.uce",
    "pertprobe.models.finetune", "pertprobe.models.scgpt_finetune",
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    """One registered implementation and what the pipeline needs to know to route it."""

    kind: str
    name: str
    description: str
    source: str  # where the definition comes from (paper, library) — details in `docs`
    docs: str  # the page that defines it
    profiles: tuple[str, ...] = ("full",)  # named selections that include it (`minimal` ⊂ `paper` ⊂ `full`);
    # () = chosen by name only (a predictor that needs a user-supplied checkpoint)
    gpu: bool = False  # runs on an accelerator when one is requested (--gpu routes it to a *_GPU process)
    needs_embedding: bool = False  # predictor: trained on a gene embedding of the perturbations
    floor: bool = False  # predictor or cell embedder: a floor every model must beat
    shortcut: bool = False  # predictor: a floor that exploits a shortcut (target gene, neighbour, metadata)
    higher_is_better: bool | None = None  # metric: direction
    perfect: float | None = None  # metric: the value of a perfect prediction (the end of its range)
    ceiling_method: str | None = None  # metric: how its noise ceiling is estimated (response/bounds.py)
    needs: tuple[str, ...] = ()  # inputs besides the processed dataset: 'de_genes', 'test_metadata', ...
    perturbation_types: tuple[str, ...] = ()  # predictor / gene embedding: the types it is defined for (empty: all)
    checkpoint: bool = False  # foundation model: reads --<name>_model, runs in its own container
    model: str | None = None  # fine-tuned predictor: the foundation model whose --<model>_model it trains
    side_input: str | None = None  # foundation model: the parameter of its extra file (e.g. 'protein_fasta')
    side_option: str | None = None  # ... and the adapter keyword that receives it
    checkpoint_files: tuple[str, ...] = ()  # foundation model: globs its directory must match ('a|b': either)
    container: str = "base"  # image: containers/<container>/Dockerfile
    func: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    def record(self) -> dict[str, Any]:
        """The JSON-serialisable fields (everything except the function)."""
        out = asdict(self)
        out.pop("func")
        out["profiles"] = list(self.profiles)
        out["needs"] = list(self.needs)
        out["perturbation_types"] = list(self.perturbation_types)
        out["checkpoint_files"] = list(self.checkpoint_files)
        return out


_ENTRIES: dict[tuple[str, str], Entry] = {}


def register(kind: str, name: str, **fields: Any) -> Callable[[F], F]:
    """Decorator: record the decorated function as `kind` `name` (see `Entry` for the fields)."""
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}; choose from {', '.join(KINDS)}")
    profiles = fields.setdefault("profiles", ("full",))
    unknown = sorted(set(profiles) - set(PROFILES))
    nested = not profiles or ("full" in profiles and ("minimal" not in profiles or "paper" in profiles))
    if unknown or not nested:
        raise ValueError(f"{kind} {name}: profiles {profiles} must be nested subsets of {PROFILES} including 'full' "
                         "(or empty: chosen by name only)")

    def decorate(func: F) -> F:
        entry = Entry(kind=kind, name=name, func=func, **fields)
        previous = _ENTRIES.get((kind, name))
        if previous is not None and _qualname(previous.func) != _qualname(func):
            raise ValueError(f"{kind} {name!r} registered twice ({previous.func.__module__}, {func.__module__})")
        _ENTRIES[(kind, name)] = entry
        return func

    return decorate


def _qualname(obj: object) -> str:
    """A registered object's identity across re-imports (a function's or class's name, else its repr)."""
    return getattr(obj, "__qualname__", repr(obj))


def _load() -> None:
    for module in IMPLEMENTATIONS:
        importlib.import_module(module)


def entries(kind: str | None = None, **where: Any) -> list[Entry]:
    """Registered entries (of `kind`, matching every `field=value` of `where`) in IMPLEMENTATIONS order."""
    _load()
    chosen = [e for (k, _), e in _ENTRIES.items()
              if (kind is None or k == kind) and all(getattr(e, f) == v for f, v in where.items())]
    return sorted(chosen, key=_module_rank)  # stable: registration order within a module


def _module_rank(entry: Entry) -> int:
    """Entries list in IMPLEMENTATIONS order whatever was imported first (others last)."""
    module = getattr(entry.func, "__module__", None)
    return IMPLEMENTATIONS.index(module) if module in IMPLEMENTATIONS else len(IMPLEMENTATIONS)


def names(kind: str, **where: Any) -> list[str]:
    return [e.name for e in entries(kind, **where)]


def applies(entry: Entry, perturbation_type: str) -> bool:
    """Whether `entry` is defined for a dataset of `perturbation_type`."""
    return not entry.perturbation_types or perturbation_type in entry.perturbation_types


def require_applies(entry: Entry, perturbation_type: str) -> None:
    """A ValueError naming the types `entry` is defined for, unless it `applies` to `perturbation_type`."""
    if not applies(entry, perturbation_type):
        raise ValueError(f"{entry.kind} {entry.name!r} is defined for {', '.join(entry.perturbation_types)} "
                         f"perturbations only, not {perturbation_type}: leave it out (the pipeline does, and says "
                         "so in the report)")


def foundation_models() -> list[str]:
    """Every model that reads a checkpoint (--<name>_model), whatever it embeds."""
    return list(dict.fromkeys(e.name for e in entries() if e.checkpoint))


def get(kind: str, name: str) -> Entry:
    """The entry, or a ValueError that lists what is available."""
    _load()
    try:
        return _ENTRIES[(kind, name)]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; available: {', '.join(names(kind))}") from None


def select(kind: str, value: str | list[str] | tuple[str, ...]) -> list[str]:
    """Names chosen by a comma-separated list, where a profile name (minimal, paper, full) stands for
    its members; unknown names raise a ValueError listing the choices."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in filter(None, items):
        chosen = [e.name for e in entries(kind) if item in e.profiles] if item in PROFILES else [get(kind, item).name]
        out += [n for n in chosen if n not in out]
    return out


def as_json() -> dict[str, Any]:
    """Every entry as the JSON document the pipeline reads (kind -> name -> record)."""
    return {"kinds": KINDS, "profiles": list(PROFILES),
            "entries": {kind: {e.name: e.record() for e in entries(kind)} for kind in KINDS}}
