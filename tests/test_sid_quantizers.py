"""Quantizers: k-means and Sinkhorn against brute force; the four tokenizers' shapes, ranges, consistency and seeds."""

from __future__ import annotations

import pytest
import torch

from recbole_llada.sid.build import SIDConfig, quantizer_config
from recbole_llada.sid.quantizers import (KMeansQuantizerConfig, MultiHeadVQVAEQuantizer, OPQQuantizer,
                                          ResidualKMeansQuantizer, ResidualVQVAEQuantizer, VAEConfig, count_collisions,
                                          kmeans)
from recbole_llada.sid.quantizers.mh_vqvae import MultiHeadVQVAE
from recbole_llada.sid.quantizers.vae import sinkhorn_assign, train_autoencoder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clustered(n: int = 120, dim: int = 8, n_clusters: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_clusters, dim, generator=generator) * 3
    members = torch.randint(n_clusters, (n,), generator=generator)
    return centers[members] + 0.3 * torch.randn(n, dim, generator=generator)


def tiny_vae(**overrides) -> VAEConfig:
    """The YAML defaults (through SIDConfig), made tiny."""
    settings = dict(sid_length=2, codebook_size=4, code_dim=2, hidden_sizes=(16,), epochs=20, check_every=5,
                    batch_size=64, kmeans_iters=20, seed=3)
    return quantizer_config(SIDConfig(tokenizer="mh_vqvae", **{**settings, **overrides}), "cpu")


def tiny_kmeans(**overrides) -> KMeansQuantizerConfig:
    settings = dict(sid_length=2, codebook_size=4, kmeans_iters=20, opq_iters=3, seed=3)
    return quantizer_config(SIDConfig(tokenizer="rq_kmeans", **{**settings, **overrides}), "cpu")


def test_kmeans_is_a_lloyd_fixed_point():
    x = clustered()
    result = kmeans(x, 6, n_iters=100, seed=0)
    brute = torch.cdist(x.double(), result.centers.double()).argmin(dim=1)
    assert torch.equal(result.assignments, brute)
    for cluster in range(6):
        members = x[result.assignments == cluster]
        assert len(members) > 0
        torch.testing.assert_close(result.centers[cluster], members.mean(dim=0))
    assert torch.equal(kmeans(x, 6, n_iters=100, seed=0).centers, result.centers)


def test_kmeans_with_fewer_distinct_points_than_clusters():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).repeat(5, 1)
    result = kmeans(x, 4, n_iters=10, seed=0)
    assert result.inertia == 0.0 and result.centers.shape == (4, 2)


def test_sinkhorn_balances_what_argmin_piles_up():
    # Every row is closest to code 0, but each prefers a different runner-up: a balanced plan spreads them out.
    distances = torch.tensor([[0.0, 0.1, 0.9, 0.9], [0.0, 0.9, 0.1, 0.9], [0.0, 0.9, 0.9, 0.1], [0.0, 0.5, 0.5, 0.5]])
    assert distances.argmin(dim=1).tolist() == [0, 0, 0, 0]
    assert sorted(sinkhorn_assign(distances, epsilon=0.003, iters=50).tolist()) == [0, 1, 2, 3]


def reference_sinkhorn(distances: torch.Tensor, epsilon: float, iters: int) -> torch.Tensor:
    """Textbook log-domain Sinkhorn on one [B, K] problem, distances rescaled to [-1, 1] first: the plan's logs."""
    low, high = float(distances.min()), float(distances.max())
    middle = (high + low) / 2
    log_plan = -(distances.double() - middle) / ((high - middle + 1e-5) * epsilon)
    for _ in range(iters):
        log_plan = log_plan - torch.logsumexp(log_plan, dim=1, keepdim=True)
        log_plan = log_plan - torch.logsumexp(log_plan, dim=0, keepdim=True)
    return log_plan


@pytest.mark.parametrize("epsilon", [0.003, 0.05])
def test_sinkhorn_matches_log_domain_reference_and_batches(epsilon):
    problems = torch.rand(5, 12, 16, generator=torch.Generator().manual_seed(0)) * torch.arange(1, 6).view(5, 1, 1)
    batched = sinkhorn_assign(problems, epsilon=epsilon, iters=10)
    for problem, assignment in zip(problems, batched):
        assert torch.equal(assignment, sinkhorn_assign(problem, epsilon=epsilon, iters=10))
        log_plan = reference_sinkhorn(problem, epsilon, 10)
        top2 = log_plan.topk(2, dim=1).values
        clear = top2[:, 0] - top2[:, 1] > 1e-9  # a small epsilon saturates the plan into exact ties
        assert clear.sum() >= 6
        assert torch.equal(assignment[clear], log_plan.argmax(dim=1)[clear])


def test_mh_vqvae_training_reduces_loss():
    x = clustered()
    cfg = tiny_vae(epochs=300, check_every=300, batch_size=len(x), lr=3e-3, sinkhorn_epsilon=0.0)
    model = MultiHeadVQVAE(x.shape[1], cfg, torch.Generator().manual_seed(cfg.seed))
    with torch.no_grad():
        model.init_codebooks(model.encoder(x), cfg.kmeans_iters, cfg.seed)
        before = float(model.loss(x, cfg.beta, None))
    train_autoencoder(model, x, cfg, show_progress=False)
    with torch.no_grad():
        after = float(model.loss(x, cfg.beta, None))
    assert after < 0.3 * before, (before, after)


