"""Shared click plumbing for the `bin/*.py` commands: version flags, versions.yml, clean errors."""

from __future__ import annotations

import functools
import logging
import platform
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import click

from . import __version__
from .errors import InputError
from .io import atomic_path


def package_versions(packages: Sequence[str]) -> dict[str, str]:
    """Versions of pertprobe, Python and the named distributions (those installed)."""
    out = {"pertprobe": __version__, "python": platform.python_version()}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_versions_yml(path: str, process: str, packages: Sequence[str]) -> None:
    """Write an nf-core style versions.yml for `process`."""
    lines = [f'"{process}":'] + [f"    {k}: {v}" for k, v in package_versions(packages).items()]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


class _Command(click.Command):
    """A click command that turns `InputError` into a clean one-line error (exit status 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as err:
            raise click.UsageError(str(err), ctx) from err


def log_progress() -> None:
    """Send pertprobe's progress messages (logger 'pertprobe', level INFO) to stderr with the time of
    day: Nextflow keeps them in each task's .command.log."""
    logger = logging.getLogger("pertprobe")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def command(prog: str, packages: Sequence[str] = ()) -> Callable[[Callable[..., Any]], click.Command]:
    """Decorate a function as a pertprobe command with `--version`, `--versions-yml` and progress logs."""

    def decorate(func: Callable[..., Any]) -> click.Command:
        @functools.wraps(func)
        def wrapper(*args: Any, versions_yml: str | None, task_process: str, **kwargs: Any) -> Any:
            log_progress()
            result = func(*args, **kwargs)
            if versions_yml:
                write_versions_yml(versions_yml, task_process, packages)
            return result

        wrapped = click.option(
            "--task-process", default=prog.upper(), show_default=True, help="Process name used as the versions.yml key."
        )(wrapper)
        wrapped = click.option(
            "--versions-yml", type=click.Path(dir_okay=False), default=None,
            help="Also write the versions of the software used to this file (nf-core versions.yml).",
        )(wrapped)
        wrapped = click.version_option(__version__, prog_name=prog)(wrapped)
        return click.command(cls=_Command, context_settings={"help_option_names": ["-h", "--help"]})(wrapped)

    return decorate


