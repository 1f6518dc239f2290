"""Decoding of semantic IDs: constrained diffusion beam search and full-sort scores."""

from recbole_llada.decoding.beam_search import (BeamOutput, generate_topk, sequence_log_probs,
                                               tokens_per_step)
from recbole_llada.decoding.constraints import SIDIndex
from recbole_llada.decoding.ranking import ranked_scores, scores_from_generated

__all__ = ["BeamOutput", "SIDIndex", "generate_topk", "ranked_scores", "scores_from_generated",
           "sequence_log_probs", "tokens_per_step"]
