"""Small torch models of PerturBench's simple family, on pseudobulk profiles.

* ``decoder_only``: profile = decoder(perturbation encoder(embedding)); it ignores control
  expression.
* ``latent_additive``: profile = decoder(encoder(control profile) + perturbation encoder(embedding)).
  Trained on (control of batch b, perturbation in batch b) pseudobulk pairs when batches are
  known; predictions average over batches weighted by their control cells.

MSE loss, Adam, early stopping on a validation split of training perturbations (seeded), full
batch. CPU by default, CUDA when available (the pipeline's `process_gpu` label routes it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .training import TrainingData

HIDDEN = 256
LATENT = 64
MAX_EPOCHS = 400
PATIENCE = 30
LEARNING_RATE = 1e-3
VALIDATION_FRACTION = 0.15
TORCH_THREADS = 1


def _mlp(torch, sizes: list[int]):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _pairs(train: TrainingData, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row of the perturbation, control profile, perturbed profile) per batch, else overall."""
    by_batch = train.by_batch
    if by_batch is None or by_batch.index.get_level_values("batch").nunique() < 2:
        rows = np.arange(len(names))
        return rows, np.tile(train.control, (len(names), 1)), train.means.loc[names].to_numpy(dtype=np.float64)
    genes = list(train.genes)
    ctrl = by_batch.xs(train.control_label, level="perturbation")[genes]
    rows, xs, ys = [], [], []
    for row, name in enumerate(names):
        if name not in by_batch.index.get_level_values("perturbation"):
            continue
        per_batch = by_batch.xs(name, level="perturbation")[genes]
        for batch in per_batch.index.intersection(ctrl.index):
            rows.append(row)
            xs.append(ctrl.loc[batch].to_numpy(dtype=np.float64))
            ys.append(per_batch.loc[batch].to_numpy(dtype=np.float64))
    return np.array(rows), np.vstack(xs), np.vstack(ys)


def _test_controls(train: TrainingData) -> tuple[np.ndarray, np.ndarray]:
    """Control profiles to decode test perturbations from, with their weights."""
    by_batch = train.by_batch
    if by_batch is None or by_batch.index.get_level_values("batch").nunique() < 2:
        return train.control[None, :], np.ones(1)
    ctrl = by_batch.xs(train.control_label, level="perturbation")
    return ctrl[list(train.genes)].to_numpy(dtype=np.float64), ctrl["n_cells"].to_numpy(dtype=np.float64)


def fit_predict_torch(kind: str, train: TrainingData, names: list[str], p_train: np.ndarray, p_test: np.ndarray,
                      seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Train `kind` on the training perturbations `names` (embeddings `p_train`); return test Δ."""
    import torch

    if kind not in ("decoder_only", "latent_additive"):
        raise ValueError(f"unknown torch model {kind!r}")
    torch.manual_seed(seed)
    torch.set_num_threads(TORCH_THREADS)  # these nets are small: more threads only contend
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    mu, sd = p_train.mean(axis=0), p_train.std(axis=0) + 1e-8
    emb = torch.tensor((p_train - mu) / sd, dtype=torch.float32, device=device)
    emb_test = torch.tensor((p_test - mu) / sd, dtype=torch.float32, device=device)
    rows, x_ctrl, y = _pairs(train, names)
    rows_t = torch.tensor(rows, device=device)
    x_t = torch.tensor(x_ctrl, dtype=torch.float32, device=device)
    y_t = torch.tensor(y, dtype=torch.float32, device=device)

    n_genes, n_emb = y.shape[1], emb.shape[1]
    pert_enc = _mlp(torch, [n_emb, HIDDEN, LATENT])
    decoder = _mlp(torch, [LATENT, HIDDEN, n_genes])
    modules = [pert_enc, decoder]
    ctrl_enc = None
    if kind == "latent_additive":
        ctrl_enc = _mlp(torch, [n_genes, HIDDEN, LATENT])
        modules.append(ctrl_enc)
    model = torch.nn.ModuleList(modules).to(device)

    def forward(pert_emb, ctrl):
        z = pert_enc(pert_emb)
        if ctrl_enc is not None:
            z = z + ctrl_enc(ctrl)
        return decoder(z)

    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(VALIDATION_FRACTION * len(names)))) if len(names) >= 4 else 0
    val_perts = set(rng.choice(len(names), size=n_val, replace=False).tolist()) if n_val else set()
    is_val = torch.tensor([r in val_perts for r in rows], device=device)
    fit_idx = torch.nonzero(~is_val).squeeze(1)
    val_idx = torch.nonzero(is_val).squeeze(1)

    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.MSELoss()
    best, best_state, best_epoch, stale = float("inf"), None, 0, 0
    for epoch in range(MAX_EPOCHS):
        model.train()
        opt.zero_grad()
        loss = loss_fn(forward(emb[rows_t[fit_idx]], x_t[fit_idx]), y_t[fit_idx])
        loss.backward()
        opt.step()
        if len(val_idx):
            model.eval()
            with torch.no_grad():
                val = loss_fn(forward(emb[rows_t[val_idx]], x_t[val_idx]), y_t[val_idx]).item()
        else:
            val = loss.item()
        if val < best - 1e-9:
            best, best_epoch, stale = val, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= PATIENCE:
                break
    model.load_state_dict(best_state)
    model.eval()

    ctrls, weights = _test_controls(train)
    with torch.no_grad():
        preds = []
        for ctrl in ctrls:
            c = torch.tensor(ctrl, dtype=torch.float32, device=device).expand(len(p_test), -1)
            preds.append(forward(emb_test, c).double().cpu().numpy())
    profile = np.tensordot(weights / weights.sum(), np.stack(preds), axes=1)
    info = {"device": str(device), "best_epoch": best_epoch, "validation_mse": best, "n_validation": n_val,
            "n_training_pairs": int(len(fit_idx))}
    return profile - train.control[None, :], info
