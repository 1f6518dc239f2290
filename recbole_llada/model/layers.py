"""Building blocks of LLaDA-Rec's mask predictor: a pre-norm LLaMA-style Transformer (as LLaDA's
`LLaDALlamaBlock` with `block_type: llama`, `activation_type: silu`, `layer_norm_type: rms`,
no biases, no RoPE) and the attention masks of the paper's attention ablation.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_KINDS = ("bidirectional", "causal", "inter_item_causal", "intra_item_causal")


def left_align(item_seq: torch.Tensor, item_seq_len: torch.Tensor,
               validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each right-padded row so that its last item sits at the last position.

    item_seq: LongTensor[B, L] with the items of row b at positions 0 .. item_seq_len[b] - 1.
    Returns (aligned ids [B, L] with 0 at the padding on the left, valid BoolTensor[B, L]).
    Whatever the input holds beyond a row's length is dropped. validate=False skips the range check of the lengths,
    two host syncs on a GPU, for callers that get them from RecBole's loaders (every training step and decoding call).
    """
    if item_seq.dim() != 2 or item_seq_len.shape != item_seq.shape[:1]:
        raise ValueError(f"expected item_seq [B, L] and item_seq_len [B], got {tuple(item_seq.shape)} "
                         f"and {tuple(item_seq_len.shape)}")
    seq_len = item_seq.shape[1]
    if validate and (bool((item_seq_len < 1).any()) or bool((item_seq_len > seq_len).any())):
        raise ValueError(f"item_seq_len must lie in [1, {seq_len}], got {item_seq_len.tolist()}")
    position = torch.arange(seq_len, device=item_seq.device)
    source = position[None, :] - (seq_len - item_seq_len)[:, None]
    valid = source >= 0
    aligned = item_seq.gather(1, source.clamp(min=0)).masked_fill(~valid, 0)
    return aligned, valid


