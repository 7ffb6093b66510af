"""scGPT fine-tuning: the generator's math, what each variant loads, freezes and removes, the shared
data plan, determinism, leakage and a learning check (tiny checkpoints, CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pertprobe.data.dataset import DatasetSpec
from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess
from pertprobe.data.simulate import simulate
from pertprobe.errors import InputError
from pertprobe.models.finetune import (
    NOT_PERTURBED,
    PERTURBED,
    FinetuneConfig,
    cells_from_anndata,
    finetune,
    flag_matrix,
    predict_profiles,
    variant,
    variant_names,
)
from pertprobe.models.gene_ids import dataset_gene_ids
from pertprobe.registry import entries
from pertprobe.models.scgpt import build_encoder, read_config
from pertprobe.models.scgpt_finetune import GROUP_PREFIXES, ScGPTFinetune, checkpoint_state
from pertprobe.testing.scgpt import write_tiny_checkpoint

from ...conftest import small_config

QUICK = FinetuneConfig(epochs=2, max_steps=4, batch_size=16, pool_size=12, max_cells_per_perturbation=12)
TIMING = ("seconds_per_epoch", "seconds_total", "peak_memory_mb", "cells_per_second", "tokens_per_second")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    path = root / "d.h5ad"
    simulate(small_config(seed=11)).to_anndata().write_h5ad(path)
    spec = DatasetSpec(batch_col="batch")
    result = preprocess(load_counts(path, spec), spec,
                        PreprocessConfig(min_genes_per_cell=20, n_hvg=80, n_folds=3, seeds=(0,)))
    genes = dataset_gene_ids(result.adata.var, "symbol")
    checkpoint = write_tiny_checkpoint(root / "scgpt", genes, coverage=0.9)
    # a trained checkpoint's LayerNorms are not at their initial 1 / 0: make them so, or "withheld" is moot
    state = torch.load(checkpoint / "best_model.pt", weights_only=True)
    noise = torch.Generator().manual_seed(0)
    state = {k: v + 0.1 * torch.randn(v.shape, generator=noise) if "norm" in k else v for k, v in state.items()}
    torch.save(state, checkpoint / "best_model.pt")
    rows = result.splits[(result.splits["task"] == "unseen_perturbation") & (result.splits["fold"] == 0)]
    train = rows.loc[rows["split"] == "train", "perturbation"].tolist()
    test = rows.loc[rows["split"] == "test", "perturbation"].tolist()
    cells = cells_from_anndata(result.adata, result.pseudobulk)
    return {"root": root, "checkpoint": checkpoint, "genes": genes, "cells": cells, "train": train, "test": test,
            "pb": result.pseudobulk, "adata": result.adata}


@pytest.fixture(scope="module")
def adapter(setup):
    return ScGPTFinetune(setup["checkpoint"], setup["genes"])


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_transformer_matches_torch_on_the_released_weights(setup, adapter):
    """Our split-q/k/v blocks compute what the embedder's nn.TransformerEncoder computes on the same weights
    (the checkpoint's fused in_proj split into q, k, v)."""
    model, _ = adapter.build(variant("full"), seed=0)
    reference = build_encoder(read_config(setup["checkpoint"]), len(adapter.vocab), adapter.pad_id)
    state = torch.load(setup["checkpoint"] / "best_model.pt", weights_only=True)
    reference.load_state_dict({k: v for k, v in state.items() if k.startswith(("encoder.", "value_encoder.",
                                                                                 "transformer_encoder."))})
    hidden = torch.randn(3, 17, adapter.config["embsize"], generator=torch.Generator().manual_seed(1))
    reference.eval()
    with torch.no_grad():
        expected = reference.transformer_encoder(hidden)
        got = model.transformer_encoder(hidden)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_each_variant_loads_exactly_its_groups_and_withholds_the_rest(setup, adapter):
    ckpt, _, _ = checkpoint_state(setup["checkpoint"] / "best_model.pt")
    states = {name: _state(adapter.build(variant(name), seed=5)[0]) for name in variant_names()}
    for name, state in states.items():
        spec = variant(name)
        for key, value in state.items():
            group = next((g for g, prefixes in GROUP_PREFIXES.items() if key.startswith(prefixes)), None)
            if group in spec.loads:
                assert torch.equal(value, ckpt[key]), (name, key)
            elif key in ckpt:
                assert not torch.equal(value, ckpt[key]), (name, key)
    # withheld groups are the same seeded draw in every variant
    for key in states["no_pretraining"]:
        if key.startswith("transformer_encoder."):
            assert torch.equal(states["no_pretraining"][key], states["no_transformer"][key])
        if key.startswith(("encoder.", "value_encoder.", "pert_encoder.", "decoder.")):
            assert torch.equal(states["no_pretraining"][key], states["simple_affine"][key])
            assert torch.equal(states["no_pretraining"][key], states["no_input_encoder"][key])
    assert not any(k.startswith("transformer_encoder.") for k in states["simple_affine"])
    assert not any(k.startswith("transformer_encoder.") for k in states["mlp"])


def test_the_pretraining_head_is_never_copied(setup, tmp_path):
    """The checkpoint's MLM decoder (decoder.fc.*) shares its names' prefix with the new decoder; a
    sentinel value in it appears in no model tensor."""
    directory = write_tiny_checkpoint(tmp_path / "ckpt", setup["genes"])
    state = torch.load(directory / "best_model.pt", weights_only=True)
    for key in state:
        if key.startswith("decoder."):
            state[key] = torch.full_like(state[key], 7.25)
    torch.save(state, directory / "best_model.pt")
    model, info = ScGPTFinetune(directory, setup["genes"]).build(variant("full"), seed=0)
    assert info.extra["unused_head_tensors"] > 0
    assert not any(torch.any(v == 7.25) for v in model.state_dict().values())


def test_strict_loading_per_group(setup, tmp_path):
    directory = write_tiny_checkpoint(tmp_path / "ckpt", setup["genes"])
    state = torch.load(directory / "best_model.pt", weights_only=True)
    del state["transformer_encoder.layers.0.linear1.weight"]
    torch.save(state, directory / "best_model.pt")
    adapter = ScGPTFinetune(directory, setup["genes"])
    with pytest.raises(InputError, match="missing"):
        adapter.build(variant("full"), seed=0)
    adapter.build(variant("no_transformer"), seed=0)  # does not read the transformer's tensors
    state["mystery.weight"] = torch.zeros(2)
    torch.save(state, directory / "best_model.pt")
    with pytest.raises(InputError, match="mystery.weight"):
        ScGPTFinetune(directory, setup["genes"])


def test_flash_attention_checkpoints_give_the_same_model(setup, tmp_path):
    plain = write_tiny_checkpoint(tmp_path / "plain", setup["genes"], seed=3)
    flash = write_tiny_checkpoint(tmp_path / "flash", setup["genes"], seed=3, flash_attention_keys=True)
    a = _state(ScGPTFinetune(plain, setup["genes"]).build(variant("full"), seed=0)[0])
    b = _state(ScGPTFinetune(flash, setup["genes"]).build(variant("full"), seed=0)[0])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_architecture_controls(adapter):
    d = adapter.config["embsize"]
    affine, _ = adapter.build(variant("simple_affine"), seed=0)
    mlp, _ = adapter.build(variant("mlp"), seed=0)
    full, _ = adapter.build(variant("full"), seed=0)
    assert not any("attn" in name for name, _ in affine.named_parameters())
    square = [m for m in mlp.mlp if isinstance(m, torch.nn.Linear) and m.in_features == m.out_features == d]
    assert len(square) == adapter.config["nlayers"] + 1 and not any("attn" in n for n, _ in mlp.named_parameters())
    # without attention, gene j's output depends on gene j's inputs only
    n = 9
    tokens = torch.from_numpy(adapter.tokens[:n][None])
    values, flags = torch.rand(1, n) * 5, torch.full((1, n), NOT_PERTURBED)
    moved_values, moved_flags = values.clone(), flags.clone()
    moved_values[0, 1:], moved_flags[0, 3] = moved_values[0, 1:] + 1, PERTURBED
    for model, independent in ((affine, True), (mlp, True), (full, False)):
        model.eval()
        with torch.no_grad():
            a = model(tokens, values, values, flags)[0, 0]
            b = model(tokens, moved_values, moved_values, moved_flags)[0, 0]
        assert torch.equal(a, b) == independent


def test_flags_mark_each_target(setup):
    cells = setup["cells"]
    single = next(p for p, t in cells.targets.items() if len(t) == 1)
    double = next(p for p, t in cells.targets.items() if len(t) == 2)
    flags = flag_matrix(cells, np.array([single, double, cells.control_label], dtype=object))
    assert (flags[0] == PERTURBED).sum() == 1 and flags[0, cells.targets[single][0]] == PERTURBED
    assert sorted(np.flatnonzero(flags[1] == PERTURBED)) == sorted(cells.targets[double])
    assert (flags[2] == NOT_PERTURBED).all()


def test_known_answer_decoder_returns_the_pool_mean(setup, adapter):
    """coeff = 1, bias = 0: every prediction is its control cell, so a profile is the pool's mean."""
    model, _ = adapter.build(variant("full"), seed=0)
    with torch.no_grad():
        for part, value in ((model.decoder.coeff_decoder.fc[4], 1.0), (model.decoder.bias_decoder.fc[4], 0.0)):
            part.weight.zero_()
            part.bias.fill_(value)
    cells = setup["cells"]
    adapter.prepare(cells, QUICK)
    pool = cells.controls[:10]
    got = predict_profiles(model, adapter, cells, pool, setup["test"][:2], QUICK, torch.device("cpu"))
    expected = cells.rows(cells.X, pool).mean(axis=0)
    np.testing.assert_allclose(got, np.vstack([expected, expected]), rtol=1e-5, atol=1e-6)


def test_lora_trains_adapters_only_and_is_live_in_eval(setup, adapter):
    ckpt, _, _ = checkpoint_state(setup["checkpoint"] / "best_model.pt")
    result = finetune(adapter, variant("lora"), setup["cells"], setup["train"], setup["test"], QUICK, 0, 0)
    model = result.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith(("pert_encoder.", "decoder.")) for n in trainable)
    lora_b = [n for n in trainable if "lora_B" in n]
    targets = {"q_proj", "k_proj", "v_proj", "out_proj", "linear1", "linear2"}
    assert {n.split(".")[-4] for n in lora_b} == targets
    state = model.state_dict()
    for key, value in ckpt.items():  # the foundation weights are untouched (PEFT keeps them as base_layer)
        stored = state.get(key, state.get(key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")))
        assert torch.equal(stored, value), key
    assert any(state[n].abs().sum() > 0 for n in lora_b)  # B starts at zero; training moved it
    # the adapters are on the eval path (no fused fast path that would read the base weights only)
    model.eval()
    cells = setup["cells"]
    inputs = adapter.inputs(cells.controls[:4], flag_matrix(cells, np.array([setup["test"][0]] * 4, dtype=object)),
                            np.arange(len(cells.genes)), torch.device("cpu"))
    with torch.no_grad():
        before = model(**inputs)
        for name in lora_b:
            dict(model.named_parameters())[name].add_(0.5)
        after = model(**inputs)
    assert not torch.allclose(before, after)


def test_full_training_moves_every_weight(setup, adapter):
    ckpt, _, _ = checkpoint_state(setup["checkpoint"] / "best_model.pt")
    result = finetune(adapter, variant("full"), setup["cells"], setup["train"], setup["test"], QUICK, 0, 0)
    state = result.model.state_dict()
    assert [k for k, v in ckpt.items() if torch.equal(state[k], v)] == []
    assert result.record["n_trainable"] == result.record["n_parameters"]


def test_runs_are_deterministic_and_variants_share_the_data(setup, adapter):
    runs = {name: finetune(adapter, variant(name), setup["cells"], setup["train"], setup["test"], QUICK, 0, 1)
            for name in ("full", "no_pretraining", "simple_affine")}
    again = finetune(adapter, variant("full"), setup["cells"], setup["train"], setup["test"], QUICK, 0, 1)
    assert np.array_equal(runs["full"].profiles, again.profiles)
    assert runs["full"].info == again.info
    assert len({r.record["batch_digest"] for r in runs.values()}) == 1
    assert {r.record["n_train_pairs"] for r in runs.values()} == {runs["full"].record["n_train_pairs"]}
    other_split = finetune(adapter, variant("full"), setup["cells"], setup["train"], setup["test"], QUICK, 1, 1)
    assert other_split.record["batch_digest"] != runs["full"].record["batch_digest"]
    assert not any(k in runs["full"].info for k in TIMING)  # machine timings stay out of the prediction file


def test_no_test_cells_reach_training_or_prediction(setup, adapter):
    """Garbage in place of the test perturbations' cells leaves predictions bit-identical; garbage in a
    training perturbation's cells changes them (the check can fail)."""
    cells = setup["cells"]

    def tampered(perts):
        X = cells.X.tolil(copy=True)
        rows = np.flatnonzero(np.isin(cells.perturbation, perts))
        X[rows] = np.random.default_rng(0).uniform(0, 9, size=(rows.size, X.shape[1]))
        return dataclasses.replace(cells, X=X.tocsr())

    garbage = tampered(setup["test"])
    for entry in entries("predictor"):
        if "cells" not in entry.needs:
            continue
        fitted = entry.func(setup["checkpoint"], setup["genes"])
        for name in variant_names():
            base = finetune(fitted, variant(name), cells, setup["train"], setup["test"], QUICK, 0, 0).profiles
            hidden = finetune(fitted, variant(name), garbage, setup["train"], setup["test"], QUICK, 0, 0).profiles
            assert np.array_equal(base, hidden), (entry.name, name)
    full = finetune(adapter, variant("full"), cells, setup["train"], setup["test"], QUICK, 0, 0).profiles
    seen = finetune(adapter, variant("full"), tampered(setup["train"]), setup["train"], setup["test"], QUICK, 0, 0)
    assert not np.array_equal(full, seen.profiles)


def test_invalid_options_name_the_field():
    with pytest.raises(InputError, match="precision"):
        FinetuneConfig(precision="int8")
    with pytest.raises(InputError, match="pool_size"):
        FinetuneConfig(pool_size=0)


@pytest.mark.slow
def test_training_fits_the_training_perturbations_better_than_no_change(setup, adapter):
    """A property of training, not a threshold on test data: with enough steps the randomly initialised
    generator predicts its own training perturbations' pseudobulk closer than the control mean does."""
    cells = setup["cells"]
    config = FinetuneConfig(epochs=12, batch_size=32, pool_size=32, learning_rate=1e-3, validation_fraction=0.0)
    result = finetune(adapter, variant("no_pretraining"), cells, setup["train"], setup["test"], config, 0, 0)
    fitted = predict_profiles(result.model, adapter, cells, cells.controls[:32], setup["train"], config,
                              torch.device("cpu"))
    observed = setup["pb"].means.loc[setup["train"]].to_numpy()
    control = setup["pb"].control
    assert np.mean((fitted - observed) ** 2) < np.mean((control[None, :] - observed) ** 2)
    assert result.history[-1]["train_mse"] < result.history[0]["train_mse"]
