"""LLaDARecDataset: RecBole's SequentialDataset plus every item's semantic ID.

Interactions are loaded, filtered, remapped and split by RecBole exactly as for the baselines; this class only
adds ``item_sid`` (LongTensor [n_items, M], aligned to RecBole's internal item ids, row 0 = padding) once
the split is known, because the tokenizer may only be fitted on items of the training split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset

from recbole_llada.errors import UserInputError
from recbole_llada.sid.build import SIDConfig, SIDReport, build_semantic_ids, resolved_device
from recbole_llada.sid.embed import ItemEmbeddings, file_embeddings, fused_embeddings, text_embeddings


def _has_words(text: str) -> bool:
    return any(character.isalpha() for character in text)


class LLaDARecDataset(SequentialDataset):
    item_sid: torch.Tensor
    sid_codebook_size: int  # K, as the tokenizer built the SIDs
    sid_report: SIDReport

    def build(self):
        splits = super().build()
        cfg = SIDConfig.from_config(self.config)
        item_ids = list(self.field2id_token[self.iid_field])
        train_item_mask = self._training_items(splits[0])
        embeddings = self._item_embeddings(cfg, item_ids[1:], splits, train_item_mask[1:])
        result = build_semantic_ids(cfg, item_ids, train_item_mask, embeddings)
        for dataset in (self, *splits):
            dataset.item_sid = result.item_sid
            dataset.sid_codebook_size = result.report.codebook_size
            dataset.sid_report = result.report
        return splits

    def _training_items(self, train: SequentialDataset) -> np.ndarray:
        """Mask over internal item ids: items seen in the training split (targets or histories)."""
        seen = np.zeros(self.item_num, dtype=bool)
        seen[train.inter_feat[self.iid_field].numpy()] = True
        seen[train.inter_feat[self.item_id_list_field].numpy().ravel()] = True
        seen[0] = False
        return seen

    def _item_embeddings(self, cfg: SIDConfig, items: list[str], splits: list[SequentialDataset],
                         train_mask: np.ndarray) -> ItemEmbeddings:
        """The run's one source of item vectors, chosen here from ``item_embedding`` (the only place that reads it):
        the item content (text or file), the interactions (``sid_collab_source``), or both fused."""
        parts = []
        if cfg.content_source == "text":
            parts.append(text_embeddings(items, self._item_texts(cfg, items), cfg.text_encoder, cfg.encode_batch_size,
                                         resolved_device(cfg), cfg.show_progress))
        elif cfg.content_source == "file":
            parts.append(file_embeddings(Path(cfg.embedding_file), Path(cfg.embedding_ids_file), items))
        if cfg.uses_interactions:
            from recbole_llada.sid.collaborative import cooccurrence_source, sasrec_embeddings

            if "sasrec" in cfg.collab_source:
                parts.append(sasrec_embeddings(self.config, cfg, self, splits))
            if "cooccurrence" in cfg.collab_source:
                train = splits[0]
                history = train.inter_feat[self.item_id_list_field]
                lengths = train.inter_feat[self.item_list_length_field]
                previous = history[torch.arange(len(lengths)), lengths - 1].numpy()
                parts.append(cooccurrence_source(previous, train.inter_feat[self.iid_field].numpy(), self.item_num,
                                                 cfg.cooc_dim, cfg.seed))
        return parts[0] if len(parts) == 1 else fused_embeddings(parts, train_mask)

    def _item_texts(self, cfg: SIDConfig, items: list[str]) -> dict[str, str]:
        """Item id -> text from the dataset's .item file (``text_fields``), refused when it carries no words."""
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
        if not any(_has_words(texts.get(item, "")) for item in items):
            raise UserInputError(
                f"item_embedding: text, but no item of {item_file} has any text: every value of its text "
                f"fields ({', '.join(cfg.text_fields or ['all but the item id'])}) is empty or a number, so "
                "the semantic IDs would carry no information. Name fields holding words in text_fields, or "
                "use item_embedding: collaborative (SASRec item embeddings trained on the training split)."
            )
        return texts
