"""A plain re-implementation of the official LLaDA-Rec decoding loop: the baseline of the speed ratio.

It follows ``beam_search``, ``beam_search_step`` and ``get_transfer_index`` of the official code
(TengShi-RUC/LLaDA-Rec, genrec/models/LLaDARec/model.py) step by step, on our LLaDARec network:

- each user's history is repeated num_beams times and the whole [B*W, N] batch goes through the network at every
  step, in float32 (the official pipeline runs accelerate without mixed precision);
- a step commits each sequence's most confident masked positions, confidence = the largest softmax probability
  over the whole vocabulary;
- each commit scores log_softmax over the whole vocabulary, keeps only the tokens that occur at that position in
  some item (a per-position restriction, not a joint one), and keeps the best num_beams over beams x tokens;
- steps commit M // T positions each, the last step the rest;
- beams start as one live beam and W - 1 copies at -1e9, so when there are fewer candidates than beams, weak
  copies survive where ours has dead beams;
- when a step commits several positions, its logits and its later positions are not re-ordered with the beams (the
  official loop's stale-logits behaviour, kept on purpose: this module reproduces the official cost; with T = M,
  one position per step, the behaviour does not arise).

What ours (``recbole_llada.decoding.beam_search.generate_topk`` via ``LLaDARec.generate``) does differently:
it normalises each head over its own K codes, ranks positions by their best allowed code, constrains jointly to
real items, runs the first step on one sequence per user, and runs the network in bf16 on CUDA.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from recbole_llada.decoding.ranking import scores_from_generated

INITIAL_COPY_SCORE = -1e9  # the official start score of beams 2..W, which are copies of beam 1

Network = Callable[[torch.Tensor], torch.Tensor]  # tokens [R, N] -> logits [R, N, V]


@dataclass
class ReferenceBeams:
    codes: torch.Tensor  # long [B, W, M]; -1 where a position stayed masked
    scores: torch.Tensor  # float32 [B, W], best first

    @property
    def live(self) -> torch.Tensor:
        """BoolTensor[B, W]: beams that descend from the one real start beam, not from its -1e9 copies."""
        return self.scores > INITIAL_COPY_SCORE / 2


def full_vocabulary_network(model: torch.nn.Module) -> Network:
    """LLaDARec as the official loop uses its network: logits over the whole vocabulary at every position
    (already divided by the temperature). It calls ``forward`` directly: the official code runs uncompiled, so its
    loop stays uncompiled whatever LLaDARec's ``compile``."""
    return lambda tokens: model.logits(model.forward(tokens))


def position_valid_tokens(item_sid: torch.Tensor, head_offset: torch.Tensor, mask_token: int) -> torch.Tensor:
    """LongTensor[M, Kmax]: the vocabulary tokens of the codes that occur at each position among the real items
    (row 0 of item_sid is padding), padded with mask_token, which is never a valid target token."""
    real = item_sid[1:]
    per_position = [real[:, position].unique() + head_offset[position] for position in range(real.shape[1])]
    width = max(tokens.numel() for tokens in per_position)
    valid = torch.full((len(per_position), width), mask_token, dtype=torch.long, device=item_sid.device)
    for position, tokens in enumerate(per_position):
        valid[position, : tokens.numel()] = tokens
    return valid


def transfer_positions(tokens: torch.Tensor, logits: torch.Tensor, n_transfer: int, mask_token: int) -> torch.Tensor:
    """LongTensor[R, n_transfer]: each sequence's masked positions with the largest top softmax probability."""
    confidence = F.softmax(logits, dim=-1).amax(dim=-1)
    confidence = confidence.masked_fill(tokens != mask_token, float("-inf"))
    return confidence.topk(n_transfer, dim=-1).indices