@pytest.mark.parametrize("rule", ["collision", "loss"])
def test_kept_checkpoint_is_the_one_the_rule_picks_among_the_checks(rule):
    x = clustered()
    cfg = tiny_vae(epochs=40, check_every=5, checkpoint_rule=rule)
    quantizer = MultiHeadVQVAEQuantizer(cfg, show_progress=False)
    report = quantizer.fit(x)
    check_epochs = list(range(5, 41, 5))
    assert report.check_epochs == check_epochs
    assert len(report.loss_history) == len(report.collision_history) == len(check_epochs)
    scores = report.collision_history if rule == "collision" else report.loss_history
    first_best = check_epochs[scores.index(min(scores))]  # ties: the earliest, as the official trainer keeps
    assert report.best_epoch == first_best
    assert report.best_collisions == report.collision_history[check_epochs.index(first_best)]
    assert count_collisions(quantizer.encode(x)) == report.best_collisions  # that checkpoint is the one loaded


def test_unknown_checkpoint_rule_is_an_error():
    with pytest.raises(ValueError, match="checkpoint_rule"):
        tiny_vae(checkpoint_rule="recall")


def test_mh_vqvae_distances_match_brute_force():
    x = clustered()
    quantizer = MultiHeadVQVAEQuantizer(tiny_vae(), show_progress=False)
    report = quantizer.fit(x)
    assert report.best_epoch in range(5, 21, 5) and len(report.loss_history) == 4
    model = quantizer.model
    with torch.no_grad():
        heads = model.encoder(x).view(len(x), 2, 2)
    expected = ((heads.unsqueeze(2) - model.codebooks.detach().unsqueeze(0)) ** 2).sum(-1)
    torch.testing.assert_close(quantizer.distances(x), expected, atol=1e-5, rtol=1e-4)
    assert torch.equal(quantizer.encode(x), expected.argmin(dim=-1))


def make(name: str, seed: int = 3):
    if name == "mh_vqvae":
        return MultiHeadVQVAEQuantizer(tiny_vae(seed=seed), show_progress=False)
    if name == "rq_vae":
        return ResidualVQVAEQuantizer(tiny_vae(seed=seed), show_progress=False)
    config = tiny_kmeans(seed=seed)
    return ResidualKMeansQuantizer(config) if name == "rq_kmeans" else OPQQuantizer(config)


@pytest.mark.parametrize("name", ["mh_vqvae", "rq_vae", "rq_kmeans", "opq"])
def test_quantizer_interface_and_determinism(name):
    x = clustered()
    first, second = make(name), make(name)
    first.fit(x[:100])
    second.fit(x[:100])
    codes, distances = first.encode(x), first.distances(x)
    assert codes.shape == (120, 2) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 4
    assert distances.shape == (120, 2, 4) and bool((distances >= 0).all())
    assert torch.equal(codes, distances.argmin(dim=-1))
    assert torch.equal(second.encode(x), codes)  # same seed, same codes
    assert first.reconstruction_error(x) >= 0


def test_different_seeds_give_different_models():
    x = clustered()
    first, second = make("mh_vqvae", seed=1), make("mh_vqvae", seed=2)
    first.fit(x)
    second.fit(x)
    assert not torch.equal(first.distances(x), second.distances(x))


def test_residual_kmeans_reconstruction_error_matches_brute_force():
    x = clustered()
    quantizer = make("rq_kmeans")
    quantizer.fit(x)
    codes = quantizer.encode(x)
    reconstruction = quantizer.codebooks[0][codes[:, 0]] + quantizer.codebooks[1][codes[:, 1]]
    assert quantizer.reconstruction_error(x) == pytest.approx(float((x - reconstruction).pow(2).mean()), rel=1e-5)


def test_opq_rotation_is_orthogonal_and_error_matches_brute_force():
    x = clustered()
    quantizer = make("opq")
    quantizer.fit(x)
    rotation = quantizer.rotation
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(8), atol=1e-5, rtol=0)
    codes = quantizer.encode(x)
    rotated_reconstruction = torch.cat([quantizer.codebooks[h][codes[:, h]] for h in range(2)], dim=1)
    reconstruction = rotated_reconstruction @ rotation.T
    assert quantizer.reconstruction_error(x) == pytest.approx(float((x - reconstruction).pow(2).mean()), rel=1e-4)


def test_opq_needs_divisible_dim():
    with pytest.raises(ValueError, match="not divisible"):
        OPQQuantizer(tiny_kmeans(sid_length=3)).fit(torch.randn(20, 8))


def test_rebalance_splits_colliding_group_by_sinkhorn():
    x = clustered()
    quantizer = make("mh_vqvae")
    quantizer.fit(x)
    codes = quantizer.encode(x)
    forced = codes.clone()
    forced[:10] = codes[0]  # ten different items forced onto one SID
    rebalanced = quantizer.rebalance_collisions(x, forced)
    assert torch.equal(rebalanced[:, :-1], forced[:, :-1])  # only the last head is re-assigned
    assert len(torch.unique(rebalanced[:10], dim=0)) > 1
