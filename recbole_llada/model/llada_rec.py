"""LLaDA-Rec: a masked-diffusion mask predictor over parallel semantic IDs (arXiv 2511.06254, Sec. 4.2-4.3).

Every item is M tokens (its semantic ID, one code per codebook). A user's sequence is the last L history
items, left-padded so the target block always sits at the last M positions, followed by the next item's M
tokens. A bidirectional Transformer predicts masked tokens; training masks either the target item
(next-item masking) or tokens anywhere in the sequence (user-history masking); recommendation fills the
fully masked target block with the adapted beam search and maps finished SIDs back to items.

Scoring the whole catalog (``scoring``, test time; ``valid_scoring`` for validation). RecBole's full sort wants a
score for every item; the paper's beam search (``beam``) gives one only to the <= num_beams generated items, the
rest fall back to training popularity. The other modes rank every item from the forward pass with the target
block fully masked, which gives each head's code distribution p_m(c | history):
- ``marginal``: item i scores sum_m log p_m(sid_m(i)), exactly ``predict()``; one forward per user.
- ``hybrid``: the generated beams first, in beam order, then every other item by its marginal score.
- ``rescore``: the ``rescore_candidates`` best items by marginal score, re-ranked by their joint log-probability
  under the model's own generation (``sequence_log_probs``: the chain rule over gen_steps steps, each candidate
  committing its positions in the order beam search would, conditioned on its codes committed so far); the rest
  of the catalog below them by marginal score. gen_steps forwards per candidate, candidates batched like beams.
- ``scorer``, ``scorer_hybrid``, ``fused``: the trained item scorer below, alone, below the beams, or its
  log-softmax over the catalog added to the marginal score (a product of the two models' probabilities).
Every mode gives distinct scores (no ties inside RecBole's top-k) and never ranks the padding item 0.
``with model.decoding(scoring=..., num_beams=...)`` switches these settings for a block of code.

Item scorer (``item_scorer: sid``, optional, trained). Marginal scoring treats the M heads as independent;
the scorer is a catalog-level softmax that sees each item whole: the item's representation is the mean of
its M SID token embeddings (the shared input embedding table, so items with shared codes share strength; plus
an ID embedding if ``item_scorer_id_embedding``), the user's is a linear projection of the mean hidden state
of the fully masked target block, and the score is their dot product. It is trained jointly with the two
diffusion losses by softmax cross-entropy over the catalog, weighted by ``item_scorer_weight``, on a third
slice of the one batched forward (history + fully masked target: 3 sequences per sample instead of 2, about
+50% training compute). ``item_scorer_loss``: the cross-entropy of the scorer's logits alone (``scorer``), or of
scorer logits + the detached marginal scores (``fused``): the scorer then learns a residual correction of the
diffusion model's catalog posterior, and ``scoring: fused`` ranks by exactly what was trained. In the spirit of
item-level adapters on a generative recommender (EPIC), but simpler: a posterior over the whole catalog, used to
rank, not inside the denoising steps.

Adapter (``item_scorer_backbone: path/to/LLaDARec.pth``): the scorer alone is trained on top of a frozen, trained
LLaDARec, as EPIC trains its adapter. The diffusion weights come from that checkpoint (whose SIDs must be this
dataset's) and stay fixed; the backbone runs as at inference (no dropout, no gradients), so training costs one
forward per sample; the only loss is the scorer's cross-entropy. Beam search is then exactly the backbone's, and
``scorer`` / ``scorer_hybrid`` / ``fused`` add the catalog-level scores to it. The joint variant changes the
diffusion model itself (on Beauty it hurt beam search); the adapter cannot.

Vocabulary: 0 = padding, 1 + h*K + c = code c of head h (a separate range per codebook), 1 + M*K = [MASK].
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_llada.decoding.beam_search import generate_topk, sequence_log_probs
from recbole_llada.decoding.constraints import SIDIndex
from recbole_llada.decoding.ranking import ranked_scores, scores_from_generated
from recbole_llada.devices import autocast
from recbole_llada.model.layers import TransformerEncoder, build_attention_mask, left_align, mitchell_init_
from recbole_llada.model.masking import mask_history, mask_next_item, weighted_masked_cross_entropy

PAD_TOKEN = 0
INIT_SCHEMES = ("official", "mitchell")
SCORING_MODES = ("beam", "marginal", "hybrid", "rescore", "scorer", "scorer_hybrid", "fused")
SCORER_MODES = ("scorer", "scorer_hybrid", "fused")
ITEM_SCORERS = ("none", "sid")
ITEM_SCORER_LOSSES = ("scorer", "fused")
DECODING_SETTINGS = ("scoring", "num_beams", "gen_steps", "gen_order", "rescore_candidates")
# torch.compile's modes (``compile_mode``); the two that capture CUDA graphs (see ``hidden_states``).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class BackboneValidation:
    """What an adapter's backbone checkpoint says of its own best validation (RecBole's checkpoint keeps it)."""
    metric: str  # valid_metric, lower case as RecBole's trainer holds it
    scoring: str  # the backbone's valid_scoring
    best_score: float


def check_scoring(key: str, scoring: str, item_scorer: str) -> None:
    """ValueError naming the config key unless ``scoring`` is a mode this model can run."""
    if scoring not in SCORING_MODES:
        raise ValueError(f"{key} must be one of {SCORING_MODES}, got {scoring!r}")
    if scoring in SCORER_MODES and item_scorer == "none":
        raise ValueError(f"{key}: {scoring!r} needs a trained item scorer, but item_scorer is 'none'")


class LLaDARec(SequentialRecommender):
    # True: the dense [B, 1, N, N] attention mask even where a key-padding mask is exact (benchmarks compare both).
    dense_attention_mask = False

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        item_sid = torch.as_tensor(dataset.item_sid, dtype=torch.long)
        if item_sid.dim() != 2 or item_sid.shape[0] != self.n_items:
            raise ValueError(f"dataset.item_sid must be [n_items={self.n_items}, M], got {tuple(item_sid.shape)}")
        # M and K come from the SIDs themselves (the table's width, the tokenizer's codebook), not from the config.
        self.sid_length = item_sid.shape[1]
        self.codebook_size = dataset.sid_codebook_size
        self.mask_token = 1 + self.sid_length * self.codebook_size
        self.vocab_size = self.mask_token + 1
        self.d_model = config["hidden_size"]
        self.temperature = config["temperature"]
        self.attention = config["attention"]
        self.item_mask_weight = config["item_mask_weight"]
        self.his_mask_weight = config["his_mask_weight"]
        self.gen_steps = config["gen_steps"]
        self.gen_order = config["gen_order"]
        self.num_beams = config["num_beams"]
        self.scoring = config["scoring"]
        self.rescore_candidates = config["rescore_candidates"]
        self.constrained_decoding = config["constrained_decoding"]
        self.decode_batch_size = config["decode_batch_size"]
        self.max_topk = max(config["topk"])
        self.item_scorer = config["item_scorer"]
        self.item_scorer_weight = config["item_scorer_weight"]
        if self.item_scorer not in ITEM_SCORERS:
            raise ValueError(f"item_scorer must be one of {ITEM_SCORERS}, got {self.item_scorer!r}")
        check_scoring("valid_scoring", config["valid_scoring"], self.item_scorer)
        self.item_scorer_loss = config["item_scorer_loss"]
        if self.item_scorer_loss not in ITEM_SCORER_LOSSES:
            raise ValueError(f"item_scorer_loss must be one of {ITEM_SCORER_LOSSES}, got {self.item_scorer_loss!r}")
        if self.item_scorer_loss == "fused" and self.item_scorer == "none":
            raise ValueError("item_scorer_loss: 'fused' trains an item scorer on the fused scores: "
                             "set item_scorer: sid")
        self.precision = config["precision"]
        self.scorer_backbone = config["item_scorer_backbone"]
        self.backbone_validation: BackboneValidation | None = None  # set by _load_frozen_backbone, where known
        if self.scorer_backbone and self.item_scorer == "none":
            raise ValueError("item_scorer_backbone trains an item scorer on a frozen LLaDARec: set item_scorer: sid")
        self._check_decoding()

        # Buffers: the checkpoint carries the SID table, so it is self-contained.
        self.register_buffer("item_sid", item_sid)
        head_offset = 1 + torch.arange(self.sid_length) * self.codebook_size
        self.register_buffer("head_offset", head_offset, persistent=False)
        self.register_buffer("fallback_order", self._popularity_order(dataset), persistent=False)
        self._sid_index: SIDIndex | None = None

        n_tokens = (self.max_seq_length + 1) * self.sid_length
        self.token_embedding = nn.Embedding(self.vocab_size, self.d_model)
        self.token_position_embedding = nn.Embedding(n_tokens, self.d_model)
        self.item_position_embedding = nn.Embedding(self.max_seq_length + 1, self.d_model)
        self.embedding_dropout = nn.Dropout(config["dropout_prob"])
        self.encoder = TransformerEncoder(config["n_layers"], self.d_model, config["n_heads"],
                                          config["mlp_ratio"], config["dropout_prob"])
        self.output = nn.Linear(self.d_model, self.vocab_size, bias=False)
        self._init_parameters(config["init"])
        # Created after the init, so a model with the scorer starts from the same diffusion weights as one without.
        if self.item_scorer == "sid":
            self.scorer_projection = nn.Linear(self.d_model, self.d_model)
            self.scorer_id_embedding = (nn.Embedding(self.n_items, self.d_model)
                                        if config["item_scorer_id_embedding"] else None)
        if self.scorer_backbone:
            self._load_frozen_backbone(self.scorer_backbone)
        # True: the compiled forward replays CUDA graphs, whose outputs the next replay overwrites (hidden_states).
        self.uses_cuda_graphs = False
        if config["compile"]:
            compile_mode = config["compile_mode"]
            if compile_mode not in COMPILE_MODES:
                raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
            self.uses_cuda_graphs = compile_mode in CUDA_GRAPH_COMPILE_MODES
            # In place: calls of the model (training and decoding) run the compiled forward; parameter names
            # and checkpoints stay those of the plain module. dynamic=False: one graph per input shape.
            self.compile(dynamic=False, mode=compile_mode)

    def _init_parameters(self, init: str) -> None:
        """``official``: what the official code actually runs. It builds ``LLaDAModelLM(config)`` with
        ``init_params=False``, so the ``mitchell`` init named in its config never runs: embeddings keep PyTorch's
        N(0, 1), every Linear its kaiming-uniform default (bound 1/sqrt(fan_in)), RMSNorm weights 1; only the
        item-position embedding, created outside LLaDA, gets mitchell. ``mitchell``: LLaDA's ``init_fn: mitchell``
        on every weight, as the config reads (this project's default before; measured worse, see README)."""
        if init not in INIT_SCHEMES:
            raise ValueError(f"init must be one of {INIT_SCHEMES}, got {init!r}")
        mitchell_init_(self.item_position_embedding, self.d_model)
        if init == "mitchell":
            mitchell_init_(self.token_embedding, self.d_model)
            mitchell_init_(self.token_position_embedding, self.d_model)
            mitchell_init_(self.output, self.d_model)
            self.encoder.reset_parameters()

    def _check_decoding(self) -> None:
        check_scoring("scoring", self.scoring, self.item_scorer)
        if not 1 <= self.gen_steps <= self.sid_length:
            raise ValueError(f"gen_steps must be in 1..sid_length={self.sid_length}, got {self.gen_steps}")
        if self.num_beams < 1 or self.rescore_candidates < 1:
            raise ValueError(f"num_beams and rescore_candidates must be positive, got {self.num_beams}, "
                             f"{self.rescore_candidates}")

    @contextlib.contextmanager
    def decoding(self, **settings):
        """Decode with other settings inside a ``with`` block, then restore the previous ones.

        settings: any of DECODING_SETTINGS, e.g. ``with model.decoding(scoring="marginal"): trainer.evaluate(...)``.
        """
        unknown = sorted(set(settings) - set(DECODING_SETTINGS))
        if unknown:
            raise ValueError(f"unknown decoding settings {unknown}; expected some of {DECODING_SETTINGS}")
        previous = {name: getattr(self, name) for name in settings}
        try:
            for name, value in settings.items():
                setattr(self, name, value)
            self._check_decoding()
            yield self
        finally:
            for name, value in previous.items():
                setattr(self, name, value)

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
        left_padded, _ = left_align(item_seq, item_seq_len, validate=False)
        return self.item_tokens(left_padded).reshape(batch_size, max_len * self.sid_length)

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
                  + self.item_position_embedding(positions // self.sid_length))
        mask = build_attention_mask(self.attention, tokens != PAD_TOKEN, self.sid_length,
                                    dense=self.dense_attention_mask)
        return self.encoder(self.embedding_dropout(hidden), mask, n_outputs)

    def hidden_states(self, tokens: torch.Tensor, n_outputs: int | None = None) -> torch.Tensor:
        """``self(tokens, n_outputs)``, as every caller in this class runs the mask predictor.

        Under CUDA graphs (``compile_mode``: reduce-overhead or max-autotune) the forward's output lives in the
        graph's memory pool until the next replay overwrites it, and torch.compile guesses where one iteration
        ends (training: a forward after the previous backward; inference: every call). Each caller here uses
        the output before the next forward (training: one forward of all corruptions, then backward; decoding:
        turned into log-probs or scorer logits at once), so each forward starts a new CUDA-graph step, marked
        explicitly: once marked, torch stops guessing, so it is marked before every forward, never only some.
        """
        if self.uses_cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return self(tokens, n_outputs)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., d] -> vocabulary logits [..., V], divided by the temperature."""
        return self.output(hidden) / self.temperature

    def target_code_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states of the M target positions [B, M, d] -> logits [B, M, K] of each head's own codes.

        Exactly the matching slices of ``logits``, without computing the V - K columns no head can use.
        """
        head_weights = self.output.weight[1: 1 + self.sid_length * self.codebook_size]
        head_weights = head_weights.view(self.sid_length, self.codebook_size, self.d_model)
        return torch.einsum("bmd,mkd->bmk", hidden, head_weights) / self.temperature

    def _load_frozen_backbone(self, path: str) -> None:
        """Every weight but the scorer's from a trained LLaDARec checkpoint (RecBole's format), then frozen; and
        the backbone's best validation, which the trainer compares the adapter's with."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        state = checkpoint["state_dict"]
        if not torch.equal(state["item_sid"].cpu(), self.item_sid.cpu()):
            raise ValueError(f"item_scorer_backbone {path!r} was trained on other semantic IDs than this dataset's: "
                             "train the backbone on the same data and SID settings")
        backbone = {key: value for key, value in state.items() if not key.startswith("scorer_")}
        missing, unexpected = self.load_state_dict(backbone, strict=False)
        missing = [key for key in missing if not key.startswith("scorer_")]
        if missing or unexpected:
            raise ValueError(f"item_scorer_backbone {path!r} is not a LLaDARec of this size: missing {missing}, "
                             f"unexpected {unexpected}")
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(name.startswith("scorer_"))
        backbone_config, best_score = checkpoint.get("config"), checkpoint.get("best_valid_score")
        if backbone_config is not None and best_score is not None:
            self.backbone_validation = BackboneValidation(str(backbone_config["valid_metric"]).lower(),
                                                          backbone_config["valid_scoring"], float(best_score))

    def autocast(self):
        """The configured precision on the model's device (``precision``: bf16 autocast on CUDA, or float32)."""
        return autocast(self.item_sid.device, self.precision)

    def train(self, mode: bool = True):
        """As nn.Module.train; a frozen backbone (adapter) always runs as at inference, without dropout."""
        super().train(mode)
        if self.scorer_backbone:
            self.embedding_dropout.eval()
            self.encoder.eval()
        return self

    # ----- training ------------------------------------------------------------------------------------

    @property
    def loss_part_names(self) -> tuple[str, ...]:
        """Names of the parts of ``last_losses``, in order."""
        if self.scorer_backbone:
            return ("scorer",)
        return ("item", "history") + (("scorer",) if self.item_scorer != "none" else ())

    def calculate_loss(self, interaction):
        history = self.history_tokens(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        if self.scorer_backbone:
            return self._adapter_loss(history, interaction[self.POS_ITEM_ID])
        target = self.item_tokens(interaction[self.POS_ITEM_ID])
        batch_size, n_target = target.shape
        full = torch.cat([history, target], dim=1)

        next_item = mask_next_item(target, self.mask_token)
        his = mask_history(full, full != PAD_TOKEN, self.sid_length, self.mask_token)
        inputs = [torch.cat([history, next_item.tokens], dim=1), his.tokens]
        if self.item_scorer != "none":
            inputs.append(torch.cat([history, torch.full_like(target, self.mask_token)], dim=1))
        # One forward over all corruptions: same FLOPs as separate calls, fewer kernel launches.
        hidden = self.hidden_states(torch.cat(inputs, dim=0))
        item_logits = self.logits(hidden[:batch_size, -n_target:])
        his_logits = self.logits(hidden[batch_size: 2 * batch_size])

        item_loss = weighted_masked_cross_entropy(item_logits, target, next_item.masked,
                                                  next_item.mask_prob, batch_size * n_target)
        his_loss = weighted_masked_cross_entropy(his_logits, full, his.masked, his.mask_prob,
                                                 batch_size * full.shape[1])
        losses = [self.item_mask_weight * item_loss, self.his_mask_weight * his_loss]
        if self.item_scorer != "none":
            target_hidden = hidden[2 * batch_size:, -n_target:]
            losses.append(self.item_scorer_weight * self.scorer_cross_entropy(
                self.item_scorer_logits(target_hidden), target_hidden, interaction[self.POS_ITEM_ID]))
        # The weighted parts, summing to the loss: the trainer logs them one by one, named by loss_part_names.
        self.last_losses = tuple(loss.detach() for loss in losses)
        return sum(losses)

    def _adapter_loss(self, history: torch.Tensor, next_item: torch.Tensor) -> torch.Tensor:
        """The scorer's cross-entropy over the catalog on the frozen backbone's fully masked target block."""
        with torch.no_grad():
            hidden = self.masked_target_hidden(history)
        with self.autocast():
            logits = self.item_scorer_logits(hidden)
        loss = self.scorer_cross_entropy(logits, hidden, next_item)
        self.last_losses = (loss.detach(),)
        return loss

    def scorer_cross_entropy(self, scorer_logits: torch.Tensor, target_hidden: torch.Tensor,
                             next_item: torch.Tensor) -> torch.Tensor:
        """Softmax cross-entropy over the catalog of the scorer's logits [B, n_items] (``item_scorer_loss: scorer``)
        or of scorer logits + marginal scores (``fused``); target_hidden [B, M, d]: the fully masked target block.

        ``fused`` trains the scorer as a residual correction of the diffusion model's own catalog posterior, so the
        loss sees exactly the ranking ``scoring: fused`` uses (log_softmax(scorer) + marginal differs from
        scorer + marginal by a per-user constant). The marginal is detached: the scorer's loss never moves the
        diffusion weights, in the adapter (frozen anyway) as in joint training (there they keep their own losses).
        The padding item 0 is -inf in both terms: probability 0, no gradient; it is never a training target.
        """
        logits = scorer_logits.float()
        if self.item_scorer_loss == "fused":
            with torch.no_grad():  # detached: only the scorer learns from this loss
                marginal = self.marginal_scores(self.head_log_probs(target_hidden))
            logits = logits + marginal
        return F.cross_entropy(logits, next_item)

    def item_scorer_logits(self, target_hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states of the fully masked target block [B, M, d] -> item scorer logits [B, n_items].

        user = projection(mean over the M positions), item = mean of its M SID token embeddings (+ its ID
        embedding), logit = user . item; the padding item gets -inf.
        """
        user = self.scorer_projection(target_hidden.mean(dim=1))
        items = self.token_embedding(self.item_tokens(torch.arange(self.n_items, device=user.device))).mean(dim=1)
        if self.scorer_id_embedding is not None:
            items = items + self.scorer_id_embedding.weight
        logits = user @ items.T
        return logits.masked_fill(torch.arange(self.n_items, device=user.device) == 0, float("-inf"))

    # ----- recommendation ------------------------------------------------------------------------------

    def sid_index(self) -> SIDIndex:
        if self._sid_index is None or self._sid_index.device != self.item_sid.device:
            self._sid_index = SIDIndex(self.item_sid, self.codebook_size).to(self.item_sid.device)
        return self._sid_index

    def code_log_probs(self, history: torch.Tensor, partial: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [B, W, M, K] of each head's codes at each target position.

        history: [B, L*M] tokens; partial: [B, W, M] codes with -1 = still masked (see head_log_probs).
        """
        batch_size, n_beams, _ = partial.shape
        target = torch.where(partial >= 0, partial + self.head_offset, self.mask_token)
        tokens = torch.cat([history.unsqueeze(1).expand(-1, n_beams, -1), target], dim=2)
        with self.autocast():
            hidden = self.hidden_states(tokens.reshape(batch_size * n_beams, -1), n_outputs=self.sid_length)
        return self.head_log_probs(hidden).view(batch_size, n_beams, self.sid_length, self.codebook_size)

    def head_log_probs(self, target_hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states of the target block [B, M, d] -> float32 log-probabilities [B, M, K] of each head's codes.

        Each head's softmax runs over its own K codes only: other heads' tokens are never valid at that position.
        """
        with self.autocast():
            per_head = self.target_code_logits(target_hidden)
        return F.log_softmax(per_head.float(), dim=-1)

    def masked_target_hidden(self, history: torch.Tensor) -> torch.Tensor:
        """History tokens [B, L*M] -> hidden states [B, M, d] of the fully masked target block (one forward)."""
        tokens = torch.cat([history, history.new_full((history.shape[0], self.sid_length), self.mask_token)], dim=1)
        with self.autocast():
            return self.hidden_states(tokens, n_outputs=self.sid_length)

    @staticmethod
    def sid_log_likelihood(log_probs: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """sum_m log_probs[b, m, codes[b, n, m]]: log_probs [B, M, K], codes [B or 1, N, M] -> [B, N]."""
        index = codes.transpose(1, 2).expand(log_probs.shape[0], -1, -1)
        return log_probs.gather(2, index).sum(dim=1)

    def marginal_scores(self, log_probs: torch.Tensor) -> torch.Tensor:
        """Per-head log-probabilities [B, M, K] -> every item's marginal score [B, n_items], -inf for padding."""
        scores = self.sid_log_likelihood(log_probs, self.item_sid.clamp(min=0).unsqueeze(0))
        scores[:, 0] = float("-inf")
        return scores

    def generate(self, history: torch.Tensor, num_beams: int):
        index = self.sid_index() if self.constrained_decoding else None
        return generate_topk(
            lambda partial: self.code_log_probs(history, partial),
            batch_size=history.shape[0], sid_length=self.sid_length, codebook_size=self.codebook_size,
            num_beams=num_beams, gen_steps=self.gen_steps, order=self.gen_order, index=index,
            device=history.device,
        )

    def generated_items(self, history: torch.Tensor) -> torch.Tensor:
        """History tokens [B, L*M] -> the num_beams generated items [B, W], best first, -1 = none."""
        beams = self.generate(history, self.num_beams)
        items = beams.items if beams.items is not None else self.sid_index().lookup(
            beams.codes.clamp(min=0).flatten(0, 1)).view(beams.codes.shape[:2])
        return items.masked_fill(~torch.isfinite(beams.scores), -1)

    def rescored(self, history: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
        """Joint log-probability [B, n_items] of each user's rescore_candidates best items by marginal score,
        -inf for the others (see sequence_log_probs)."""
        n_candidates = min(self.rescore_candidates, self.n_items - 1)
        candidates = marginal.topk(n_candidates, dim=1).indices
        # As many sequences per forward as beam search runs.
        users_per_call = max(1, self.decode_batch_size * self.num_beams // n_candidates)
        index = self.sid_index() if self.constrained_decoding else None
        joint = []
        for users, items in zip(history.split(users_per_call), candidates.split(users_per_call)):
            joint.append(sequence_log_probs(
                lambda partial, users=users: self.code_log_probs(users, partial), self.item_sid[items],
                self.codebook_size, self.gen_steps, self.gen_order, index))
        return torch.full_like(marginal, float("-inf")).scatter_(1, candidates, torch.cat(joint))

    def catalog_scores(self, history: torch.Tensor) -> torch.Tensor:
        """Full-sort scores [B, n_items] of every scoring mode but ``beam`` (see the module docstring)."""
        hidden = self.masked_target_hidden(history)
        marginal = self.marginal_scores(self.head_log_probs(hidden))
        # One key: only RecBole's top-k needs resolving (ranked_scores' top_k), not a sort of the whole catalog.
        if self.scoring == "marginal":
            return ranked_scores(marginal, top_k=self.max_topk)
        if self.scoring == "rescore":
            joint = self.rescored(history, marginal)
            return ranked_scores(torch.isfinite(joint).float(), joint.nan_to_num(neginf=0.0), marginal)
        if self.scoring == "hybrid":
            return ranked_scores(self.beam_ranks(history), marginal)
        with self.autocast():
            scorer = self.item_scorer_logits(hidden).float()
        if self.scoring == "scorer":
            return ranked_scores(scorer, top_k=self.max_topk)
        if self.scoring == "scorer_hybrid":
            return ranked_scores(self.beam_ranks(history), scorer)
        # fused: log p_scorer(item) + the marginal score, a product of the two models' probabilities.
        return ranked_scores(F.log_softmax(scorer, dim=1) + marginal, top_k=self.max_topk)

    def beam_ranks(self, history: torch.Tensor) -> torch.Tensor:
        """[B, n_items]: the generated item at beam rank r (0 = best) gets num_beams - r, every other item 0."""
        return scores_from_generated(self.generated_items(history), self.n_items, self.fallback_order,
                                     0).clamp(min=0.0)

    def full_sort_predict(self, interaction):
        history = self.history_tokens(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        if self.scoring != "beam":
            return torch.cat([self.catalog_scores(chunk) for chunk in history.split(self.decode_batch_size)])
        item_ids = torch.cat([self.generated_items(chunk) for chunk in history.split(self.decode_batch_size)])
        return scores_from_generated(item_ids, self.n_items, self.fallback_order, self.max_topk)

    def predict(self, interaction):
        """Log-likelihood of the given item's SID with the whole target block masked (one forward): the item's
        marginal score."""
        history = self.history_tokens(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        log_probs = self.head_log_probs(self.masked_target_hidden(history))
        codes = self.item_sid[interaction[self.ITEM_ID]]
        return self.sid_log_likelihood(log_probs, codes.unsqueeze(1)).squeeze(1)
