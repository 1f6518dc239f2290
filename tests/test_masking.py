"""The two training corruptions and the 1/p-weighted loss, against formulas and a hand loop."""

import math

import pytest
import torch

from recbole_llada.model.masking import (mask_history, mask_next_item,
                                         weighted_masked_cross_entropy)

MASK = 99


def test_next_item_masks_exactly_k_tokens_with_probability_k_over_m():
    sid_length = 4
    targets = torch.randint(1, 50, (3000, sid_length), generator=torch.Generator().manual_seed(1))
    out = mask_next_item(targets, MASK, generator=torch.Generator().manual_seed(0))
    n_masked = out.masked.sum(dim=1)
    assert n_masked.min() >= 1 and n_masked.max() <= sid_length
    assert torch.allclose(out.mask_prob, (n_masked.float() / sid_length)[:, None].expand(-1, 4))
    assert torch.equal(out.tokens, torch.where(out.masked, MASK, targets))
    # k ~ U{1..M}: each value about a quarter of the time, and positions are exchangeable.
    counts = torch.bincount(n_masked, minlength=sid_length + 1)[1:].float()
    assert torch.all((counts / len(targets) - 1 / sid_length).abs() < 0.03)
    position_rate = out.masked.float().mean(dim=0)
    assert torch.all((position_rate - 2.5 / sid_length).abs() < 0.03)


def test_next_item_is_reproducible_with_a_generator():
    targets = torch.randint(1, 50, (20, 3))
    first = mask_next_item(targets, MASK, generator=torch.Generator().manual_seed(7))
    second = mask_next_item(targets, MASK, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first.tokens, second.tokens)
    assert torch.equal(first.mask_prob, second.mask_prob)


def _left_padded(batch_size: int, n_items: int, sid_length: int, n_valid_items: torch.Tensor):
    item_index = torch.arange(n_items * sid_length) // sid_length
    valid = item_index[None, :] >= (n_items - n_valid_items)[:, None]
    tokens = torch.randint(1, 50, (batch_size, n_items * sid_length)).masked_fill(~valid, 0)
    return tokens, valid


def test_history_never_masks_padding_and_items_share_their_probability():
    batch_size, n_items, sid_length = 500, 5, 4
    n_valid_items = torch.randint(1, n_items + 1, (batch_size,),
                                  generator=torch.Generator().manual_seed(3))
    tokens, valid = _left_padded(batch_size, n_items, sid_length, n_valid_items)
    out = mask_history(tokens, valid, sid_length, MASK, generator=torch.Generator().manual_seed(0))
    assert not out.masked[~valid].any()
    assert torch.all(out.mask_prob[~valid] == 0)
    assert torch.equal(out.tokens, torch.where(out.masked, MASK, tokens))
    per_item = out.mask_prob.view(batch_size, n_items, sid_length)
    assert torch.all(per_item == per_item[:, :, :1])
    valid_items = valid.view(batch_size, n_items, sid_length)[:, :, 0]
    n_masked_per_item = out.masked.view(batch_size, n_items, sid_length).sum(dim=2)
    item_prob = per_item[:, :, 0]
    # p = k/M with k in 0..M: p = 0 masks nothing, p = 1 masks the whole item.
    scaled = item_prob[valid_items] * sid_length
    assert torch.all(scaled.round() == scaled)
    assert torch.all(n_masked_per_item[item_prob == 0] == 0)
    assert torch.all(n_masked_per_item[(item_prob == 1) & valid_items] == sid_length)


def test_history_empirical_mask_rate_matches_item_probability():
    batch_size, n_items, sid_length = 4000, 3, 4
    tokens, valid = _left_padded(batch_size, n_items, sid_length, torch.full((batch_size,), n_items))
    out = mask_history(tokens, valid, sid_length, MASK, generator=torch.Generator().manual_seed(5))
    k = (out.mask_prob * sid_length).round().long()
    assert set(k.unique().tolist()) == set(range(sid_length + 1))
    for value in range(sid_length + 1):
        selected = k == value
        rate = out.masked[selected].float().mean().item()
        assert abs(rate - value / sid_length) < 0.02, (value, rate)


def test_history_rejects_length_not_multiple_of_digits():
    tokens = torch.ones(2, 7, dtype=torch.long)
    with pytest.raises(ValueError):
        mask_history(tokens, tokens.bool(), 4, MASK)


def test_weighted_cross_entropy_matches_a_hand_loop():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=generator)
    targets = torch.randint(0, 5, (2, 3), generator=generator)
    masked = torch.tensor([[True, False, True], [False, False, True]])
    mask_prob = torch.tensor([[0.5, 0.5, 0.5], [0.25, 1.0, 0.75]])
    expected = 0.0
    for b in range(2):
        for n in range(3):
            if masked[b, n]:
                row = logits[b, n].tolist()
                log_z = math.log(sum(math.exp(v) for v in row))
                expected += (log_z - row[targets[b, n]]) / mask_prob[b, n].item()
    loss = weighted_masked_cross_entropy(logits, targets, masked, mask_prob, normalizer=6)
    assert loss.item() == pytest.approx(expected / 6, rel=1e-5)


def test_weighted_cross_entropy_gradient_only_at_masked_positions():
    logits = torch.randn(2, 4, 6, requires_grad=True)
    targets = torch.randint(0, 6, (2, 4))
    masked = torch.tensor([[True, False, False, True], [False, True, False, False]])
    weighted_masked_cross_entropy(logits, targets, masked, torch.full((2, 4), 0.5), 8).backward()
    row_has_grad = logits.grad.abs().sum(dim=-1) > 0
    assert torch.equal(row_has_grad, masked)


def test_weighted_cross_entropy_is_zero_with_a_grad_path_when_nothing_is_masked():
    logits = torch.randn(2, 4, 6, requires_grad=True)
    masked = torch.zeros(2, 4, dtype=torch.bool)
    loss = weighted_masked_cross_entropy(logits, torch.zeros(2, 4, dtype=torch.long), masked,
                                         torch.zeros(2, 4), normalizer=8)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_weighted_cross_entropy_upcasts_bf16_logits():
    logits = torch.randn(1, 3, 4).bfloat16()
    masked = torch.ones(1, 3, dtype=torch.bool)
    loss = weighted_masked_cross_entropy(logits, torch.zeros(1, 3, dtype=torch.long), masked,
                                         torch.ones(1, 3), normalizer=3)
    reference = torch.nn.functional.cross_entropy(logits[0].float(),
                                                  torch.zeros(3, dtype=torch.long))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
