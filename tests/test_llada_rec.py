"""LLaDARec as a RecBole model: sequence layout, losses, prediction contract, training, checkpoints."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_trainer, init_seed

from recbole_llada import devices
from recbole_llada.model import llada_rec
from recbole_llada.model.llada_rec import PAD_TOKEN, LLaDARec
from recbole_llada.training import quick_start

from conftest import TINY_DATASET, prepare_tiny_llada, tiny_llada_config_dict

N_ITEMS = 30


def llada_config_dict(root, **overrides) -> dict:
    """The tiny LLaDARec of conftest, a little larger and trained a little longer, on the ring dataset under root."""
    return tiny_llada_config_dict(root, N_ITEMS, vector_dim=16, **{
        "sid_epochs": 30, "hidden_size": 32, "n_layers": 2, "dropout_prob": 0.0, "his_mask_weight": 1.0,
        "learning_rate": 0.01, "weight_decay": 0.0, "train_batch_size": 32, "num_beams": 12, "valid_num_beams": 4,
        **overrides})


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    return prepare_tiny_llada(llada_config_dict(tmp_path_factory.mktemp("llada")))


def new_model(tiny_world, **overrides) -> LLaDARec:
    """A freshly initialised model; overrides replace config keys for its construction only."""
    config, train, _, _ = tiny_world
    previous = {key: config[key] for key in overrides}
    for key, value in overrides.items():
        config[key] = value
    try:
        init_seed(config["seed"], config["reproducibility"])
        return LLaDARec(config, train._dataset)
    finally:
        for key, value in previous.items():
            config[key] = value


def first_batch(loader):
    return next(iter(loader))


def test_item_sid_is_unique_aligned_and_in_the_state_dict(tiny_world):
    model = new_model(tiny_world)
    sid = model.item_sid
    assert sid.shape == (N_ITEMS + 1, 2)
    assert len({tuple(row) for row in sid[1:].tolist()}) == N_ITEMS
    assert torch.equal(model.state_dict()["item_sid"], sid)
    assert torch.equal(tiny_world[1]._dataset.item_sid, sid)  # row = RecBole's internal item id


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
    for head in range(model.sid_length):
        low = 1 + head * model.codebook_size
        assert ((tokens[:, head] >= low) & (tokens[:, head] < low + model.codebook_size)).all()
    assert model.mask_token == model.vocab_size - 1


def test_head_restricted_logits_equal_the_matching_vocabulary_slices(tiny_world):
    model = new_model(tiny_world)
    hidden = torch.randn(3, model.sid_length, model.d_model)
    full = model.logits(hidden)
    restricted = model.target_code_logits(hidden)
    for head in range(model.sid_length):
        low = 1 + head * model.codebook_size
        assert torch.allclose(restricted[:, head], full[:, head, low: low + model.codebook_size], atol=1e-5)


def test_loss_is_finite_and_ablation_switches_select_the_losses(tiny_world):
    config, train, _, _ = tiny_world
    batch = first_batch(train)
    model = new_model(tiny_world)
    torch.manual_seed(0)
    total = model.calculate_loss(batch)
    item_loss, his_loss = model.last_losses  # weighted parts
    assert torch.isfinite(total) and item_loss > 0 and his_loss > 0
    assert torch.equal(total, item_loss + his_loss)
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
    with torch.no_grad(), model.decoding(gen_steps=gen_steps, gen_order=gen_order):
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


@pytest.mark.slow
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


# ----- scoring the whole catalog ---------------------------------------------------------------------------

def catalog_batch(tiny_world, model, n_users=6):
    """The first n_users test users: (interaction, history tokens)."""
    interaction = first_batch(tiny_world[3])[0][torch.arange(n_users)]
    return interaction, model.history_tokens(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])


def full_ranking(scores_row: torch.Tensor) -> list[int]:
    """Items with a finite score, best first."""
    order = scores_row.argsort(descending=True)
    return order[torch.isfinite(scores_row[order])].tolist()


def test_marginal_scores_equal_predict_item_by_item(tiny_world):
    model = new_model(tiny_world).eval()
    interaction, history = catalog_batch(tiny_world, model)
    with torch.no_grad(), model.decoding(scoring="marginal"):
        marginal = model.marginal_scores(model.head_log_probs(model.masked_target_hidden(history)))
        ranking = model.full_sort_predict(interaction)
        for item in range(1, N_ITEMS + 1):
            interaction.interaction[model.ITEM_ID] = torch.full((interaction.length,), item)
            assert torch.allclose(model.predict(interaction), marginal[:, item], atol=1e-6)
    assert torch.isneginf(marginal[:, 0]).all()
    for row in range(interaction.length):  # the top-k exactly, ties by item id; below it the marginal's order
        expected = (torch.sort(-marginal[row, 1:], stable=True).indices + 1).tolist()
        ranked = full_ranking(ranking[row])
        assert ranked[:model.max_topk] == expected[:model.max_topk] and sorted(ranked) == sorted(expected)
        assert (marginal[row, ranked[model.max_topk:]].diff() <= 0).all()


def brute_force_joint(model, history_row: torch.Tensor, sid: list[int]) -> float:
    """Chain rule along the adaptive, constrained order with one forward per step, in plain loops."""
    catalog = model.item_sid[1:].tolist()
    state, score = [-1] * model.sid_length, 0.0
    for n_commit in [model.sid_length // model.gen_steps] * model.gen_steps:  # the test uses gen_steps | M
        log_probs = model.code_log_probs(history_row[None], torch.tensor(state)[None, None])[0, 0]
        consistent = [codes for codes in catalog if all(s < 0 or s == c for s, c in zip(state, codes))]
        masked = [m for m in range(model.sid_length) if state[m] < 0]
        masked.sort(key=lambda m: max(log_probs[m, codes[m]].item() for codes in consistent), reverse=True)
        for position in masked[:n_commit]:
            score += log_probs[position, sid[position]].item()
            state[position] = sid[position]
    return score


@pytest.mark.parametrize("gen_steps", [1, 2])
def test_rescoring_every_item_ranks_the_catalog_by_its_exact_joint_log_probability(tiny_world, gen_steps):
    model = new_model(tiny_world).eval()
    interaction, history = catalog_batch(tiny_world, model, n_users=3)
    with torch.no_grad(), model.decoding(scoring="rescore", rescore_candidates=N_ITEMS, gen_steps=gen_steps):
        scores = model.full_sort_predict(interaction)
        marginal = model.marginal_scores(model.head_log_probs(model.masked_target_hidden(history)))
        joint = model.rescored(history, marginal)
        for row in range(interaction.length):
            expected = [brute_force_joint(model, history[row], sid) for sid in model.item_sid[1:].tolist()]
            assert joint[row, 1:].tolist() == pytest.approx(expected, abs=1e-5)
            ranked = full_ranking(scores[row])
            assert sorted(ranked) == list(range(1, N_ITEMS + 1))
            ranked_joint = [expected[item - 1] for item in ranked]
            assert all(a >= b - 1e-5 for a, b in zip(ranked_joint, ranked_joint[1:]))
    if gen_steps == 1:  # one step scores every position from the fully masked block: the marginal score
        assert torch.allclose(joint[:, 1:], marginal[:, 1:], atol=1e-5)


def test_rescore_ranks_its_candidates_first_and_the_rest_by_marginal_score(tiny_world):
    model = new_model(tiny_world).eval()
    interaction, history = catalog_batch(tiny_world, model)
    n_candidates = 7
    with torch.no_grad(), model.decoding(scoring="rescore", rescore_candidates=n_candidates):
        scores = model.full_sort_predict(interaction)
        marginal = model.marginal_scores(model.head_log_probs(model.masked_target_hidden(history)))
        joint = model.rescored(history, marginal)
    for row in range(interaction.length):
        ranked = full_ranking(scores[row])
        candidates = marginal[row].topk(n_candidates).indices.tolist()
        assert sorted(ranked[:n_candidates]) == sorted(candidates)
        assert (joint[row, ranked[:n_candidates]].diff() <= 0).all()
        assert (marginal[row, ranked[n_candidates:]].diff() <= 0).all()


def test_hybrid_puts_the_beams_first_in_beam_order_then_the_rest_by_marginal_score(tiny_world):
    model = new_model(tiny_world).eval()
    interaction, history = catalog_batch(tiny_world, model)
    with torch.no_grad(), model.decoding(scoring="hybrid", num_beams=5):
        beams = model.generated_items(history)
        scores = model.full_sort_predict(interaction)
        marginal = model.marginal_scores(model.head_log_probs(model.masked_target_hidden(history)))
    for row in range(interaction.length):
        generated = [item for item in beams[row].tolist() if item > 0]
        ranked = full_ranking(scores[row])
        assert len(generated) == 5 and ranked[:5] == generated
        assert sorted(ranked) == list(range(1, N_ITEMS + 1))
        assert (marginal[row, ranked[5:]].diff() <= 0).all()


SCORER = {"item_scorer": "sid"}


@pytest.mark.parametrize("scoring", ["beam", "marginal", "hybrid", "rescore", "scorer", "scorer_hybrid", "fused"])
def test_every_scoring_mode_has_no_ties_in_the_top_k_and_never_ranks_padding(tiny_world, scoring):
    model = new_model(tiny_world, **SCORER).eval()
    interaction, _ = catalog_batch(tiny_world, model)
    with torch.no_grad(), model.decoding(scoring=scoring, rescore_candidates=8):
        scores = model.full_sort_predict(interaction)
    assert scores.shape == (interaction.length, N_ITEMS + 1) and torch.isneginf(scores[:, 0]).all()
    top = scores.topk(model.max_topk, dim=1).values
    assert torch.isfinite(top).all() and (top[:, :-1] > top[:, 1:]).all()


def test_decoding_settings_apply_inside_the_block_only_and_are_validated(tiny_world):
    model = new_model(tiny_world)
    with model.decoding(scoring="marginal", num_beams=3):
        assert (model.scoring, model.num_beams) == ("marginal", 3)
    assert (model.scoring, model.num_beams) == ("beam", 12)
    with pytest.raises(ValueError, match="scoring"):
        with model.decoding(scoring="best"):
            pass
    with pytest.raises(ValueError, match="item_scorer"):
        with model.decoding(scoring="scorer"):
            pass
    with pytest.raises(ValueError, match="unknown decoding settings"):
        with model.decoding(beams=3):
            pass
    assert model.scoring == "beam"
    with pytest.raises(ValueError, match="scoring"):
        new_model(tiny_world, scoring="best")
    with pytest.raises(ValueError, match="item_scorer"):
        new_model(tiny_world, item_scorer="mlp")
    with pytest.raises(ValueError, match="valid_scoring"):
        new_model(tiny_world, valid_scoring="scorer")


def test_validation_decodes_with_the_validation_settings(tiny_world):
    config, _, valid, _ = tiny_world
    model = new_model(tiny_world)
    seen = []

    def record(interaction):
        seen.append((model.scoring, model.num_beams))
        return torch.zeros(interaction.length, model.n_items)

    model.full_sort_predict = record
    previous = config["valid_scoring"]
    config["valid_scoring"] = "marginal"
    try:
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        trainer._valid_epoch(valid)
    finally:
        config["valid_scoring"] = previous
    assert seen and set(seen) == {("marginal", config["valid_num_beams"])}
    assert (model.scoring, model.num_beams) == ("beam", config["num_beams"])


# ----- the item scorer -------------------------------------------------------------------------------------

def test_without_the_item_scorer_the_parameters_and_the_loss_are_the_diffusion_ones(tiny_world):
    batch = first_batch(tiny_world[1])
    plain, with_scorer = new_model(tiny_world), new_model(tiny_world, **SCORER)
    plain_names = {name for name, _ in plain.named_parameters()}
    assert not any(name.startswith("scorer") for name in plain_names)
    assert {name for name, _ in with_scorer.named_parameters()} - plain_names == {
        "scorer_projection.weight", "scorer_projection.bias"}
    torch.manual_seed(0)
    plain_loss = plain.calculate_loss(batch)
    torch.manual_seed(0)
    scorer_loss = with_scorer.calculate_loss(batch)
    assert len(plain.last_losses) == 2 and torch.equal(plain_loss, sum(plain.last_losses))
    # Same masks, same initial weights: the diffusion parts agree, the scorer adds the third.
    assert torch.allclose(torch.stack(with_scorer.last_losses[:2]), torch.stack(plain.last_losses), atol=1e-5)
    assert torch.allclose(scorer_loss, sum(with_scorer.last_losses))
    assert with_scorer.last_losses[2] > 0


def test_item_scorer_logits_shapes_and_gradients(tiny_world):
    model = new_model(tiny_world, item_scorer_id_embedding=True, **SCORER)
    _, history = catalog_batch(tiny_world, model)
    logits = model.item_scorer_logits(model.masked_target_hidden(history))
    assert logits.shape == (history.shape[0], N_ITEMS + 1)
    assert torch.isneginf(logits[:, 0]).all() and torch.isfinite(logits[:, 1:]).all()
    model.calculate_loss(first_batch(tiny_world[1])).backward()
    for parameter in (model.scorer_projection.weight, model.scorer_id_embedding.weight,
                      model.token_embedding.weight):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_scorer_mode_ranks_by_the_scorer_logits(tiny_world):
    model = new_model(tiny_world, **SCORER).eval()
    interaction, history = catalog_batch(tiny_world, model)
    with torch.no_grad(), model.decoding(scoring="scorer"):
        logits = model.item_scorer_logits(model.masked_target_hidden(history))
        scores = model.full_sort_predict(interaction)
    for row in range(interaction.length):
        expected = torch.sort(-logits[row, 1:], stable=True).indices + 1
        assert full_ranking(scores[row]) == expected.tolist()


def test_item_scorer_cross_entropy_falls_when_overfitting_one_batch(tiny_world):
    model = new_model(tiny_world, **SCORER)
    batch = first_batch(tiny_world[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scorer_losses = []
    for _ in range(30):
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()
        scorer_losses.append(model.last_losses[2].item())
    assert scorer_losses[-1] < 0.5 * scorer_losses[0], scorer_losses


def saved_backbone(tiny_world, tmp_path, **overrides):
    """A trained-looking LLaDARec (one optimizer step away from its init) saved in RecBole's checkpoint format."""
    model = new_model(tiny_world, **overrides)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.calculate_loss(first_batch(tiny_world[1])).backward()
    optimizer.step()
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": model.state_dict(), "config": None}, path)
    return model, path


