"""benchmarks/ddp_speed.py end to end in its CPU mode (gloo, 2 processes), and the trainer's sync-free copy."""

import csv
import sys
from pathlib import Path

import torch
from recbole.data.interaction import Interaction

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import ddp_speed  # noqa: E402
from recbole_llada.training.trainer import to_device  # noqa: E402


def test_ddp_speed_small_writes_every_configuration(tmp_path):
    assert ddp_speed.main(["--small", f"--out_dir={tmp_path}", "--repeats=1", "--steps=2"]) == 0
    with open(tmp_path / "ddp_speed_cpu-small.csv") as f:
        rows = list(csv.DictReader(f))
    steps = [r for r in rows if r["part"] == "step"]
    loaders = [r for r in rows if r["part"] == "loader"]
    keys = {(int(r["world_size"]), r["loop"], int(r["per_rank_batch"])) for r in steps}
    single = {(1, loop, b) for loop in (ddp_speed.RECBOLE_LOOP, ddp_speed.TRAINER_LOOP) for b in (8, 16, 32)}
    double = {(2, loop, b) for loop in (ddp_speed.RECBOLE_LOOP, ddp_speed.TRAINER_LOOP, ddp_speed.NO_ALLREDUCE)
              for b in (8, 16)}
    assert keys == single | double and len(steps) == len(keys)
    for r in steps:
        assert float(r["step_ms"]) > 0
        assert int(r["global_batch"]) == int(r["world_size"]) * int(r["per_rank_batch"])
        assert abs(float(r["samples_per_s"]) * float(r["step_ms"]) / 1000 - int(r["global_batch"])) < 1e-6 * int(
            r["global_batch"])
        if r["world_size"] == "2":
            assert float(r["speedup_same_global_batch"]) > 0 and float(r["speedup_same_per_rank_batch"]) > 0
    assert [r["loader_split"] for r in loaders] == ["one process", "rank 0 of 2"]
    assert [int(r["loader_batch"]) for r in loaders] == [2048, 1024]
    for r in loaders:
        assert float(r["loader_collate_s"]) > 0 and float(r["loader_collate_and_copy_s"]) > 0
    # Each rank's DistributedSampler share at half the batch: as many batches as one process at the whole batch.
    assert abs(int(loaders[0]["loader_batches"]) - int(loaders[1]["loader_batches"])) <= 1
    assert "## Notes" in (tmp_path / "ddp_speed_cpu-small.md").read_text()


def test_to_device_copies_every_field_unchanged():
    interaction = Interaction({"item_id": torch.arange(4), "item_id_list": torch.ones(4, 3, dtype=torch.long)})
    moved = to_device(interaction, torch.device("cpu"))
    assert set(moved.interaction) == {"item_id", "item_id_list"}
    assert torch.equal(moved["item_id"], interaction["item_id"])
    assert torch.equal(moved["item_id_list"], interaction["item_id_list"])
