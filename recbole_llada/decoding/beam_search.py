"""LLaDA-Rec's adapted beam search over the M positions of a semantic ID (paper Sec. 4.3).

Decoding runs `gen_steps` steps. Each step makes one model call for all beams; then every beam
picks the still-masked positions it commits in this step (adaptive: its most confident ones), and
the beams are expanded one position at a time: each beam is extended with every allowed code,
and the best `num_beams` candidates per user survive. A beam carries its step log-probabilities
and its planned positions with it when the beams are re-ordered (the official implementation
indexes them by the old beam order once a step commits several positions).

Beams never need de-duplication: two beams descend from a common ancestor whose expansion gave
them different codes at the same position, and committed codes never change, so distinct beams
always differ at a position both have committed.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recbole_llada.decoding.constraints import SIDIndex

DECODING_ORDERS = ("adaptive", "left2right", "right2left", "random")

LogProbFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class BeamOutput:
    """Beams of every user, best first."""

    codes: torch.Tensor  # long [B, W, M]; all -1 for a dead beam
    scores: torch.Tensor  # float32 [B, W]: joint log-probability, descending, -inf = dead beam
    items: torch.Tensor | None  # long [B, W]: index.lookup(codes) (-1 = none); None without index


def tokens_per_step(sid_length: int, gen_steps: int) -> list[int]:
    """How many positions each step commits: sid_length // gen_steps each, the remainder spread
    over the first steps (as LLaDA's get_num_transfer_tokens)."""
    if not 1 <= gen_steps <= sid_length:
        raise ValueError(f"gen_steps must be in 1..{sid_length} (sid_length), got {gen_steps}")
    base, remainder = divmod(sid_length, gen_steps)
    return [base + (step < remainder) for step in range(gen_steps)]


def _fixed_priority(order: str, batch_size: int, sid_length: int, device: torch.device,
                    generator: torch.Generator | None) -> torch.Tensor | None:
    """FloatTensor[B, M], higher = committed earlier; None for the adaptive order."""
    if order == "adaptive":
        return None
    if order == "left2right":
        return -torch.arange(sid_length, device=device).float().expand(batch_size, sid_length)
    if order == "right2left":
        return torch.arange(sid_length, device=device).float().expand(batch_size, sid_length)
    # The ranking of i.i.d. uniforms is a uniform random permutation per user.
    draw_device = generator.device if generator is not None else device
    return torch.rand(batch_size, sid_length, generator=generator, device=draw_device).to(device)


def _gather_beams(tensor: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """tensor[b, parent[b, w], ...] for a tensor [B, W, ...] and parent [B, W]."""
    index = parent.view(*parent.shape, *([1] * (tensor.dim() - 2)))
    return tensor.gather(1, index.expand(*parent.shape, *tensor.shape[2:]))


@dataclass
class _Beams:
    codes: torch.Tensor  # long [B, W, M], -1 = masked
    scores: torch.Tensor  # float32 [B, W]
    log_probs: torch.Tensor  # float32 [B, W, M, K]: this step's model output for the beam (adaptive
    # order with an index: -inf at the codes forbidden at the step's start)
    plan: torch.Tensor  # long [B, W, n]: positions the beam commits in this step, in order


def _expand_position(beams: _Beams, slot: int, num_beams: int,
                     index: SIDIndex | None) -> _Beams:
    """Commit each beam's plan[..., slot] position with every allowed code; keep the best
    num_beams candidates per user. index=None: every code is allowed, or log_probs already hold
    -inf at the codes the index forbids for these partial SIDs."""
    batch_size, width, sid_length = beams.codes.shape
    codebook_size = beams.log_probs.shape[-1]
    position = beams.plan[:, :, slot]
    position_log_probs = beams.log_probs.gather(
        2, position[:, :, None, None].expand(batch_size, width, 1, codebook_size)).squeeze(2)
    if index is not None:
        # Constraints depend on the codes committed so far, including earlier slots of this step.
        allowed = index.allowed_codes(beams.codes.reshape(-1, sid_length), position.reshape(-1),
                                      validate=False)
        position_log_probs = position_log_probs.masked_fill(
            ~allowed.view(batch_size, width, codebook_size), float("-inf"))
    candidates = (beams.scores[:, :, None] + position_log_probs).view(batch_size, -1)
    n_candidates = candidates.shape[1]
    if n_candidates < num_beams:
        # Too few candidates (first step, small codebook): the extra beams are born dead.
        candidates = F.pad(candidates, (0, num_beams - n_candidates), value=float("-inf"))
    scores, flat_index = candidates.topk(num_beams, dim=1)
    flat_index = flat_index.clamp(max=n_candidates - 1)
    parent = flat_index // codebook_size
    code = flat_index % codebook_size
    codes = _gather_beams(beams.codes, parent)
    codes.scatter_(2, _gather_beams(position, parent)[:, :, None], code[:, :, None])
    return _Beams(codes=codes,
                  scores=scores,
                  log_probs=_gather_beams(beams.log_probs, parent),
                  plan=_gather_beams(beams.plan, parent))


def _model_log_probs(log_prob_fn: LogProbFn, codes: torch.Tensor,
                     codebook_size: int) -> torch.Tensor:
    log_probs = log_prob_fn(codes)
    expected = (*codes.shape, codebook_size)
    if tuple(log_probs.shape) != expected:
        raise ValueError(f"log_prob_fn returned shape {tuple(log_probs.shape)}, "
                         f"expected {expected}")
    return log_probs.float()


def _commit_priority(log_probs: torch.Tensor, codes: torch.Tensor, fixed_priority: torch.Tensor | None,
                     index: SIDIndex | None) -> torch.Tensor:
    """FloatTensor[B, W, M]: which masked positions a partial SID commits first (higher first).

    Adaptive: the model's confidence at the position, max log-probability over the allowed codes
    (whatever code is then committed there); fixed orders: their priority. Committed positions get
    -inf.
    """
    batch_size, width, sid_length = codes.shape
    if fixed_priority is None:
        if index is not None:
            allowed = index.allowed_codes_all_positions(codes.reshape(-1, sid_length), validate=False)
            log_probs = log_probs.masked_fill(~allowed.view(log_probs.shape), float("-inf"))
        # Clamp so that a masked position always ranks above a committed one (-inf).
        priority = log_probs.amax(dim=-1).clamp(min=torch.finfo(torch.float32).min)
    else:
        priority = fixed_priority[:, None, :].expand(batch_size, width, sid_length)
    return priority.masked_fill(codes >= 0, float("-inf"))


def generate_topk(log_prob_fn: LogProbFn, batch_size: int, sid_length: int, codebook_size: int,
                  num_beams: int, gen_steps: int, order: str = "adaptive",
                  index: SIDIndex | None = None, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> BeamOutput:
    """Beam search for the num_beams most likely SIDs of each of batch_size users.

    log_prob_fn(partial: LongTensor[B, W', M]) -> FloatTensor[B, W', M, K]: log-probabilities of
    each code at each position given each beam's partial SID (-1 = masked), one model call for
    all beams. It must accept any beam count W': the first step calls it with W' = 1, since all
    beams start as the same empty SID. Scores are accumulated in float32 whatever its dtype.
    order: "adaptive" (each beam commits its most confident masked positions, confidence = max
    log-probability over the allowed codes), "left2right", "right2left", or "random" (one
    permutation per user drawn from `generator`).
    index: if given, only codes that keep the partial SID consistent with a real item are allowed,
    so every live beam ends as an item (joint constraint, stricter than the official per-position
    one); the log-probabilities are not renormalised over the allowed codes, as officially.
    device: where the search runs; defaults to the index's device, else CPU.
    """
    if order not in DECODING_ORDERS:
        raise ValueError(f"unknown order {order!r}; expected one of {DECODING_ORDERS}")
    if batch_size < 1 or num_beams < 1 or codebook_size < 1:
        raise ValueError(f"batch_size, num_beams and codebook_size must be positive, got "
                         f"{batch_size}, {num_beams}, {codebook_size}")
    if index is not None and (index.sid_length, index.codebook_size) != (sid_length, codebook_size):
        raise ValueError(f"index has {index.sid_length} digits of {index.codebook_size} codes, "
                         f"expected {sid_length} digits of {codebook_size} codes")
    steps = tokens_per_step(sid_length, gen_steps)
    if device is None:
        device = index.device if index is not None else torch.device("cpu")
    fixed_priority = _fixed_priority(order, batch_size, sid_length, torch.device(device), generator)

    codes = torch.full((batch_size, 1, sid_length), -1, dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, 1, dtype=torch.float32, device=device)
    for n_commit in steps:
        log_probs = _model_log_probs(log_prob_fn, codes, codebook_size)
        plan = _commit_priority(log_probs, codes, fixed_priority, index).topk(n_commit, dim=-1).indices
        beams = _Beams(codes=codes, scores=scores, log_probs=log_probs, plan=plan)
        for slot in range(n_commit):
            # Each slot asks the index again: earlier slots of this step have committed more codes.
            beams = _expand_position(beams, slot, num_beams, index)
        codes, scores = beams.codes, beams.scores

    codes = codes.masked_fill(torch.isneginf(scores)[:, :, None], -1)
    items = None if index is None else index.lookup(codes.view(-1, sid_length)).view(
        batch_size, num_beams)
    return BeamOutput(codes=codes, scores=scores, items=items)


def sequence_log_probs(log_prob_fn: LogProbFn, codes: torch.Tensor, codebook_size: int,
                       gen_steps: int, order: str = "adaptive", index: SIDIndex | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """FloatTensor[B, R]: joint log-probability of R given complete SIDs per user under the
    generation process of generate_topk (same steps, same commit order, same log_prob_fn).

    codes: LongTensor[B, R, M] of complete SIDs (no -1), e.g. candidate items. Each candidate is
    decoded like a beam that is forced to its own codes: in step t (t = 1..gen_steps), one call of
    log_prob_fn on every candidate's partial SID (its codes committed so far, -1 elsewhere); the
    step commits the candidate's n_t highest-priority masked positions S_t, priority as in
    generate_topk (adaptive: the model's confidence max_c log p(c) over the allowed codes at the
    position; fixed orders: the order; random: one permutation per user from `generator`); the
    score is the chain rule over the steps,
        sum_t sum_{m in S_t} log p(code_m | history, codes at S_1..S_{t-1}).
    So a SID that beam search returns gets exactly its beam score, and beam search with at least
    as many beams as there are SIDs returns every SID with this score. Positions committed in the
    same step are scored from the same call, independently, as beam search scores them; with
    gen_steps = M this is the exact joint log-probability along the model's own order.
    """
    if order not in DECODING_ORDERS:
        raise ValueError(f"unknown order {order!r}; expected one of {DECODING_ORDERS}")
    if codes.dim() != 3 or (codes < 0).any():
        raise ValueError(f"codes must be complete SIDs of shape [B, R, M], got {tuple(codes.shape)}")
    batch_size, n_candidates, sid_length = codes.shape
    fixed_priority = _fixed_priority(order, batch_size, sid_length, codes.device, generator)
    partial = torch.full_like(codes, -1)
    scores = torch.zeros(batch_size, n_candidates, dtype=torch.float32, device=codes.device)
    for n_commit in tokens_per_step(sid_length, gen_steps):
        log_probs = _model_log_probs(log_prob_fn, partial, codebook_size)
        plan = _commit_priority(log_probs, partial, fixed_priority, index).topk(n_commit, dim=-1).indices
        own_log_probs = log_probs.gather(3, codes.unsqueeze(-1)).squeeze(-1)
        scores += own_log_probs.gather(2, plan).sum(dim=-1)
        partial = partial.scatter(2, plan, codes.gather(2, plan))
    return scores