@pytest.mark.parametrize("item_scorer_loss", ["scorer", "fused"])
def test_the_adapter_trains_only_the_scorer_on_the_frozen_backbone(tiny_world, tmp_path, item_scorer_loss):
    backbone, path = saved_backbone(tiny_world, tmp_path)
    adapter = new_model(tiny_world, item_scorer_backbone=str(path), item_scorer_id_embedding=True,
                        item_scorer_loss=item_scorer_loss, **SCORER)
    trainable = {name for name, p in adapter.named_parameters() if p.requires_grad}
    assert trainable == {"scorer_projection.weight", "scorer_projection.bias", "scorer_id_embedding.weight"}
    frozen = {name: p.detach().clone() for name, p in adapter.named_parameters() if not p.requires_grad}
    assert all(torch.equal(frozen[name], p) for name, p in backbone.named_parameters())
    assert adapter.loss_part_names == ("scorer",)

    adapter.train()
    assert not adapter.encoder.training and not adapter.embedding_dropout.training and adapter.training
    optimizer = torch.optim.Adam([p for p in adapter.parameters() if p.requires_grad], lr=0.01)
    batch = first_batch(tiny_world[1])
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = adapter.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert len(adapter.last_losses) == 1 and losses[-1] < 0.7 * losses[0], losses
    assert all(torch.equal(frozen[name], p) for name, p in adapter.named_parameters() if not p.requires_grad)

    # Beam search is the backbone's own: same weights, and dropout off in both at inference.
    interaction, _ = catalog_batch(tiny_world, adapter)
    with torch.no_grad():
        assert torch.equal(adapter.eval().full_sort_predict(interaction), backbone.eval().full_sort_predict(interaction))


