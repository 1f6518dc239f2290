"""benchmarks/official_side_by_side.py: our split and SIDs in the official LLaDA-Rec input format (no official code
needed: its loader's reading of the files is re-enacted here from its documented behaviour)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import official_side_by_side as side  # noqa: E402
from benchmarks import quality  # noqa: E402
from conftest import TINY_DATASET, tiny_config_dict  # noqa: E402
from recbole_llada.sid.build import write_sid_table  # noqa: E402


def recbole_style_rows(sequences: dict[int, list[int]], max_len: int) -> tuple[side.SplitRows, ...]:
    """RecBole's sequential augmentation and leave-one-out, written out by hand: one row per item after the
    first (target + right-padded last max_len earlier items); per user the last row is test, the one before
    valid."""
    splits = {"train": [], "valid": [], "test": []}
    for user, items in sequences.items():
        for position in range(1, len(items)):
            history = items[max(0, position - max_len):position]
            split = "test" if position == len(items) - 1 else "valid" if position == len(items) - 2 else "train"
            splits[split].append((user, items[position], history + [0] * (max_len - len(history)), len(history)))
    return tuple(
        side.SplitRows(users=np.array([r[0] for r in rows]), targets=np.array([r[1] for r in rows]),
                       histories=np.array([r[2] for r in rows]).reshape(len(rows), max_len),
                       lengths=np.array([r[3] for r in rows]))
        for rows in splits.values())


def official_sequences(raw_dir: Path, category: str) -> dict[str, list[str]]:
    """What the official AmazonReviews2023 loader keeps per user: rows without history dropped, then the
    longest history + target over its train, valid and test files."""
    merged: dict[str, list[str]] = {}
    for split in ("train", "valid", "test"):
        frame = pd.read_csv(raw_dir / f"{category}.{split}.csv")
        for user, item, history in zip(frame["user_id"], frame["parent_asin"], frame["history"]):
            if not isinstance(history, str) or not history:
                continue
            sequence = history.split(" ") + [item]
            if len(sequence) > len(merged.get(user, [])):
                merged[user] = sequence
    return merged


def test_user_sequences_rebuild_every_sequence_from_recbole_style_rows():
    rng = np.random.default_rng(0)
    sequences = {user: rng.integers(1, 50, size=rng.integers(3, 30)).tolist() for user in range(1, 20)}
    assert side.user_sequences(*recbole_style_rows(sequences, max_len=5)) == sequences


def test_user_sequences_refuse_rows_out_of_order():
    train, valid, test = recbole_style_rows({1: [1, 2, 3, 4, 5]}, max_len=5)
    swapped = side.SplitRows(users=train.users[::-1], targets=train.targets[::-1],
                             histories=train.histories[::-1], lengths=train.lengths[::-1])
    with pytest.raises(ValueError, match="not chronological"):
        side.user_sequences(swapped, valid, test)


def test_user_sequences_refuse_a_user_without_validation_target():
    train, valid, test = recbole_style_rows({1: [1, 2, 3, 4], 2: [5, 6, 7, 8]}, max_len=5)
    only_user_1 = side.SplitRows(users=valid.users[:1], targets=valid.targets[:1],
                                 histories=valid.histories[:1], lengths=valid.lengths[:1])
    with pytest.raises(ValueError, match="no valid target"):
        side.user_sequences(train, only_user_1, test)


@pytest.fixture
def tiny_split(tiny_data_path, tmp_path):
    overrides = tiny_config_dict(tiny_data_path, tmp_path, sid_length=2, sid_codebook_size=8)
    return side.load_split(TINY_DATASET, [], overrides)


def test_recbole_split_gives_every_users_chronological_sequence(tiny_split, tiny_data_path):
    _, data, splits = tiny_split
    sequences = side.user_sequences(*splits)
    users = data.field2id_token[data.uid_field]
    items = data.field2id_token[data.iid_field]
    rows = [line.split("\t") for line in
            (tiny_data_path / TINY_DATASET / f"{TINY_DATASET}.inter").read_text().splitlines()[1:]]
    expected: dict[str, list[tuple[float, str]]] = {}
    for user, item, timestamp in rows:
        expected.setdefault(user, []).append((float(timestamp), item))
    assert {users[u]: [items[i] for i in seq] for u, seq in sequences.items()} == \
        {user: [item for _, item in sorted(events)] for user, events in expected.items()}


def test_official_files_give_back_our_sequences_targets_and_sids(tiny_split, tmp_path):
    _, data, splits = tiny_split
    sequences = side.user_sequences(*splits)
    user_tokens = list(data.field2id_token[data.uid_field])
    item_tokens = list(data.field2id_token[data.iid_field])
    # Numeric tokens, as in our Beauty data: the prefix must keep them strings through the csv reader.
    item_tokens = [token if i == 0 else str(i * 7) for i, token in enumerate(item_tokens)]
    codes = {token: [i % 8, i // 8] for i, token in enumerate(item_tokens) if i}
    codes["999"] = [7, 7]  # an item outside the data: must stay out of the JSON
    stale = tmp_path / "work" / "cache" / "AmazonReviews2023" / "tiny" / "processed"
    stale.mkdir(parents=True)

    sem_ids_path = side.write_official_inputs(tmp_path / "work", "tiny", sequences, user_tokens, item_tokens,
                                              codes, max_item_seq_len=20)

    assert not stale.exists()
    assert sem_ids_path == (tmp_path / "work" / "output" / "AmazonReviews2023_tiny"
                            / "TokenModel_Seq-20_MultiHeadVQVAE" / "sem_ids" / side.SEM_IDS_NAME)
    raw_dir = tmp_path / "work" / "cache" / "AmazonReviews2023" / "tiny" / "raw"
    assert (raw_dir / "meta_tiny.jsonl").read_text() == ""
    named = {f"user_{user_tokens[u]}": [f"item_{item_tokens[i]}" for i in seq] for u, seq in sequences.items()}
    assert official_sequences(raw_dir, "tiny") == named
    # The official leave-one-out of those sequences: test = last item, valid = the one before: ours.
    for split_name, rows in (("valid", splits[1]), ("test", splits[2])):
        with open(raw_dir / f"tiny.{split_name}.csv", newline="") as f:
            written = {row["user_id"]: row["parent_asin"] for row in csv.DictReader(f)}
        assert written == {f"user_{user_tokens[u]}": f"item_{item_tokens[i]}"
                           for u, i in zip(rows.users.tolist(), rows.targets.tolist())}
    sem_ids = json.loads(sem_ids_path.read_text())
    used = {item for seq in named.values() for item in seq}
    assert set(sem_ids) == used
    assert all(sem_ids[f"item_{token}"] == codes[token] for token in item_tokens[1:] if f"item_{token}" in used)


def test_official_files_refuse_an_item_without_sid(tiny_split, tmp_path):
    _, data, splits = tiny_split
    item_tokens = list(data.field2id_token[data.iid_field])
    codes = {token: [i % 8, i // 8] for i, token in enumerate(item_tokens[:-1]) if i}
    with pytest.raises(ValueError, match="no semantic ID"):
        side.write_official_inputs(tmp_path, "tiny", side.user_sequences(*splits),
                                   list(data.field2id_token[data.uid_field]), item_tokens, codes, 20)


def test_sid_table_round_trip_and_checks(tmp_path):
    item_sid = torch.tensor([[0, 0], [3, 1], [0, 2], [7, 7]])
    write_sid_table(tmp_path / "t.tsv", ["[PAD]", "a", "b", "c"], item_sid)
    codes = side.read_sid_table(tmp_path / "t.tsv")
    assert codes == {"a": [3, 1], "b": [0, 2], "c": [7, 7]}
    assert side.sid_shape(codes, codebook_size=8) == 2
    with pytest.raises(ValueError, match="outside"):
        side.sid_shape(codes, codebook_size=7)
    with pytest.raises(ValueError, match="share a SID"):
        side.sid_shape({**codes, "d": [0, 2]}, codebook_size=8)


def test_checkpoint_sids_name_rows_by_item_token(tmp_path):
    item_sid = torch.tensor([[0, 0], [3, 1], [0, 2]])
    torch.save({"state_dict": {"item_sid": item_sid}}, tmp_path / "model.pth")
    assert side.checkpoint_sids(tmp_path / "model.pth", ["[PAD]", "a", "b"]) == {"a": [3, 1], "b": [0, 2]}
    with pytest.raises(ValueError, match="not the same data"):
        side.checkpoint_sids(tmp_path / "model.pth", ["[PAD]", "a"])


def test_official_arguments_carry_our_config_and_refuse_what_it_cannot_run(tmp_path):
    from recbole_llada.training.quick_start import build_config

    config = build_config("LLaDARec", "ml-100k", overrides={"valid_num_beams": 10})
    arguments = side.official_arguments(config, "ml-100k", sid_length=2, epochs=3, seed=7, work_dir=tmp_path)
    assert (arguments["d_model"], arguments["n_layers"], arguments["n_heads"], arguments["lr"],
            arguments["his_mask_w"], arguments["temperature"], arguments["gen_steps"], arguments["num_beams"],
            arguments["val_num_beams"], arguments["train_batch_size"], arguments["vq_codebook_size"]) == (
        config["hidden_size"], config["n_layers"], config["n_heads"], config["learning_rate"],
        config["his_mask_weight"], config["temperature"], config["gen_steps"], config["num_beams"],
        config["valid_num_beams"], config["train_batch_size"], config["sid_codebook_size"])
    assert (arguments["epochs"], arguments["rand_seed"], arguments["vq_n_codebooks"]) == (3, 7, 2)
    assert (arguments["val_metric"], arguments["val_topk"], arguments["topk"]) == ("ndcg@10", "[10]", "[1,5,10]")
    assert all(arg.count("=") == 1 for arg in side.official_command_line(arguments))
    with pytest.raises(ValueError, match="attention"):
        side.official_arguments(build_config("LLaDARec", "ml-100k", overrides={"attention": "causal"}),
                                "ml-100k", 2, 3, 7, tmp_path)
    with pytest.raises(ValueError, match="valid_num_beams >= 10"):
        side.official_arguments(build_config("LLaDARec", "ml-100k", overrides={"valid_num_beams": 5}),
                                "ml-100k", 2, 3, 7, tmp_path)


def test_the_official_row_joins_the_summary_under_its_own_source(tmp_path):
    summary = {"test_results": {"recall@1": 0.01, "recall@5": 0.02, "recall@10": 0.03, "ndcg@1": 0.01,
                                "ndcg@5": 0.015, "ndcg@10": 0.02},
               "best_val_score": 0.02, "epochs_trained": 2, "n_parameters": 100, "train_seconds": 5.0,
               "test_seconds": 1.0, "checkpoint": "x.pth"}
    record = side.run_record(summary, "tiny", 2024, {"lr": 0.003, "run_time": "seed2024"}, epochs=3)
    quality.append_run(quality.runs_path(tmp_path, "tiny"), record)
    rows = quality.read_runs(quality.runs_path(tmp_path, "tiny"))
    assert [(r["label"], r["recall@10"], r["ndcg@10"], r["stopped_by"]) for r in rows] == [
        (side.LABEL, "0.03", "0.02", "early stopping")]
    assert json.loads(rows[0]["overrides"]) == {"lr": 0.003, "official_commit": side.OFFICIAL_COMMIT}
    md_path, _ = quality.write_summary("tiny", tmp_path)
    assert f"| {quality.OTHER_CODE_SOURCES[quality.OFFICIAL_CODE_MODEL]} | {side.LABEL} | 1 | 0.0100 |" \
        in md_path.read_text()
