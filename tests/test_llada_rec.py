"""LLaDARec as a RecBole model: sequence layout, losses, prediction contract, training, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_trainer, init_seed

from recbole_llada import quick_start
from recbole_llada.model.llada_rec import PAD_TOKEN, LLaDARec

from conftest import tiny_config_dict, write_tiny_dataset

N_ITEMS = 30


def llada_config_dict(root, **overrides) -> dict:
    """A tiny LLaDARec on the tiny ring dataset; SIDs from random item vectors (no text encoder needed)."""
    rng = np.random.default_rng(0)
    np.save(root / "item_vectors.npy", rng.normal(size=(N_ITEMS, 16)).astype(np.float32))
    (root / "item_ids.txt").write_text("\n".join(f"i{i}" for i in range(1, N_ITEMS + 1)) + "\n")
    config = tiny_config_dict(
        root / "data", root,
        item_embedding="file", sid_embedding_file=str(root / "item_vectors.npy"),
        sid_embedding_ids_file=str(root / "item_ids.txt"), sid_pca_dim=0,
        sid_n_heads=2, sid_codebook_size=8, sid_code_dim=4, sid_hidden_sizes=[16], sid_epochs=30,
        sid_check_every=10, sid_cache_dir=str(root / "sid_cache"),
        hidden_size=32, n_layers=2, n_heads=2, mlp_ratio=2, dropout_prob=0.0, temperature=1.0,
        his_mask_weight=1.0, learning_rate=0.01, weight_decay=0.0, train_batch_size=32,
        gen_steps=2, num_beams=12, valid_num_beams=4, decode_batch_size=16,
    )
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("llada")
    write_tiny_dataset(root / "data", n_items=N_ITEMS)
    config = Config(model="LLaDARec", dataset="tiny", config_dict=llada_config_dict(root))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    return config, train, valid, test


def new_model(tiny_world) -> LLaDARec:
    config, train, _, _ = tiny_world
    init_seed(config["seed"], config["reproducibility"])
    return LLaDARec(config, train._dataset)


def first_batch(loader):
    return next(iter(loader))


def test_item_sid_is_unique_aligned_and_in_the_state_dict(tiny_world):
    model = new_model(tiny_world)
    sid = model.item_sid
    assert sid.shape == (N_ITEMS + 1, 2)
    assert len({tuple(row) for row in sid[1:].tolist()}) == N_ITEMS
    assert torch.equal(model.state_dict()["item_sid"], sid)
    dataset = tiny_world[1]._dataset
    for internal_id, codes in enumerate(sid.tolist()[1:], start=1):
        assert dataset.sid_to_item[tuple(codes)] == internal_id


def test_history_is_left_padded_item_by_item(tiny_world):
    model = new_model(tiny_world)
    items = torch.tensor([[3, 5, 0, 0, 0], [1, 2, 3, 4, 5]])
    lengths = torch.tensor([2, 5])
    tokens = model.history_tokens(items, lengths).view(2, 5, 2)
    for row, length in enumerate(lengths.tolist()):
        expected = [0] * (5 - length) + items[row, :length].tolist()
        for slot, item in enumerate(expected):
            if item == 0:
                assert tokens[row, slot].tolist() == [PAD_TOKEN, PAD_TOKEN]
            else:
                expected_tokens = (model.item_sid[item] + model.head_offset).tolist()
                assert tokens[row, slot].tolist() == expected_tokens


def test_code_tokens_of_each_head_live_in_their_own_range(tiny_world):
    model = new_model(tiny_world)
    tokens = model.item_tokens(torch.arange(1, N_ITEMS + 1))
    for head in range(model.n_digits):
        low = 1 + head * model.codebook_size
        assert ((tokens[:, head] >= low) & (tokens[:, head] < low + model.codebook_size)).all()
    assert model.mask_token == model.vocab_size - 1


def test_head_restricted_logits_equal_the_matching_vocabulary_slices(tiny_world):
    model = new_model(tiny_world)
    hidden = torch.randn(3, model.n_digits, model.d_model)
    full = model.logits(hidden)
    restricted = model.target_code_logits(hidden)
    for head in range(model.n_digits):
        low = 1 + head * model.codebook_size
        assert torch.allclose(restricted[:, head], full[:, head, low: low + model.codebook_size], atol=1e-5)


def test_loss_is_finite_and_ablation_switches_select_the_losses(tiny_world):
    config, train, _, _ = tiny_world
    batch = first_batch(train)
    model = new_model(tiny_world)
    torch.manual_seed(0)
    total = model.calculate_loss(batch)
    item_loss, his_loss = model.last_losses
    assert torch.isfinite(total) and item_loss > 0 and his_loss > 0
    assert torch.allclose(total, item_loss + model.his_mask_weight * his_loss)
    total.backward()
    assert model.token_embedding.weight.grad.abs().sum() > 0

    model.his_mask_weight = 0.0
    torch.manual_seed(0)
    assert torch.allclose(model.calculate_loss(batch), model.last_losses[0])


def test_full_sort_scores_have_no_ties_in_the_top_k_and_never_rank_padding(tiny_world):
    _, _, _, test = tiny_world
    model = new_model(tiny_world).eval()
    interaction = first_batch(test)[0]
    with torch.no_grad():
        scores = model.full_sort_predict(interaction)
    assert scores.shape == (interaction.length, N_ITEMS + 1)
    assert torch.isneginf(scores[:, 0]).all()
    top = scores.topk(max(model.max_topk, 10), dim=1).values
    assert torch.isfinite(top).all()
    assert (top[:, :-1] > top[:, 1:]).all(), "top-k scores must be strictly decreasing"


def test_generated_items_come_first_and_are_real_items(tiny_world):
    _, _, _, test = tiny_world
    model = new_model(tiny_world).eval()
    interaction = first_batch(test)[0]
    history = model.history_tokens(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
    with torch.no_grad():
        beams = model.generate(history, num_beams=model.num_beams)
        scores = model.full_sort_predict(interaction)
    live = torch.isfinite(beams.scores)
    assert (beams.items[live] > 0).all(), "constrained decoding returns real items only"
    for row in range(history.shape[0]):
        generated = beams.items[row][live[row]].tolist()
        ranked = scores[row].argsort(descending=True)[: len(generated)].tolist()
        assert ranked == generated


@pytest.mark.parametrize("gen_steps", [1, 2])
@pytest.mark.parametrize("gen_order", ["adaptive", "left2right", "random"])
def test_every_step_count_and_order_decodes(tiny_world, gen_steps, gen_order):
    _, _, _, test = tiny_world
    model = new_model(tiny_world).eval()
    model.gen_steps, model.gen_order = gen_steps, gen_order
    with torch.no_grad():
        scores = model.full_sort_predict(first_batch(test)[0])
    assert torch.isfinite(scores.topk(10, dim=1).values).all()


def test_predict_scores_the_given_items(tiny_world):
    _, _, _, test = tiny_world
    model = new_model(tiny_world).eval()
    interaction = first_batch(test)[0]
    with torch.no_grad():
        scores = model.predict(interaction)
    assert scores.shape == (interaction.length,) and (scores <= 0).all()


def test_train_time_budget_stops_after_the_epoch_that_spent_it(tiny_world, tmp_path):
    config, train, valid, test = tiny_world
    model = new_model(tiny_world)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.saved_model_file = str(tmp_path / "budget.pth")
    trainer.train_time_budget = 1e-6
    trainer.epochs = 50
    trainer.fit(train, valid, saved=True, show_progress=False)
    assert trainer._budget_spent and trainer.scheduler.last_epoch == len(train)
    assert quick_start.training_extent(trainer) == (1, "time budget")
    assert "recall@10" in trainer.evaluate(test, load_best_model=True)


def test_training_learns_the_ring_and_checkpoints_reload_identically(tiny_world, tmp_path):
    config, train, valid, test = tiny_world
    config["epochs"] = 25
    model = new_model(tiny_world)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.saved_model_file = str(tmp_path / "llada.pth")
    trainer.fit(train, valid, saved=True, show_progress=False)
    result = trainer.evaluate(test, load_best_model=True)
    # Each next item is determined by the last one; random ranking gets recall@10 = 10/30.
    assert result["recall@10"] > 0.8, result

    reloaded = new_model(tiny_world)
    reloaded.load_state_dict(torch.load(trainer.saved_model_file, weights_only=False)["state_dict"])
    model.eval(), reloaded.eval()
    interaction = first_batch(test)[0]
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(interaction), reloaded.full_sort_predict(interaction))


def test_distributed_budget_follows_rank0s_clock(tiny_world, monkeypatch):
    config, *_ = tiny_world
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, new_model(tiny_world))
    trainer.train_time_budget, trainer._first_epoch_start = 1e9, 0.0  # this rank alone would keep training
    broadcasts = []

    def rank0_says_stop(tensor, src):
        broadcasts.append(src)
        tensor.fill_(1.0)

    monkeypatch.setattr(torch.distributed, "broadcast", rank0_says_stop)
    config["single_spec"] = False
    try:
        assert trainer._budget_exhausted() and broadcasts == [0]
    finally:
        config["single_spec"] = True
    assert not trainer._budget_exhausted() and broadcasts == [0]  # one process: its own clock, no collective


def test_collaborative_sids_report_sasrecs_time_as_the_embed_stage(tmp_path):
    config = Config(model="LLaDARec", dataset="tiny", config_dict=llada_config_dict(
        tmp_path, item_embedding="collaborative", sid_collab_epochs=1, sid_collab_hidden_size=8))
    write_tiny_dataset(tmp_path / "data", n_items=N_ITEMS)
    init_seed(config["seed"], config["reproducibility"])
    train, _, _ = data_preparation(config, create_dataset(config))
    stages = train._dataset.sid_report.stage_seconds
    assert next(iter(stages)) == "embed" and stages["embed"] > 0
    assert stages["total"] >= stages["embed"] + stages["fit"]


def _model_with_init(tiny_world, init: str) -> LLaDARec:
    config, train, _, _ = tiny_world
    previous = config["init"]
    config["init"] = init
    try:
        init_seed(config["seed"], config["reproducibility"])
        return LLaDARec(config, train._dataset)
    finally:
        config["init"] = previous


def test_official_init_keeps_pytorch_defaults_and_mitchell_on_item_positions(tiny_world):
    model = _model_with_init(tiny_world, "official")
    d_model = model.d_model
    # nn.Embedding's default N(0, 1): far from mitchell's 1/sqrt(d) = 0.18 at d = 32.
    for embedding in (model.token_embedding, model.token_position_embedding):
        assert 0.85 < embedding.weight.std().item() < 1.15
    # Only the item-position embedding is mitchell: truncated at 3 std, std 1/sqrt(d).
    item_position = model.item_position_embedding.weight
    assert item_position.abs().max().item() <= 3 / d_model ** 0.5 + 1e-6
    assert item_position.std().item() < 0.5 / d_model ** 0.5 * 3
    # Every Linear keeps kaiming-uniform: within 1/sqrt(fan_in), std of a uniform on that bound.
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1 + 7 * len(model.encoder.blocks)
    for linear in linears:
        bound = 1 / linear.in_features ** 0.5
        weight = linear.weight
        assert weight.abs().max().item() <= bound + 1e-6
        assert abs(weight.std().item() - bound / 3 ** 0.5) < 0.25 * bound
    for norm in [m for m in model.modules() if m.__class__.__name__ == "RMSNorm"]:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))


def test_mitchell_init_is_the_old_scheme(tiny_world):
    model = _model_with_init(tiny_world, "mitchell")
    std = 1 / model.d_model ** 0.5
    for module in (model.token_embedding, model.token_position_embedding, model.item_position_embedding,
                   model.output):
        assert module.weight.abs().max().item() <= 3 * std + 1e-6
        assert abs(module.weight.std().item() - std) < 0.3 * std
    # Residual output projections are scaled down by sqrt(2 (layer + 1)).
    last = model.encoder.blocks[-1]
    layer_std = std / (2 * len(model.encoder.blocks)) ** 0.5
    assert last.attn_out.weight.abs().max().item() <= 3 * layer_std + 1e-6


def test_unknown_init_is_rejected(tiny_world):
    with pytest.raises(ValueError, match="init must be one of"):
        _model_with_init(tiny_world, "xavier")
