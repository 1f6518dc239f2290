"""FMLP-Rec (Zhou et al., "Filter-enhanced MLP is All You Need for Sequential Recommendation", WWW 2022).

A SASRec-shaped model whose self-attention is replaced by a learnable filter in the frequency domain:
rFFT along the sequence, multiply every frequency of every channel by a learnable complex weight, inverse
rFFT. By the convolution theorem this is a circular convolution of each channel with a learnable kernel of
the sequence's length, so every position mixes with every other one in O(L log L).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender

from recbole_llada.model.layers import left_align

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "swish": F.silu}


def frequency_filter(hidden: torch.Tensor, complex_weight: torch.Tensor) -> torch.Tensor:
    """irFFT(rFFT(hidden) * weight) along the sequence: hidden [B, L, H], complex_weight [L // 2 + 1, H].

    With 'ortho' on both transforms (as the official code) the result is the circular convolution of each
    channel with the kernel irfft(weight) (default norm); imaginary parts at frequency 0 and, for even L,
    at L / 2 are ignored, as for any real signal.
    """
    if hidden.dim() != 3:
        raise ValueError(f"expected hidden [B, L, H], got {tuple(hidden.shape)}")
    seq_len, hidden_size = hidden.shape[1:]
    if complex_weight.shape != (seq_len // 2 + 1, hidden_size) or not complex_weight.is_complex():
        raise ValueError(f"expected a complex weight of shape {(seq_len // 2 + 1, hidden_size)} for sequences "
                         f"of length {seq_len}, got {complex_weight.dtype} {tuple(complex_weight.shape)}")
    spectrum = torch.fft.rfft(hidden, dim=1, norm="ortho")
    return torch.fft.irfft(spectrum * complex_weight, n=seq_len, dim=1, norm="ortho")


class FilterLayer(nn.Module):
    """Learnable frequency filter, dropout, residual, LayerNorm."""

    def __init__(self, max_seq_length: int, hidden_size: int, dropout: float, layer_norm_eps: float,
                 initializer_range: float) -> None:
        super().__init__()
        # Stored as real pairs (as the official code) so optimizers and checkpoints see a real tensor.
        self.weight = nn.Parameter(torch.randn(max_seq_length // 2 + 1, hidden_size, 2) * initializer_range)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        filtered = frequency_filter(hidden, torch.view_as_complex(self.weight))
        return self.layer_norm(self.dropout(filtered) + hidden)


class FeedForward(nn.Module):
    """Point-wise hidden -> inner -> hidden MLP, dropout, residual, LayerNorm."""

    def __init__(self, hidden_size: int, inner_size: int, dropout: float, activation: str,
                 layer_norm_eps: float) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.expand = nn.Linear(hidden_size, inner_size)
        self.activation = ACTIVATIONS[activation]
        self.project = nn.Linear(inner_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        mixed = self.project(self.activation(self.expand(hidden)))
        return self.layer_norm(self.dropout(mixed) + hidden)


class FilterBlock(nn.Module):
    def __init__(self, max_seq_length: int, hidden_size: int, inner_size: int, dropout: float,
                 activation: str, layer_norm_eps: float, initializer_range: float) -> None:
        super().__init__()
        self.filter = FilterLayer(max_seq_length, hidden_size, dropout, layer_norm_eps, initializer_range)
        self.feed_forward = FeedForward(hidden_size, inner_size, dropout, activation, layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.filter(hidden))


class FMLPRec(SequentialRecommender):
    """FMLP-Rec as a RecBole sequential recommender, trained with cross-entropy over all items.

    Config keys (defaults in properties/model/FMLPRec.yaml, from the official code): n_layers, hidden_size,
    inner_size, hidden_dropout_prob, hidden_act, layer_norm_eps, initializer_range, loss_type (only 'CE').
    The filter has one weight per frequency of a sequence of MAX_ITEM_LIST_LENGTH.

    Padding. RecBole right-pads ``item_id_list``; the official code left-pads, so the latest item always
    sits at the last position and gets the last position embedding. We left-align each sequence inside the
    model to keep that meaning of the position embeddings. The filter is a circular convolution, so
    anything at a padding position would wrap into the valid ones (in the official code the padding
    carries LayerNorm(position embedding) into the filter). We zero the padding positions before every
    block, which makes each valid output a function of the valid items only: padding ids, the padding
    embedding and the padding positions' hidden states cannot leak. The user representation is the last
    position's output.
    """

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.n_layers: int = config["n_layers"]
        self.hidden_size: int = config["hidden_size"]
        self.inner_size: int = config["inner_size"]
        self.hidden_dropout_prob: float = config["hidden_dropout_prob"]
        self.hidden_act: str = config["hidden_act"]
        self.layer_norm_eps: float = config["layer_norm_eps"]
        self.initializer_range: float = config["initializer_range"]
        self.loss_type: str = config["loss_type"]
        if self.loss_type != "CE":
            raise ValueError(f"FMLPRec is trained with cross-entropy over all items (loss_type: CE), "
                             f"got loss_type={self.loss_type!r}")

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.layer_norm = nn.LayerNorm(self.hidden_size, eps=self.layer_norm_eps)
        self.dropout = nn.Dropout(self.hidden_dropout_prob)
        self.blocks = nn.ModuleList(
            FilterBlock(self.max_seq_length, self.hidden_size, self.inner_size, self.hidden_dropout_prob,
                        self.hidden_act, self.layer_norm_eps, self.initializer_range)
            for _ in range(self.n_layers)
        )
        self.loss_fct = nn.CrossEntropyLoss()
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def encode(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Run the filter blocks on hidden [B, L, H]; valid BoolTensor[B, L] marks the items."""
        keep = valid.unsqueeze(-1).to(hidden.dtype)
        for block in self.blocks:
            hidden = block(hidden * keep)
        return hidden

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """User representations [B, H] of right-padded item sequences [B, L]."""
        aligned, valid = left_align(item_seq, item_seq_len)
        position = torch.arange(aligned.shape[1], device=aligned.device)
        hidden = self.item_embedding(aligned) + self.position_embedding(position)[None]
        hidden = self.dropout(self.layer_norm(hidden))
        return self.encode(hidden, valid)[:, -1]

    def calculate_loss(self, interaction) -> torch.Tensor:
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        logits = seq_output @ self.item_embedding.weight.T
        return self.loss_fct(logits, interaction[self.POS_ITEM_ID])

    def predict(self, interaction) -> torch.Tensor:
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (seq_output * self.item_embedding(interaction[self.ITEM_ID])).sum(dim=-1)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return seq_output @ self.item_embedding.weight.T
