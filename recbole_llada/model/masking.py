"""The two discrete-diffusion training corruptions of LLaDA-Rec and their loss.

Next-item masking corrupts only the target item's M tokens (at least one is masked), history
masking corrupts every item of the sequence with its own ratio. Both report, for each token, the
probability p with which it was masked, because the diffusion ELBO weights each masked token's
cross-entropy by 1/p.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class MaskedTokens:
    """A corrupted copy of a token tensor; every field has the shape of the input tokens."""

    tokens: torch.Tensor  # long: the noisy input, masked positions hold mask_token_id
    masked: torch.Tensor  # bool: which positions were masked
    mask_prob: torch.Tensor  # float: probability with which each position was masked


def _draw_uniform(shape: tuple[int, ...], device: torch.device,
                  generator: torch.Generator | None) -> torch.Tensor:
    # A generator only samples on its own device, so draw there and move.
    draw_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=draw_device).to(device)


def _draw_integers(low: int, high: int, shape: tuple[int, ...], device: torch.device,
                   generator: torch.Generator | None) -> torch.Tensor:
    draw_device = generator.device if generator is not None else device
    return torch.randint(low, high, shape, generator=generator, device=draw_device).to(device)


def mask_next_item(target_tokens: torch.Tensor, mask_token_id: int,
                   generator: torch.Generator | None = None) -> MaskedTokens:
    """Mask exactly k ~ U{1..M} of each sample's M target tokens, at uniformly chosen positions.

    target_tokens: LongTensor[B, M]. The mask probability of every token of sample b is k_b / M.
    """
    if target_tokens.dim() != 2 or target_tokens.shape[1] == 0:
        raise ValueError(f"target_tokens must have shape [B, M] with M >= 1, "
                         f"got {tuple(target_tokens.shape)}")
    batch_size, sid_length = target_tokens.shape
    device = target_tokens.device
    n_masked = _draw_integers(1, sid_length + 1, (batch_size,), device, generator)
    # The ranks of i.i.d. uniforms form a uniform random permutation, so the k lowest ranks are
    # k uniformly chosen positions.
    ranks = _draw_uniform((batch_size, sid_length), device, generator).argsort(dim=1).argsort(dim=1)
    masked = ranks < n_masked[:, None]
    mask_prob = (n_masked.float() / sid_length)[:, None].expand(batch_size, sid_length)
    return MaskedTokens(tokens=target_tokens.masked_fill(masked, mask_token_id),
                        masked=masked,
                        mask_prob=mask_prob.contiguous())


def mask_history(tokens: torch.Tensor, valid: torch.Tensor, sid_length: int, mask_token_id: int,
                 generator: torch.Generator | None = None) -> MaskedTokens:
    """Mask each item's tokens independently with the item's own ratio k_i / M, k_i ~ U{0..M}.

    tokens, valid: [B, N] with N = items * M (history items followed by the target item).
    Padding tokens (valid False) are never masked and get mask probability 0.
    """
    if tokens.dim() != 2 or tokens.shape != valid.shape:
        raise ValueError(f"tokens and valid must both have shape [B, N], "
                         f"got {tuple(tokens.shape)} and {tuple(valid.shape)}")
    if sid_length < 1 or tokens.shape[1] % sid_length != 0:
        raise ValueError(f"sequence length {tokens.shape[1]} is not a multiple of "
                         f"sid_length={sid_length}")
    batch_size, seq_len = tokens.shape
    device = tokens.device
    n_masked = _draw_integers(0, sid_length + 1, (batch_size, seq_len // sid_length), device,
                              generator)
    mask_prob = (n_masked.float() / sid_length).repeat_interleave(sid_length, dim=1)
    mask_prob = mask_prob.masked_fill(~valid, 0.0)
    # rand in [0, 1) is below p with probability exactly p, including p = 0 and p = 1.
    masked = _draw_uniform((batch_size, seq_len), device, generator) < mask_prob
    return MaskedTokens(tokens=tokens.masked_fill(masked, mask_token_id),
                        masked=masked,
                        mask_prob=mask_prob)


def weighted_masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                                  masked: torch.Tensor, mask_prob: torch.Tensor,
                                  normalizer: int) -> torch.Tensor:
    """Sum over masked tokens of cross-entropy / mask_prob, divided by `normalizer`.

    logits: [B, N, V]; targets, masked, mask_prob: [B, N]. LLaDA-Rec normalises the next-item loss
    by B*M and the history loss by B*N (padding included). Returns a float32 scalar that is 0,
    still connected to `logits`, when nothing is masked.
    """
    if logits.shape[:-1] != targets.shape or targets.shape != masked.shape \
            or masked.shape != mask_prob.shape:
        raise ValueError(f"shape mismatch: logits {tuple(logits.shape)}, targets "
                         f"{tuple(targets.shape)}, masked {tuple(masked.shape)}, "
                         f"mask_prob {tuple(mask_prob.shape)}")
    if normalizer <= 0:
        raise ValueError(f"normalizer must be positive, got {normalizer}")
    # Select first, then upcast: only the masked rows pay for float32.
    token_loss = F.cross_entropy(logits[masked].float(), targets[masked], reduction="none")
    return (token_loss / mask_prob[masked].float()).sum() / normalizer