def dataset_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the samplesheet's per-dataset columns as options; the command receives `spec: DatasetSpec`."""
    from .data.dataset import GENE_ID_TYPES, PERTURBATION_TYPES, DatasetSpec
    from .data.layouts import LAYOUTS, resolve

    @functools.wraps(func)
    def wrapper(*args: Any, perturbation_col: str, control_label: str, batch_col: str | None, dose_col: str | None,
                counts_layer: str | None, perturbation_type: str, gene_id_type: str,
                gene_symbol_col: str | None, min_cells_per_perturbation: int, layout: str, **kwargs: Any) -> Any:
        spec = DatasetSpec(layout=layout, perturbation_col=perturbation_col, control_label=control_label,
                           batch_col=batch_col or None, dose_col=dose_col or None, counts_layer=counts_layer or None,
                           perturbation_type=perturbation_type, gene_id_type=gene_id_type,
                           gene_symbol_col=gene_symbol_col or None,
                           min_cells_per_perturbation=min_cells_per_perturbation)
        return func(*args, spec=resolve(spec), **kwargs)

    options = [
        click.option("--perturbation-col", default="perturbation", show_default=True, help="obs column of perturbation labels."),
        click.option("--control-label", default="control", show_default=True, help="Label of control cells."),
        click.option("--batch-col", default=None, help="obs column of batches (optional)."),
        click.option("--dose-col", default=None, help="obs column of doses, numbers (drug datasets; optional)."),
        click.option("--counts-layer", default=None, help="Layer holding raw counts (default: X)."),
        click.option("--perturbation-type", default="CRISPRi", show_default=True,
                     help=f"One of {', '.join(PERTURBATION_TYPES)}."),
        click.option("--gene-id-type", default="symbol", show_default=True,
                     help=f"Identifier type of var_names: {', '.join(GENE_ID_TYPES)}."),
        click.option("--gene-symbol-col", default=None, help="var column with gene symbols when var_names are Ensembl IDs."),
        click.option("--min-cells-per-perturbation", type=click.IntRange(min=2), default=10, show_default=True),
        click.option("--layout", type=click.Choice(list(LAYOUTS)), default="pertprobe", show_default=True,
                     help="The file's layout: its perturbation column, control label and gene-symbol column are the "
                          "defaults (docs/usage.md#layouts)."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def split_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --task, --seed and --fold (one split of the splits table); the command receives `split: SplitKey`."""
    from .data.splits import SplitKey

    @functools.wraps(func)
    def wrapper(*args: Any, task: str, seed: int, fold: int, **kwargs: Any) -> Any:
        return func(*args, split=SplitKey(task, seed, fold), **kwargs)

    options = [
        click.option("--task", default="unseen_perturbation", show_default=True,
                     help="Task whose split this is (docs/tasks.md)."),
        click.option("--seed", required=True, type=int, help="Split seed (also seeds every random step)."),
        click.option("--fold", required=True, type=int, help="Test fold."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def int_list(text: str) -> tuple[int, ...]:
    """Parse '0,1,2' into (0, 1, 2)."""
    try:
        return tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError as err:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from err


def auto_or_count(ctx: click.Context, param: click.Parameter, value: Any) -> int | None:
    """A click callback: 'auto' (None: the command chooses from the data) or a non-negative integer."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise click.BadParameter(f"expected 'auto' or a non-negative integer, got {value!r}", ctx, param)
    return count


def str_list(text: str) -> list[str]:
    """Parse 'a, b,c' into ['a', 'b', 'c'] (empty text: [])."""
    return [x.strip() for x in str(text).split(",") if x.strip()]


def registry_names(kind: str) -> Callable[[click.Context, click.Parameter, Any], list[str]]:
    """A click callback: comma-separated names of registered `kind` entries, where a profile name
    (minimal, paper, full) stands for its members; repeated options are joined."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> list[str]:
        from .registry import select

        text = ",".join(value) if isinstance(value, (list, tuple)) else str(value)
        try:
            chosen = select(kind, text)
        except ValueError as err:
            raise click.BadParameter(str(err), ctx, param) from err
        if not chosen:
            raise click.BadParameter("give at least one name or a profile (minimal, paper, full)", ctx, param)
        return chosen

    return callback


def registry_name(kind: str, **where: Any) -> Callable[[click.Context, click.Parameter, Any], str]:
    """A click callback: one name of a registered `kind` entry matching `where` (checked lazily, so
    `--help` imports nothing)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> str:
        from .registry import names

        allowed = names(kind, **where)
        if value not in allowed:
            raise click.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", ctx, param)
        return value

    return callback


def key_values(items: Sequence[str]) -> dict[str, Any]:
    """Parse ('layer=-1', 'pooling=cls') into {'layer': -1, 'pooling': 'cls'} (values read as JSON when they parse)."""
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def model_run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by the foundation-model commands; the command receives `run_options: RunOptions`,
    `model_options: dict` and `gene_id_map: str | None`."""

    @functools.wraps(func)
    def wrapper(*args: Any, device: str, batch_size: int, precision: str, min_gene_coverage: float,
                model_option: tuple[str, ...], **kwargs: Any) -> Any:
        from .models.checkpoint import RunOptions

        options = RunOptions(device=device, batch_size=batch_size, seed=kwargs["seed"], precision=precision,
                             min_coverage=min_gene_coverage)
        return func(*args, run_options=options, model_options=key_values(model_option), **kwargs)

    options = [
        click.option("--checkpoint", type=click.Path(exists=True, file_okay=False),
                     help="Local checkpoint directory of a foundation model, in its released layout."),
        click.option("--device", default="auto", show_default=True,
                     help="auto (first CUDA device if visible, else CPU), cpu, cuda, cuda:N."),
        click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1)),
        click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16", "fp16"]),
                     help="Autocast precision on CUDA (CPU always runs fp32)."),
        click.option("--min-gene-coverage", default=0.5, show_default=True, type=click.FloatRange(0, 1),
                     help="Fail when the model's vocabulary covers a smaller fraction of the dataset's genes."),
        click.option("--gene-id-map", type=click.Path(exists=True, dir_okay=False),
                     help="CSV/TSV with columns symbol,ensembl used where the checkpoint carries no map."),
        click.option("--model-option", multiple=True, metavar="KEY=VALUE",
                     help="Adapter-specific option (repeatable), e.g. layer=-1, pooling=cls; see docs/models/."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