def beam_step(logits: torch.Tensor, tokens: torch.Tensor, position: torch.Tensor, beam_scores: torch.Tensor,
              valid_tokens: torch.Tensor, mask_token: int, batch_size: int,
              num_beams: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Commit ``position`` ([R]) of every sequence: the best num_beams of beams x valid tokens per user.

    logits: [R, N, V] of this step (R = batch_size * num_beams); tokens: [R, N]; beam_scores: [R].
    Returns the re-ordered tokens with the new token written, and the new scores [R].
    """
    n_rows, seq_len = tokens.shape
    history_len = seq_len - valid_tokens.shape[0]
    rows = torch.arange(n_rows, device=tokens.device)
    log_probs = F.log_softmax(logits[rows, position], dim=-1)
    valid = valid_tokens[position - history_len]
    candidates = log_probs.gather(1, valid).masked_fill(valid == mask_token, float("-inf"))
    candidates = candidates + beam_scores[:, None]
    width = valid.shape[1]
    scores, flat_index = candidates.view(batch_size, num_beams * width).topk(num_beams, dim=1)
    user_offset = torch.arange(batch_size, device=tokens.device)[:, None] * num_beams
    parent = (flat_index // width + user_offset).view(-1)
    column = (flat_index % width).view(-1, 1)
    tokens = tokens[parent]
    position = position[parent]
    tokens[rows, position] = valid_tokens[position - history_len].gather(1, column).squeeze(1)
    return tokens, scores.view(-1)


def reference_beam_search(network: Network, history: torch.Tensor, num_beams: int, gen_steps: int,
                          valid_tokens: torch.Tensor, mask_token: int, head_offset: torch.Tensor) -> ReferenceBeams:
    """The official beam search for a batch of histories [B, L*M] (token ids, 0 = padding).

    network: tokens [R, N] -> logits [R, N, V], e.g. full_vocabulary_network(model).
    valid_tokens: from position_valid_tokens; head_offset: LongTensor[M], the first token of each head's codes.
    """
    sid_length = valid_tokens.shape[0]
    if not 1 <= gen_steps <= sid_length:
        raise ValueError(f"gen_steps must be in 1..{sid_length}, got {gen_steps}")
    if num_beams < 1:
        raise ValueError(f"num_beams must be positive, got {num_beams}")
    batch_size = history.shape[0]
    target = torch.full((batch_size * num_beams, sid_length), mask_token, dtype=torch.long, device=history.device)
    tokens = torch.cat([history.repeat_interleave(num_beams, dim=0), target], dim=1)
    scores = torch.zeros(batch_size, num_beams, device=history.device)
    scores[:, 1:] = INITIAL_COPY_SCORE
    scores = scores.view(-1)

    per_step = sid_length // gen_steps
    committed = 0
    for step in range(gen_steps):
        n_transfer = sid_length - committed if step == gen_steps - 1 else per_step
        logits = network(tokens)
        positions = transfer_positions(tokens, logits, n_transfer, mask_token)
        for slot in range(n_transfer):
            tokens, scores = beam_step(logits, tokens, positions[:, slot], scores, valid_tokens, mask_token,
                                       batch_size, num_beams)
        committed += n_transfer

    target = tokens[:, -sid_length:]
    codes = torch.where(target == mask_token, -1, target - head_offset)
    return ReferenceBeams(codes=codes.view(batch_size, num_beams, sid_length),
                          scores=scores.view(batch_size, num_beams))


@torch.no_grad()
def reference_full_sort_predict(model: torch.nn.Module, interaction: Mapping[str, torch.Tensor], num_beams: int,
                                gen_steps: int, users_per_chunk: int) -> torch.Tensor:
    """LLaDARec.full_sort_predict with the official loop in place of ours: same history tokens, same mapping of
    SIDs to items and to full-sort scores, so a timing difference is the decoding loop's alone.

    Runs the network in float32: call it outside any autocast region.
    """
    history = model.history_tokens(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
    valid_tokens = position_valid_tokens(model.item_sid, model.head_offset, model.mask_token)
    index = model.sid_index()
    network = full_vocabulary_network(model)
    item_ids = []
    for chunk in history.split(users_per_chunk):
        beams = reference_beam_search(network, chunk, num_beams, gen_steps, valid_tokens, model.mask_token,
                                      model.head_offset)
        # A per-position restriction can produce SIDs of no item: lookup gives -1, as for the start copies.
        items = index.lookup(beams.codes.flatten(0, 1)).view(beams.codes.shape[:2])
        item_ids.append(items.masked_fill(~beams.live, -1))
    return scores_from_generated(torch.cat(item_ids), model.n_items, model.fallback_order, model.max_topk)
