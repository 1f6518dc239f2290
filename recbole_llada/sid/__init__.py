"""Semantic IDs: item text -> embeddings -> quantizer -> unique SIDs (cached). Free of RecBole except
``collaborative`` (SASRec item embeddings), which is imported on demand."""

from recbole_llada.sid.build import (PADDING_CODE, SIDConfig, SIDReport, SIDResult, build_semantic_ids,
                                     make_quantizer, quantizer_config, write_sid_table)
from recbole_llada.sid.cache import ArrayCache, fingerprint
from recbole_llada.sid.embed import encode_texts, load_embedding_file, pca_whiten, resolve_text_encoder
from recbole_llada.sid.text import clean_text, read_item_texts
from recbole_llada.sid.unique import UniqueResult, make_unique

__all__ = [
    "ArrayCache", "PADDING_CODE", "SIDConfig", "SIDReport", "SIDResult", "UniqueResult",
    "build_semantic_ids", "clean_text", "encode_texts", "fingerprint", "load_embedding_file", "make_quantizer",
    "make_unique", "quantizer_config", "pca_whiten", "read_item_texts", "resolve_text_encoder", "write_sid_table",
]
