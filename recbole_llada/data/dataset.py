"""LLaDARecDataset: RecBole's SequentialDataset plus every item's semantic ID.

Interactions are loaded, filtered, remapped and split by RecBole exactly as for the baselines; this class only
adds ``item_sid`` (LongTensor [n_items, M], aligned to RecBole's internal item ids, row 0 = padding) once
the split is known, because the tokenizer may only be fitted on items of the training split.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset

from recbole_llada.errors import UserInputError
from recbole_llada.sid.build import SIDConfig, SIDReport, build_semantic_ids


def _has_words(text: str) -> bool:
    return any(character.isalpha() for character in text)


class LLaDARecDataset(SequentialDataset):
    item_sid: torch.Tensor
    sid_codebook_size: int  # K, as the tokenizer built the SIDs
    sid_report: SIDReport

    def build(self):
        splits = super().build()
        train = splits[0]
        item_sid, report = self._semantic_ids(self._training_items(train), train)
        for dataset in (self, *splits):
            dataset.item_sid = item_sid
            dataset.sid_codebook_size = report.codebook_size
            dataset.sid_report = report
        return splits

    def _training_items(self, train: SequentialDataset) -> np.ndarray:
        """Mask over internal item ids: items seen in the training split (targets or histories)."""
        seen = np.zeros(self.item_num, dtype=bool)
        seen[train.inter_feat[self.iid_field].numpy()] = True
        seen[train.inter_feat[self.item_id_list_field].numpy().ravel()] = True
        seen[0] = False
        return seen

    def _semantic_ids(self, train_item_mask: np.ndarray, train: SequentialDataset) -> tuple[torch.Tensor, SIDReport]:
        cfg = SIDConfig.from_config(self.config)
        item_ids = list(self.field2id_token[self.iid_field])
        texts = None
        if cfg.content_source == "text":
            from recbole_llada.sid.text import read_item_texts

            item_file = Path(self.dataset_path) / f"{self.dataset_name}.item"
            if not item_file.is_file():
                raise UserInputError(
                    f"item_embedding: text needs item text, but {item_file} does not exist. Use "
                    "item_embedding: collaborative (SASRec item embeddings trained on the training split) "
                    "or item_embedding: file with sid_embedding_file / sid_embedding_ids_file."
                )
            try:
                texts = read_item_texts(item_file, self.iid_field, cfg.text_fields)
            except ValueError as error:
                raise UserInputError(f"{error}. Set text_fields to fields of the .item file.") from error
            if not any(_has_words(texts.get(item, "")) for item in item_ids[1:]):
                raise UserInputError(
                    f"item_embedding: text, but no item of {item_file} has any text: every value of its text "
                    f"fields ({', '.join(cfg.text_fields or ['all but the item id'])}) is empty or a number, so "
                    "the semantic IDs would carry no information. Name fields holding words in text_fields, or "
                    "use item_embedding: collaborative (SASRec item embeddings trained on the training split)."
                )
        collaborative, embedding_seconds = None, 0.0
        if cfg.uses_interactions:
            tick = time.perf_counter()
            collaborative = self._collaborative_embeddings(cfg, train, train_item_mask)
            embedding_seconds = time.perf_counter() - tick
        if cfg.content_source is None:
            result = build_semantic_ids(cfg, item_ids, train_item_mask, embeddings=collaborative,
                                        embedding_seconds=embedding_seconds)
        else:
            result = build_semantic_ids(cfg, item_ids, train_item_mask, texts=texts, fuse_with=collaborative)
        return result.item_sid, result.report

    def _collaborative_embeddings(self, cfg: SIDConfig, train: SequentialDataset,
                                  train_item_mask: np.ndarray) -> np.ndarray:
        """Item vectors [n_items, dim] from the training interactions, per ``sid_collab_source``."""
        from recbole_llada.sid.collaborative import cooccurrence_embeddings, train_collaborative_embeddings
        from recbole_llada.sid.embed import fuse_embeddings

        parts = []
        if "sasrec" in cfg.collab_source:
            parts.append(train_collaborative_embeddings(self.config, self))
        if "cooccurrence" in cfg.collab_source:
            history = train.inter_feat[self.item_id_list_field]
            lengths = train.inter_feat[self.item_list_length_field]
            previous = history[torch.arange(len(lengths)), lengths - 1].numpy()
            parts.append(cooccurrence_embeddings(previous, train.inter_feat[self.iid_field].numpy(), self.item_num,
                                                 cfg.cooc_dim, cfg.seed))
        return parts[0] if len(parts) == 1 else fuse_embeddings(parts, train_item_mask)