def build_attention_mask(kind: str, valid: torch.Tensor, sid_length: int,
                         dense: bool = False) -> torch.Tensor:
    """Boolean mask for scaled_dot_product_attention; True = query i may attend key j.

    valid: BoolTensor[B, N], False at padding; token j belongs to item j // sid_length.
    - bidirectional: every key.
    - causal: keys j <= i.
    - inter_item_causal: keys of the same or earlier items (bidirectional inside an item).
    - intra_item_causal: keys of other items, and keys j <= i of the own item.
    Padding keys are never attended by valid queries, so padding cannot leak into valid positions.

    For `bidirectional` (unless `dense`) the mask is the key-padding mask [B, 1, 1, N]: it broadcasts
    over queries, so SDPA reads N values per sequence instead of N^2 and may pick its
    memory-efficient kernels. Its padding queries attend to the valid keys; their outputs are finite
    and nothing reads them (losses and decoding read valid positions only). A sequence with no valid
    token at all attends to every key, again to stay finite.
    Every other kind (or `dense`) gives the dense mask [B, 1, N, N], in which a padding query
    attends only to itself: a row with no allowed key makes the softmax 0/0 = NaN, and NaNs at
    padding would poison gradients (0 * NaN = NaN) even though nothing reads those outputs.
    """
    if valid.dim() != 2 or valid.dtype != torch.bool:
        raise ValueError(f"valid must be a BoolTensor [B, N], got {valid.dtype} "
                         f"{tuple(valid.shape)}")
    seq_len = valid.shape[1]
    if sid_length < 1 or seq_len % sid_length != 0:
        raise ValueError(f"sequence length {seq_len} is not a multiple of sid_length={sid_length}")
    if kind == "bidirectional" and not dense:
        return (valid | ~valid.any(dim=1, keepdim=True))[:, None, None, :]
    position = torch.arange(seq_len, device=valid.device)
    item = position // sid_length
    query_pos, key_pos = position[:, None], position[None, :]
    query_item, key_item = item[:, None], item[None, :]
    if kind == "bidirectional":
        allowed = torch.ones(seq_len, seq_len, dtype=torch.bool, device=valid.device)
    elif kind == "causal":
        allowed = key_pos <= query_pos
    elif kind == "inter_item_causal":
        allowed = key_item <= query_item
    elif kind == "intra_item_causal":
        allowed = (key_item != query_item) | (key_pos <= query_pos)
    else:
        raise ValueError(f"unknown attention kind {kind!r}; expected one of {ATTENTION_KINDS}")
    mask = allowed[None, :, :] & valid[:, None, :] & valid[:, :, None]
    padding_self = torch.diag_embed(~valid)
    return (mask | padding_self)[:, None, :, :]


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight, computed in float32 as LLaDA does.

    torch's rms_norm: one fused kernel on CUDA instead of separate full passes for the square, the mean and the
    two multiplies. For a float32 x (the residual stream always is, also under bf16 autocast) it is LLaDA's formula:
    on CPU torch runs the same operations in the same order (bit-identical, tests/test_layers.py); on CUDA the fused
    kernel reduces in its own order, so the two agree to float32 rounding. For a bf16 x it rounds to bf16 once,
    after the weight multiply, where LLaDA rounds before it and returns float32: one bf16 rounding apart.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def cast_once_for_autocast(x: torch.Tensor) -> torch.Tensor:
    """x in autocast's dtype when autocast is on and x needs no gradient; otherwise x itself.

    For an input that several Linear layers read (q, k and v; SwiGLU's gate and up): autocast casts a float32
    input inside every one of them, a full pass over the tensor each time; cast here, once, the layers receive it
    in their dtype already and compute on the same values. A tensor that needs gradients keeps autocast's
    per-layer casts: their backward sums the layers' gradients in float32, one shared cast would sum them in bf16.
    """
    device_type = x.device.type
    if x.requires_grad or not torch.is_autocast_enabled(device_type):
        return x
    return x.to(torch.get_autocast_dtype(device_type))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)); LLaDA's llama block uses hidden = mlp_ratio * d_model
    (no 2/3 shrink), i.e. its ff_proj/up_proj/ff_out are gate/up/down here."""

    def __init__(self, d_model: int, hidden_size: int):
        super().__init__()
        self.gate = nn.Linear(d_model, hidden_size, bias=False)
        self.up = nn.Linear(d_model, hidden_size, bias=False)
        self.down = nn.Linear(hidden_size, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


def mitchell_init_(module: nn.Linear | nn.Embedding, fan_in: int,
                   layer_id: int | None = None) -> None:
    """LLaDA's `init_fn: mitchell`: truncated normal (±3 std), std = 1/sqrt(fan_in), divided by
    sqrt(2 * (layer_id + 1)) for the residual output projections of block `layer_id`.
    For token/position embeddings and the output head LLaDA uses fan_in = d_model."""
    std = 1.0 / math.sqrt(fan_in)
    if layer_id is not None:
        std /= math.sqrt(2 * (layer_id + 1))
    nn.init.trunc_normal_(module.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)


class TransformerBlock(nn.Module):
    """x + Attn(RMSNorm(x)), then + SwiGLU(RMSNorm(.)); dropout on attention weights and on both
    residual branches, as LLaDA's attention_dropout and residual_dropout."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.attn_norm = RMSNorm(d_model)
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.attn_out = nn.Linear(d_model, d_model, bias=False)
        self.ff_norm = RMSNorm(d_model)
        self.ffn = SwiGLU(d_model, mlp_ratio * d_model)
        self.residual_dropout = nn.Dropout(dropout)

    def reset_parameters(self, layer_id: int) -> None:
        d_model = self.q_proj.in_features
        for linear in (self.q_proj, self.k_proj, self.v_proj, self.ffn.gate, self.ffn.up):
            mitchell_init_(linear, d_model)
        mitchell_init_(self.attn_out, d_model, layer_id)
        mitchell_init_(self.ffn.down, self.ffn.down.in_features, layer_id)
        nn.init.ones_(self.attn_norm.weight)
        nn.init.ones_(self.ff_norm.weight)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch_size, seq_len, d_model = x.shape
        return x.view(batch_size, seq_len, self.n_heads, d_model // self.n_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor,
                n_queries: int | None = None) -> torch.Tensor:
        """x: [B, N, d_model]; attn_mask: BoolTensor[B, 1, N, N] or [B, 1, 1, N] from build_attention_mask.

        n_queries: compute only the last n_queries positions (all N keys still attended); returns
        [B, n_queries, d_model]. None = every position.
        """
        normed = cast_once_for_autocast(self.attn_norm(x))
        if n_queries is not None:
            x = x[:, -n_queries:]
            attn_mask = attn_mask[..., -n_queries:, :]  # a key-padding mask's single row stays
        attended = F.scaled_dot_product_attention(
            self._split_heads(self.q_proj(normed[:, -x.shape[1]:])),
            self._split_heads(self.k_proj(normed)),
            self._split_heads(self.v_proj(normed)),
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        attended = attended.transpose(1, 2).reshape(x.shape)
        x = x + self.residual_dropout(self.attn_out(attended))
        return x + self.residual_dropout(self.ffn(cast_once_for_autocast(self.ff_norm(x))))


class TransformerEncoder(nn.Module):
    """A stack of TransformerBlocks followed by a final RMSNorm (LLaDA's ln_f)."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, mlp_ratio, dropout) for _ in range(n_layers))
        self.final_norm = RMSNorm(d_model)

    def reset_parameters(self) -> None:
        """LLaDA's mitchell init; without this call every weight keeps PyTorch's default init."""
        for layer_id, block in enumerate(self.blocks):
            block.reset_parameters(layer_id)
        nn.init.ones_(self.final_norm.weight)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor,
                n_outputs: int | None = None) -> torch.Tensor:
        """x: [B, N, d_model] input embeddings; returns the normalised hidden states [B, N, d_model].

        n_outputs: return only the last n_outputs positions [B, n_outputs, d_model]; the last block
        then computes only those queries (the same values, fewer FLOPs). None = every position.
        """
        for block in self.blocks[:-1]:
            x = block(x, attn_mask)
        return self.final_norm(self.blocks[-1](x, attn_mask, n_outputs))
