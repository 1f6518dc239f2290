"""LLaDA-Rec: a masked-diffusion mask predictor over parallel semantic IDs (arXiv 2511.06254, Sec. 4.2-4.3).

Every item is M tokens (its semantic ID, one code per codebook). A user's sequence is the last L history
items, left-padded so the target block always sits at the last M positions, followed by the next item's M
tokens. A bidirectional Transformer predicts masked tokens; training masks either the target item
(next-item masking) or tokens anywhere in the sequence (user-history masking); recommendation fills the
fully masked target block with the adapted beam search and maps finished SIDs back to items.

Vocabulary: 0 = padding, 1 + h*K + c = code c of head h (a separate range per codebook), 1 + M*K = [MASK].
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_llada.decoding.beam_search import generate_topk
from recbole_llada.decoding.constraints import SIDIndex
from recbole_llada.decoding.ranking import scores_from_generated
from recbole_llada.model.layers import TransformerEncoder, build_attention_mask, mitchell_init_
from recbole_llada.model.masking import mask_history, mask_next_item, weighted_masked_cross_entropy

PAD_TOKEN = 0


class LLaDARec(SequentialRecommender):
    # True: the dense [B, 1, N, N] attention mask even where a key-padding mask is exact (benchmarks compare both).
    dense_attention_mask = False

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        item_sid = torch.as_tensor(dataset.item_sid, dtype=torch.long)
        if item_sid.dim() != 2 or item_sid.shape[0] != self.n_items:
            raise ValueError(f"dataset.item_sid must be [n_items={self.n_items}, M], got {tuple(item_sid.shape)}")
        self.n_digits = item_sid.shape[1]
        self.codebook_size = int(config["sid_codebook_size"])
        self.mask_token = 1 + self.n_digits * self.codebook_size
        self.vocab_size = self.mask_token + 1
        self.d_model = config["hidden_size"]
        self.temperature = config["temperature"]
        self.attention = config["attention"]
        self.item_mask_weight = config["item_mask_weight"]
        self.his_mask_weight = config["his_mask_weight"]
        self.gen_steps = config["gen_steps"]
        self.gen_order = config["gen_order"]
        self.num_beams = config["num_beams"]
        self.valid_num_beams = config["valid_num_beams"]
        self.constrained_decoding = config["constrained_decoding"]
        self.decode_batch_size = config["decode_batch_size"]
        self.max_topk = max(config["topk"])
        self.eval_num_beams = self.num_beams
        if not 1 <= self.gen_steps <= self.n_digits:
            raise ValueError(f"gen_steps must be in 1..sid_n_heads={self.n_digits}, got {self.gen_steps}")

        # Buffers: the checkpoint carries the SID table, so it is self-contained.
        self.register_buffer("item_sid", item_sid)
        head_offset = 1 + torch.arange(self.n_digits) * self.codebook_size
        self.register_buffer("head_offset", head_offset, persistent=False)
        self.register_buffer("fallback_order", self._popularity_order(dataset), persistent=False)
        self._sid_index: SIDIndex | None = None

        n_tokens = (self.max_seq_length + 1) * self.n_digits
        self.token_embedding = nn.Embedding(self.vocab_size, self.d_model)
        self.token_position_embedding = nn.Embedding(n_tokens, self.d_model)
        self.item_position_embedding = nn.Embedding(self.max_seq_length + 1, self.d_model)
        self.embedding_dropout = nn.Dropout(config["dropout_prob"])
        self.encoder = TransformerEncoder(config["n_layers"], self.d_model, config["n_heads"],
                                          config["mlp_ratio"], config["dropout_prob"])
        self.output = nn.Linear(self.d_model, self.vocab_size, bias=False)
        for embedding in (self.token_embedding, self.token_position_embedding, self.item_position_embedding):
            mitchell_init_(embedding, self.d_model)
        mitchell_init_(self.output, self.d_model)
        if config["compile"]:
            # In place: calls of the model (training and decoding) run the compiled forward; parameter names
            # and checkpoints stay those of the plain module. dynamic=False: one graph per input shape.
            self.compile(dynamic=False)

    def _popularity_order(self, dataset) -> torch.Tensor:
        """Real items by training-target frequency (ties by id): the deterministic fallback ranking."""
        targets = torch.as_tensor(dataset.inter_feat[self.ITEM_ID]).long()
        counts = torch.bincount(targets, minlength=self.n_items).float()
        counts[0] = -1.0
        return torch.sort(-counts, stable=True).indices[: self.n_items - 1]

    # ----- sequence construction -------------------------------------------------------------------------

    def history_tokens(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """RecBole's right-padded item lists -> left-padded token sequences [B, L*M] (0 = padding)."""
        batch_size, max_len = item_seq.shape
        shift = (max_len - item_seq_len).unsqueeze(1)
        source = torch.arange(max_len, device=item_seq.device).unsqueeze(0) - shift
        left_padded = item_seq.gather(1, source.clamp(min=0)).masked_fill(source < 0, 0)
        return self.item_tokens(left_padded).reshape(batch_size, max_len * self.n_digits)

    def item_tokens(self, items: torch.Tensor) -> torch.Tensor:
        """Item ids [...] -> vocabulary tokens [..., M]; the padding item maps to padding tokens."""
        tokens = self.item_sid[items] + self.head_offset
        return tokens.masked_fill((items == 0).unsqueeze(-1), PAD_TOKEN)

    def forward(self, tokens: torch.Tensor, n_outputs: int | None = None) -> torch.Tensor:
        """Tokens [B, N] (N = (L+1)*M) -> hidden states [B, N, d] of the mask predictor, or of its last n_outputs
        positions only [B, n_outputs, d] (the last layer then skips the other queries)."""
        n_tokens = tokens.shape[1]
        positions = torch.arange(n_tokens, device=tokens.device)
        hidden = (self.token_embedding(tokens) + self.token_position_embedding(positions)
                  + self.item_position_embedding(positions // self.n_digits))
        mask = build_attention_mask(self.attention, tokens != PAD_TOKEN, self.n_digits,
                                    dense=self.dense_attention_mask)
        return self.encoder(self.embedding_dropout(hidden), mask, n_outputs)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., d] -> vocabulary logits [..., V], divided by the temperature."""
        return self.output(hidden) / self.temperature

    def target_code_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states of the M target positions [B, M, d] -> logits [B, M, K] of each head's own codes.

        Exactly the matching slices of ``logits``, without computing the V - K columns no head can use.
        """
        head_weights = self.output.weight[1: 1 + self.n_digits * self.codebook_size]
        head_weights = head_weights.view(self.n_digits, self.codebook_size, self.d_model)
        return torch.einsum("bmd,mkd->bmk", hidden, head_weights) / self.temperature

    # ----- training ------------------------------------------------------------------------------------

    def calculate_loss(self, interaction):
        history = self.history_tokens(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        target = self.item_tokens(interaction[self.POS_ITEM_ID])
        batch_size, n_target = target.shape
        full = torch.cat([history, target], dim=1)

        next_item = mask_next_item(target, self.mask_token)
        his = mask_history(full, full != PAD_TOKEN, self.n_digits, self.mask_token)
        # One forward over both corruptions: same FLOPs as two calls, half the kernel launches.
        hidden = self(torch.cat([torch.cat([history, next_item.tokens], dim=1), his.tokens], dim=0))
        item_logits = self.logits(hidden[:batch_size, -n_target:])
        his_logits = self.logits(hidden[batch_size:])

        item_loss = weighted_masked_cross_entropy(item_logits, target, next_item.masked,
                                                  next_item.mask_prob, batch_size * n_target)
        his_loss = weighted_masked_cross_entropy(his_logits, full, his.masked, his.mask_prob,
                                                 batch_size * full.shape[1])
        self.last_losses = (item_loss.detach(), his_loss.detach())
        return self.item_mask_weight * item_loss + self.his_mask_weight * his_loss

    # ----- recommendation ------------------------------------------------------------------------------

    def sid_index(self) -> SIDIndex:
        if self._sid_index is None or self._sid_index.device != self.item_sid.device:
            self._sid_index = SIDIndex(self.item_sid, self.codebook_size).to(self.item_sid.device)
        return self._sid_index

    def _autocast(self):
        if self.item_sid.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def code_log_probs(self, history: torch.Tensor, partial: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [B, W, M, K] of each head's codes at each target position.

        history: [B, L*M] tokens; partial: [B, W, M] codes with -1 = still masked. Each head's softmax runs
        over its own K codes only: other heads' tokens are never valid at that position.
        """
        batch_size, n_beams, _ = partial.shape
        target = torch.where(partial >= 0, partial + self.head_offset, self.mask_token)
        tokens = torch.cat([history.unsqueeze(1).expand(-1, n_beams, -1), target], dim=2)
        with self._autocast():
            hidden = self(tokens.reshape(batch_size * n_beams, -1), n_outputs=self.n_digits)
            per_head = self.target_code_logits(hidden)
        return F.log_softmax(per_head.float(), dim=-1).view(batch_size, n_beams, self.n_digits, self.codebook_size)

    def generate(self, history: torch.Tensor, num_beams: int):
        index = self.sid_index() if self.constrained_decoding else None
        return generate_topk(
            lambda partial: self.code_log_probs(history, partial),
            batch_size=history.shape[0], n_digits=self.n_digits, codebook_size=self.codebook_size,
            num_beams=num_beams, gen_steps=self.gen_steps, order=self.gen_order, index=index,
            device=history.device,
        )

    def full_sort_predict(self, interaction):
        history = self.history_tokens(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        item_ids = []
        for chunk in history.split(self.decode_batch_size):
            beams = self.generate(chunk, self.eval_num_beams)
            items = beams.items if beams.items is not None else self.sid_index().lookup(
                beams.codes.clamp(min=0).flatten(0, 1)).view(beams.codes.shape[:2])
            item_ids.append(items.masked_fill(~torch.isfinite(beams.scores), -1))
        return scores_from_generated(torch.cat(item_ids), self.n_items, self.fallback_order, self.max_topk)

    def predict(self, interaction):
        """Log-likelihood of the given item's SID with the whole target block masked (one forward)."""
        history = self.history_tokens(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        codes = self.item_sid[interaction[self.ITEM_ID]]
        masked = torch.full_like(codes, -1).unsqueeze(1)
        log_probs = self.code_log_probs(history, masked).squeeze(1)
        return log_probs.gather(2, codes.unsqueeze(-1)).squeeze(-1).sum(-1)
