"""Decoding of semantic IDs: constrained diffusion beam search and full-sort scores."""

from recbole_llada.decoding.beam_search import BeamOutput, generate_topk, tokens_per_step
from recbole_llada.decoding.constraints import SIDIndex
from recbole_llada.decoding.ranking import scores_from_generated

__all__ = ["BeamOutput", "SIDIndex", "generate_topk", "scores_from_generated", "tokens_per_step"]
