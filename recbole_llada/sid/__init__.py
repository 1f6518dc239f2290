"""Semantic IDs: item text -> embeddings -> quantizer -> unique SIDs (cached). Free of RecBole except
``collaborative`` (SASRec item embeddings), which is imported on demand."""

from recbole_llada.sid.build import (PADDING_CODE, SIDConfig, SIDReport, SIDResult, build_semantic_ids,
                                     make_quantizer, quantizer_config, resolved_device, write_sid_table)
from recbole_llada.sid.cache import ArrayCache, fingerprint
from recbole_llada.sid.embed import (ItemEmbeddings, array_embeddings, encode_texts, file_embeddings, fused_embeddings,
                                     load_embedding_file, pca_whiten, resolve_text_encoder, text_embeddings)
from recbole_llada.sid.text import clean_text, read_item_texts
from recbole_llada.sid.unique import UniqueResult, make_unique

__all__ = [
    "ArrayCache", "ItemEmbeddings", "PADDING_CODE", "SIDConfig", "SIDReport", "SIDResult", "UniqueResult",
    "array_embeddings", "build_semantic_ids", "clean_text", "encode_texts", "file_embeddings", "fingerprint",
    "fused_embeddings", "load_embedding_file", "make_quantizer", "make_unique", "pca_whiten", "quantizer_config",
    "read_item_texts", "resolve_text_encoder", "resolved_device", "text_embeddings", "write_sid_table",
]