def test_the_adapter_refuses_a_backbone_of_other_sids_or_without_a_scorer(tiny_world, tmp_path):
    backbone, path = saved_backbone(tiny_world, tmp_path)
    state = torch.load(path, weights_only=False)
    state["state_dict"]["item_sid"] = state["state_dict"]["item_sid"].flip(0)
    other = tmp_path / "other_sids.pth"
    torch.save(state, other)
    with pytest.raises(ValueError, match="other semantic IDs"):
        new_model(tiny_world, item_scorer_backbone=str(other), **SCORER)
    with pytest.raises(ValueError, match="set item_scorer: sid"):
        new_model(tiny_world, item_scorer_backbone=str(path))


def brute_force_fused_cross_entropy(model, history: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over users of -log softmax(scorer logit + marginal score)[target] over the real items, in plain loops:
    one full forward, the full vocabulary logits sliced per head, each item's vector built from its own tokens."""
    tokens = torch.cat([history, torch.full((history.shape[0], model.sid_length), model.mask_token)], dim=1)
    hidden = model(tokens)[:, -model.sid_length:]
    vocab_logits = model.logits(hidden)
    losses = []
    for row in range(history.shape[0]):
        user = model.scorer_projection(hidden[row].mean(dim=0))
        fused = []
        for item in range(1, model.n_items):
            codes = model.item_sid[item].tolist()
            token_ids = [1 + head * model.codebook_size + code for head, code in enumerate(codes)]
            vector = model.token_embedding.weight[token_ids].mean(dim=0)
            if model.scorer_id_embedding is not None:
                vector = vector + model.scorer_id_embedding.weight[item]
            marginal = sum(torch.log_softmax(vocab_logits[row, head, 1 + head * model.codebook_size:
                                                             1 + (head + 1) * model.codebook_size], dim=0)[code]
                           for head, code in enumerate(codes))
            fused.append(user @ vector + marginal)
        fused = torch.stack(fused)
        losses.append(torch.logsumexp(fused, dim=0) - fused[targets[row] - 1])
    return torch.stack(losses).mean()


@pytest.mark.parametrize("adapter", [False, True])
def test_the_fused_scorer_loss_is_the_cross_entropy_of_scorer_plus_marginal(tiny_world, tmp_path, adapter):
    settings = dict(item_scorer_loss="fused", item_scorer_id_embedding=True, **SCORER)
    if adapter:
        _, path = saved_backbone(tiny_world, tmp_path)
        settings["item_scorer_backbone"] = str(path)
    model = new_model(tiny_world, **settings)
    # Both terms must matter: ID embeddings away from their init, and a sharp temperature so that the (barely
    # trained) marginal is far from uniform, i.e. far from a per-user constant that the cross-entropy ignores.
    with torch.no_grad():
        model.scorer_id_embedding.weight.normal_(std=0.5)
    model.temperature = 0.05
    batch = first_batch(tiny_world[1])
    model.calculate_loss(batch)  # dropout_prob is 0: the joint third slice is exactly the masked-target forward
    scorer_part = model.last_losses[-1] / (1 if adapter else model.item_scorer_weight)
    history = model.history_tokens(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    targets = batch[model.POS_ITEM_ID]
    assert (targets > 0).all()
    with torch.no_grad():
        expected = brute_force_fused_cross_entropy(model, history, targets)
    assert torch.isfinite(scorer_part)
    assert torch.allclose(scorer_part, expected, rtol=1e-4, atol=1e-5), (scorer_part, expected)
    # The option changes the loss: the scorer-only cross-entropy of the same weights is another number.
    model.item_scorer_loss = "scorer"
    model.calculate_loss(batch)
    scorer_only = model.last_losses[-1] / (1 if adapter else model.item_scorer_weight)
    assert (scorer_only - expected).abs() > 0.1 * expected, (scorer_only, expected)


def test_the_fused_scorer_loss_sends_no_gradient_into_the_diffusion_head(tiny_world):
    """Joint training: the marginal is detached, so with the diffusion losses weighted 0 the output layer (only
    the marginal reads it) gets an all-zero gradient, while the scorer and the token embeddings learn."""
    model = new_model(tiny_world, item_scorer_loss="fused", item_mask_weight=0.0, his_mask_weight=0.0, **SCORER)
    model.calculate_loss(first_batch(tiny_world[1])).backward()
    assert model.output.weight.grad is not None and torch.count_nonzero(model.output.weight.grad) == 0
    assert model.scorer_projection.weight.grad.abs().sum() > 0
    assert model.token_embedding.weight.grad.abs().sum() > 0


def test_item_scorer_loss_is_validated(tiny_world):
    assert new_model(tiny_world).item_scorer_loss == "scorer"  # the YAML default: the behaviour before the key
    with pytest.raises(ValueError, match="item_scorer_loss must be one of"):
        new_model(tiny_world, item_scorer_loss="residual", **SCORER)
    with pytest.raises(ValueError, match="set item_scorer: sid"):
        new_model(tiny_world, item_scorer_loss="fused")


def test_an_adapter_run_trains_on_a_saved_run_and_keeps_its_beam_search(tmp_path, monkeypatch):
    """End to end through RecBole's trainer: a backbone run, then an adapter run on its checkpoint."""
    monkeypatch.chdir(tmp_path)  # RecBole writes log/ into the working directory
    settings = llada_config_dict(tmp_path, epochs=2, dropout_prob=0.1, checkpoint_dir=str(tmp_path / "saved"))
    backbone = quick_start.run("LLaDARec", TINY_DATASET, (), settings)
    adapter = quick_start.run("LLaDARec", TINY_DATASET, (), {
        **settings, "item_scorer": "sid", "item_scorer_id_embedding": True, "valid_scoring": "fused",
        "item_scorer_backbone": backbone.saved_model_file, "checkpoint_dir": str(tmp_path / "saved_adapter")})
    assert adapter.test_result == backbone.test_result  # scoring: beam, the frozen backbone's own search
    saved = torch.load(adapter.saved_model_file, weights_only=False)["state_dict"]
    original = torch.load(backbone.saved_model_file, weights_only=False)["state_dict"]
    assert all(torch.equal(saved[key], value) for key, value in original.items())
    assert {key for key in saved if key not in original} == {
        "scorer_projection.weight", "scorer_projection.bias", "scorer_id_embedding.weight"}


def test_the_trainer_warns_when_the_adapter_validates_below_its_backbone(tiny_world, tmp_path):
    """The backbone's best validation is read once, with its weights (the model's backbone_validation)."""
    config = tiny_world[0]
    _, path = saved_backbone(tiny_world, tmp_path)
    warnings = []

    def adapter_trainer(best_valid_score: float):
        adapter = new_model(tiny_world, item_scorer_backbone=str(path), **SCORER)
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, adapter)
        trainer.logger = SimpleNamespace(warning=warnings.append)
        trainer.best_valid_score = best_valid_score
        return trainer

    adapter_trainer(0.3).warn_if_the_adapter_trails_its_backbone()  # a checkpoint without config and score
    assert warnings == []

    checkpoint = torch.load(path, weights_only=False)
    checkpoint.update(best_valid_score=0.5, config={"valid_metric": config["valid_metric"], "valid_scoring": "beam"})
    torch.save(checkpoint, path)
    adapter_trainer(0.3).warn_if_the_adapter_trails_its_backbone()
    assert len(warnings) == 1 and "0.3000" in warnings[0] and "below its backbone's 0.5000" in warnings[0]
    adapter_trainer(0.6).warn_if_the_adapter_trails_its_backbone()
    assert len(warnings) == 1
    checkpoint["config"]["valid_metric"] = "Recall@50"  # another metric: not comparable
    torch.save(checkpoint, path)
    adapter_trainer(0.3).warn_if_the_adapter_trails_its_backbone()
    assert len(warnings) == 1
    assert new_model(tiny_world).backbone_validation is None  # no adapter, nothing to compare


def test_an_epoch_reports_each_weighted_loss_part(tiny_world):
    config, train, _, _ = tiny_world
    model = new_model(tiny_world, **SCORER)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    total = trainer._train_epoch(train, 0)
    parts = trainer.epoch_loss_parts
    assert len(parts) == 3 and all(part > 0 for part in parts)
    assert total == pytest.approx(sum(parts), rel=1e-5)
    line = trainer._generate_train_loss_output(0, 0.0, 1.0, total)
    for name, part in zip(("item", "history", "scorer"), parts):
        assert f"{name} loss: {part:.4f}" in line


def test_precision_chooses_bf16_autocast_on_cuda_or_float32():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        assert isinstance(devices.autocast(cuda, "bf16"), torch.autocast)
    assert isinstance(devices.autocast(cuda, "fp32"), contextlib.nullcontext)
    assert isinstance(devices.autocast(cpu, "bf16"), contextlib.nullcontext)
    with pytest.raises(ValueError, match="precision must be one of"):
        devices.autocast(cuda, "fp16")


def test_every_scoring_mode_and_the_scorer_loss_run_under_bf16_autocast(tiny_world, monkeypatch):
    """CUDA decodes under bf16 autocast (devices.autocast, precision: bf16); CPU autocast mimics its mixed dtypes."""
    model = new_model(tiny_world, **SCORER)
    cpu_autocast = lambda device, precision="bf16": torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    monkeypatch.setattr(llada_rec, "autocast", cpu_autocast)
    with cpu_autocast(model.item_sid.device):
        assert torch.isfinite(model.calculate_loss(first_batch(tiny_world[1])))
    model.eval()
    interaction, _ = catalog_batch(tiny_world, model, n_users=3)
    for scoring in ("marginal", "hybrid", "rescore", "scorer", "scorer_hybrid", "fused"):
        with torch.no_grad(), model.decoding(scoring=scoring, rescore_candidates=8):
            scores = model.full_sort_predict(interaction)
        assert scores.dtype == torch.float32 and torch.isfinite(scores[:, 1:]).all(), scoring
