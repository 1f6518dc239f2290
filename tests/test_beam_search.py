"""The adapted beam search against exhaustive path scores and a plain-Python beam search.

The fake model is a fixed random table of log-probabilities per (user, partial SID), so each beam's
scores depend on its own state: re-using another beam's log-probabilities shows up as a mismatch.
"""

import itertools

import pytest
import torch

from recbole_llada.decoding.beam_search import (DECODING_ORDERS, generate_topk, sequence_log_probs,
                                                tokens_per_step)
from recbole_llada.decoding.constraints import SIDIndex


class FakeModel:
    """log_prob_fn over a table [B, (K+1)^M, M, K] indexed by each beam's partial SID."""

    def __init__(self, batch_size: int, sid_length: int, codebook_size: int, seed: int,
                 dtype: torch.dtype = torch.float32):
        generator = torch.Generator().manual_seed(seed)
        n_states = (codebook_size + 1) ** sid_length
        logits = 3 * torch.randn(batch_size, n_states, sid_length, codebook_size,
                                 generator=generator)
        self.table = logits.log_softmax(dim=-1).to(dtype)
        self.sid_length, self.codebook_size = sid_length, codebook_size
        self.calls = 0

    def state_id(self, partial: torch.Tensor) -> torch.Tensor:
        place = (self.codebook_size + 1) ** torch.arange(self.sid_length)
        return ((partial + 1) * place).sum(dim=-1)

    def __call__(self, partial: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        users = torch.arange(partial.shape[0])[:, None]
        return self.table[users, self.state_id(partial)]

    def user(self, b: int) -> "FakeModel":
        single = FakeModel.__new__(FakeModel)
        single.table, single.sid_length, single.codebook_size = (self.table[b:b + 1], self.sid_length,
                                                               self.codebook_size)
        single.calls = 0
        return single

    def log_probs(self, b: int, state: tuple[int, ...]) -> list[list[float]]:
        partial = torch.tensor(state)[None, None, :]
        return self.table[b, self.state_id(partial)[0, 0]].float().tolist()


def _allowed(items: list[tuple[int, ...]] | None, state, position, code) -> bool:
    if items is None:
        return True
    return any(item[position] == code and all(s < 0 or s == i for s, i in zip(state, item))
               for item in items)


def _plan(order, state, log_probs, n_commit, items, codebook_size, permutation=None):
    masked = [m for m in range(len(state)) if state[m] < 0]
    if order == "adaptive":
        def confidence(m):
            return max((log_probs[m][c] for c in range(codebook_size)
                        if _allowed(items, state, m, c)), default=float("-inf"))
        masked.sort(key=confidence, reverse=True)
    elif order == "right2left":
        masked.reverse()
    elif order == "permutation":
        masked.sort(key=permutation.index)
    return masked[:n_commit]


def brute_force_beam_search(model: FakeModel, b: int, sid_length: int, codebook_size: int,
                            num_beams: int, gen_steps: int, order: str, items=None,
                            permutation=None) -> list[tuple[float, tuple[int, ...]]]:
    """Plain loops per beam: the paper's algorithm with each beam keeping its own step logits."""
    base, remainder = divmod(sid_length, gen_steps)
    beams = [(0.0, (-1,) * sid_length)]
    for step in range(gen_steps):
        n_commit = base + (1 if step < remainder else 0)
        expanded = []
        for score, state in beams:
            log_probs = model.log_probs(b, state)
            plan = _plan(order, state, log_probs, n_commit, items, codebook_size, permutation)
            expanded.append((score, state, log_probs, plan))
        for slot in range(n_commit):
            candidates = []
            for score, state, log_probs, plan in expanded:
                position = plan[slot]
                for code in range(codebook_size):
                    if _allowed(items, state, position, code):
                        new_state = list(state)
                        new_state[position] = code
                        candidates.append((score + log_probs[position][code], tuple(new_state),
                                           log_probs, plan))
            candidates.sort(key=lambda candidate: -candidate[0])
            expanded = candidates[:num_beams]
        beams = [(score, state) for score, state, _, _ in expanded]
    return beams


def _live(output, b):
    """[(score, sid)] of user b's live beams."""
    return [(score, tuple(sid)) for score, sid in zip(output.scores[b].tolist(),
                                                      output.codes[b].tolist())
            if score != float("-inf")]


def _assert_same_beams(live, expected):
    assert [sid for _, sid in live] == [sid for _, sid in expected]
    assert [score for score, _ in live] == pytest.approx([score for score, _ in expected],
                                                        abs=1e-4)


def _assert_well_formed(output):
    scores = output.scores
    assert scores.dtype == torch.float32
    assert torch.all(scores[:, 1:] <= scores[:, :-1])
    dead = torch.isneginf(scores)
    assert torch.all(output.codes[dead] == -1)
    assert torch.all(output.codes[~dead] >= 0)
    for b in range(scores.shape[0]):
        sids = [sid for _, sid in _live(output, b)]
        assert len(sids) == len(set(sids))


def test_tokens_per_step_spreads_the_remainder_over_the_first_steps():
    for sid_length in range(1, 9):
        for gen_steps in range(1, sid_length + 1):
            counts = tokens_per_step(sid_length, gen_steps)
            assert len(counts) == gen_steps and sum(counts) == sid_length
            assert counts == sorted(counts, reverse=True) and counts[0] - counts[-1] <= 1
    with pytest.raises(ValueError):
        tokens_per_step(4, 5)
    with pytest.raises(ValueError):
        tokens_per_step(4, 0)


def _path_score(model, b, sid, first_position, gen_steps):
    """Exhaustive scoring for M = 2: with one step both codes come from the empty state; with two
    steps the first committed position comes from the empty state, the other from the state with
    that position filled."""
    empty = model.log_probs(b, (-1, -1))
    if gen_steps == 1:
        return empty[0][sid[0]] + empty[1][sid[1]]
    other = 1 - first_position
    state = [-1, -1]
    state[first_position] = sid[first_position]
    second = model.log_probs(b, tuple(state))
    return empty[first_position][sid[first_position]] + second[other][sid[other]]


@pytest.mark.parametrize("gen_steps", [1, 2])
@pytest.mark.parametrize("order", DECODING_ORDERS)
def test_wide_beam_returns_every_sid_once_with_its_path_score(order, gen_steps):
    batch_size, sid_length, codebook_size, num_beams = 3, 2, 3, 11
    model = FakeModel(batch_size, sid_length, codebook_size, seed=10 + gen_steps)
    output = generate_topk(model, batch_size, sid_length, codebook_size, num_beams, gen_steps,
                           order=order, generator=torch.Generator().manual_seed(0))
    _assert_well_formed(output)
    all_sids = set(itertools.product(range(codebook_size), repeat=sid_length))
    for b in range(batch_size):
        live = _live(output, b)
        assert {sid for _, sid in live} == all_sids and len(live) == len(all_sids)
        empty = model.log_probs(b, (-1, -1))
        adaptive_first = max(range(sid_length), key=lambda m: max(empty[m]))
        candidates_first = {"adaptive": [adaptive_first], "left2right": [0], "right2left": [1],
                            "random": [0, 1]}[order]
        matches = []
        for first in candidates_first:
            expected = {sid: _path_score(model, b, sid, first, gen_steps) for sid in all_sids}
            matches.append(all(score == pytest.approx(expected[sid], abs=1e-5)
                               for score, sid in live))
        assert any(matches)


CASES = [(sid_length, gen_steps, num_beams)
         for sid_length in (3, 4)
         for gen_steps in range(1, sid_length + 1)
         for num_beams in (2, 4)]


@pytest.mark.parametrize("sid_length,gen_steps,num_beams", CASES)
@pytest.mark.parametrize("order", ["adaptive", "left2right", "right2left"])
def test_matches_plain_python_beam_search(order, sid_length, gen_steps, num_beams):
    batch_size, codebook_size = 3, 3
    model = FakeModel(batch_size, sid_length, codebook_size, seed=100 * sid_length + gen_steps)
    output = generate_topk(model, batch_size, sid_length, codebook_size, num_beams, gen_steps,
                           order=order)
    _assert_well_formed(output)
    assert model.calls == gen_steps
    for b in range(batch_size):
        expected = brute_force_beam_search(model, b, sid_length, codebook_size, num_beams,
                                           gen_steps, order)
        _assert_same_beams(_live(output, b), expected)


@pytest.mark.parametrize("gen_steps", [2, 3])
def test_random_order_is_some_fixed_permutation_per_user(gen_steps):
    batch_size, sid_length, codebook_size, num_beams = 4, 3, 3, 3
    model = FakeModel(batch_size, sid_length, codebook_size, seed=7)
    output = generate_topk(model, batch_size, sid_length, codebook_size, num_beams, gen_steps,
                           order="random", generator=torch.Generator().manual_seed(1))
    again = generate_topk(model, batch_size, sid_length, codebook_size, num_beams, gen_steps,
                          order="random", generator=torch.Generator().manual_seed(1))
    assert torch.equal(output.codes, again.codes)
    for b in range(batch_size):
        live = _live(output, b)
        found = False
        for permutation in itertools.permutations(range(sid_length)):
            expected = brute_force_beam_search(model, b, sid_length, codebook_size, num_beams,
                                               gen_steps, "permutation",
                                               permutation=list(permutation))
            if [sid for _, sid in live] == [sid for _, sid in expected]:
                _assert_same_beams(live, expected)
                found = True
                break
        assert found


@pytest.mark.parametrize("gen_steps", [1, 2, 3])
@pytest.mark.parametrize("order", ["adaptive", "left2right", "right2left"])
def test_constrained_search_matches_plain_python_and_yields_only_items(order, gen_steps):
    batch_size, sid_length, codebook_size, num_beams = 2, 3, 3, 4
    generator = torch.Generator().manual_seed(gen_steps)
    all_sids = torch.tensor(list(itertools.product(range(codebook_size), repeat=sid_length)))
    item_sid = torch.cat([torch.zeros(1, sid_length, dtype=torch.long),
                          all_sids[torch.randperm(len(all_sids), generator=generator)[:8]]])
    index = SIDIndex(item_sid, codebook_size)
    items = [tuple(sid) for sid in item_sid[1:].tolist()]
    model = FakeModel(batch_size, sid_length, codebook_size, seed=gen_steps)
    output = generate_topk(model, batch_size, sid_length, codebook_size, num_beams, gen_steps,
                           order=order, index=index)
    _assert_well_formed(output)
    for b in range(batch_size):
        live = _live(output, b)
        assert all(sid in items for _, sid in live)
        expected = brute_force_beam_search(model, b, sid_length, codebook_size, num_beams,
                                           gen_steps, order, items=items)
        _assert_same_beams(live, expected)
    item_of = {tuple(sid): item for item, sid in enumerate(item_sid.tolist()) if item > 0}
    for b in range(batch_size):
        for w, sid in enumerate(output.codes[b].tolist()):
            assert output.items[b, w].item() == item_of.get(tuple(sid), -1)


@pytest.mark.parametrize("gen_steps", [1, 2, 4])
@pytest.mark.parametrize("order", DECODING_ORDERS)
def test_constrained_wide_beam_returns_exactly_the_items(order, gen_steps):
    batch_size, sid_length, codebook_size, n_real = 2, 4, 3, 17
    generator = torch.Generator().manual_seed(3)
    all_sids = torch.tensor(list(itertools.product(range(codebook_size), repeat=sid_length)))
    item_sid = torch.cat([torch.zeros(1, sid_length, dtype=torch.long),
                          all_sids[torch.randperm(len(all_sids), generator=generator)[:n_real]]])
    model = FakeModel(batch_size, sid_length, codebook_size, seed=5)
    output = generate_topk(model, batch_size, sid_length, codebook_size, n_real, gen_steps,
                           order=order, index=SIDIndex(item_sid, codebook_size),
                           generator=torch.Generator().manual_seed(0))
    _assert_well_formed(output)
    for b in range(batch_size):
        assert sorted(output.items[b].tolist()) == list(range(1, n_real + 1))


@pytest.mark.parametrize("order", ["adaptive", "left2right", "right2left"])
def test_batch_equals_one_user_at_a_time(order):
    batch_size, sid_length, codebook_size, num_beams, gen_steps = 4, 4, 3, 5, 2
    model = FakeModel(batch_size, sid_length, codebook_size, seed=21)
    batched = generate_topk(model, batch_size, sid_length, codebook_size, num_beams, gen_steps,
                            order=order)
    for b in range(batch_size):
        alone = generate_topk(model.user(b), 1, sid_length, codebook_size, num_beams, gen_steps,
                              order=order)
        assert torch.equal(alone.codes[0], batched.codes[b])
        assert torch.equal(alone.scores[0], batched.scores[b])


@pytest.mark.parametrize("gen_steps", [1, 2, 3, 4])
def test_adaptive_search_never_yields_duplicates(gen_steps):
    batch_size, sid_length, codebook_size, num_beams = 3, 4, 4, 40
    for seed in range(3):
        model = FakeModel(batch_size, sid_length, codebook_size, seed=seed)
        _assert_well_formed(generate_topk(model, batch_size, sid_length, codebook_size, num_beams,
                                          gen_steps, order="adaptive"))


def test_bf16_model_scores_are_accumulated_in_float32():
    batch_size, sid_length, codebook_size, num_beams, gen_steps = 2, 4, 3, 3, 2
    model = FakeModel(batch_size, sid_length, codebook_size, seed=2, dtype=torch.bfloat16)
    output = generate_topk(model, batch_size, sid_length, codebook_size, num_beams, gen_steps)
    _assert_well_formed(output)
    for b in range(batch_size):
        expected = brute_force_beam_search(model, b, sid_length, codebook_size, num_beams,
                                           gen_steps, "adaptive")
        _assert_same_beams(_live(output, b), expected)


def test_invalid_arguments_are_rejected():
    model = FakeModel(1, 2, 3, seed=0)
    with pytest.raises(ValueError):
        generate_topk(model, 1, 2, 3, num_beams=2, gen_steps=3)
    with pytest.raises(ValueError, match="adaptive"):
        generate_topk(model, 1, 2, 3, num_beams=2, gen_steps=1, order="middle_out")
    with pytest.raises(ValueError, match="shape"):
        generate_topk(model, 1, 2, 4, num_beams=2, gen_steps=1)
    with pytest.raises(ValueError):
        generate_topk(model, 1, 2, 3, num_beams=2, gen_steps=1,
                      index=SIDIndex(torch.tensor([[0, 0, 0], [1, 2, 0]]), codebook_size=3))


def brute_force_sequence_score(model: FakeModel, b: int, sid: tuple[int, ...], codebook_size: int,
                               gen_steps: int, order: str, items=None) -> float:
    """The chain rule along the generation order, one forced SID at a time, in plain loops."""
    sid_length = len(sid)
    base, remainder = divmod(sid_length, gen_steps)
    state, score = [-1] * sid_length, 0.0
    for step in range(gen_steps):
        log_probs = model.log_probs(b, tuple(state))
        plan = _plan(order, tuple(state), log_probs, base + (step < remainder), items, codebook_size)
        for position in plan:
            score += log_probs[position][sid[position]]
            state[position] = sid[position]
    return score


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("gen_steps", [1, 2, 3])
@pytest.mark.parametrize("order", ["adaptive", "left2right", "right2left"])
def test_sequence_log_probs_are_the_chain_rule_along_the_generation_order(order, gen_steps, constrained):
    batch_size, sid_length, codebook_size = 2, 3, 3
    all_sids = torch.tensor(list(itertools.product(range(codebook_size), repeat=sid_length)))
    item_sid = torch.cat([torch.zeros(1, sid_length, dtype=torch.long),
                          all_sids[torch.randperm(len(all_sids), generator=torch.Generator().manual_seed(4))[:9]]])
    index = SIDIndex(item_sid, codebook_size) if constrained else None
    items = [tuple(sid) for sid in item_sid[1:].tolist()] if constrained else None
    candidates = item_sid[1:] if constrained else all_sids
    model = FakeModel(batch_size, sid_length, codebook_size, seed=30 + gen_steps)
    scores = sequence_log_probs(model, candidates.expand(batch_size, -1, -1), codebook_size, gen_steps,
                                order, index)
    assert scores.shape == (batch_size, len(candidates)) and model.calls == gen_steps
    for b in range(batch_size):
        expected = [brute_force_sequence_score(model, b, tuple(sid), codebook_size, gen_steps, order, items)
                    for sid in candidates.tolist()]
        assert scores[b].tolist() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("gen_steps", [1, 2, 4])
@pytest.mark.parametrize("order", ["adaptive", "left2right", "right2left"])
def test_sequence_log_probs_equal_the_scores_of_an_exhaustive_beam_search(order, gen_steps):
    batch_size, sid_length, codebook_size, n_real = 2, 4, 3, 17
    all_sids = torch.tensor(list(itertools.product(range(codebook_size), repeat=sid_length)))
    item_sid = torch.cat([torch.zeros(1, sid_length, dtype=torch.long),
                          all_sids[torch.randperm(len(all_sids), generator=torch.Generator().manual_seed(3))[:n_real]]])
    index = SIDIndex(item_sid, codebook_size)
    model = FakeModel(batch_size, sid_length, codebook_size, seed=8)
    beams = generate_topk(model, batch_size, sid_length, codebook_size, n_real, gen_steps, order=order,
                          index=index)
    rescored = sequence_log_probs(model, beams.codes, codebook_size, gen_steps, order, index)
    assert torch.allclose(rescored, beams.scores, atol=1e-5)


def test_sequence_log_probs_reject_incomplete_sids():
    with pytest.raises(ValueError, match="complete"):
        sequence_log_probs(FakeModel(1, 2, 3, seed=0), torch.tensor([[[0, -1]]]), 3, gen_steps=1)


@pytest.mark.parametrize("order", DECODING_ORDERS)
def test_search_never_turns_a_tensor_into_a_python_value(order, monkeypatch):
    """No .item(), bool(tensor), tolist() ... inside the search: on a GPU each is a host sync."""
    batch_size, sid_length, codebook_size, num_beams, gen_steps = 2, 4, 3, 5, 2
    all_sids = torch.tensor(list(itertools.product(range(codebook_size), repeat=sid_length)))
    item_sid = torch.cat([torch.zeros(1, sid_length, dtype=torch.long), all_sids[::3]])
    index = SIDIndex(item_sid, codebook_size)
    model = FakeModel(batch_size, sid_length, codebook_size, seed=4)
    generator = torch.Generator().manual_seed(0)

    def host_sync(*args, **kwargs):
        raise AssertionError("a tensor was turned into a Python value")

    for name in ("__bool__", "__int__", "__float__", "__index__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, host_sync)
    output = generate_topk(model, batch_size, sid_length, codebook_size, num_beams, gen_steps,
                           order=order, index=index, generator=generator)
    monkeypatch.undo()
    _assert_well_formed(output)
    with pytest.raises(AssertionError, match="Python value"):  # the probe itself works
        monkeypatch.setattr(torch.Tensor, "__bool__", host_sync)
        bool(torch.ones(1))
