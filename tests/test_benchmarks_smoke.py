"""The benchmark scripts on tiny sizes (CPU, no ../shared): the official-style decode loop agrees with ours where it
should, the analytic FLOP counts match counted matmuls, and every script writes its files."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ sits beside the package

from benchmarks import common, quality, reference_decode, speed, tradeoff  # noqa: E402
from conftest import tiny_config_dict, tiny_llada_config_dict, write_tiny_dataset  # noqa: E402
from recbole_llada.model.llada_rec import LLaDARec  # noqa: E402
from recbole_llada.training.quick_start import RunResult  # noqa: E402

CPU = torch.device("cpu")
# Codes allowed at each position; every combination is an item, so restricting each position separately (the
# official loop) and restricting to real items jointly (ours) allow exactly the same codes.
PRODUCT_CODES = ([0, 1, 3], [1, 2], [0, 2, 3])
TINY_CODEBOOK = 4

TINY_SPEED = speed.SpeedSetup(
    n_items=40, sid_length=2, codebook_size=8, history_len=3, d_model=16, n_layers=2, n_heads=2, mlp_ratio=3,
    train_batch_size=8, train_sequences=100, test_users=50, decode_users=4, decode_batch_size=2,
    gen_steps_grid=(1, 2), beams_grid=(2, 3), reference_gen_steps=2, reference_beams=5,
    sasrec_variants=(speed.SASRecVariant("SASRec", 8, 16, 1, 1),), sasrec_batch_size=8,
    train_steps=1, warmup=0, repeats=1, matmul_size=32,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def product_catalog() -> torch.Tensor:
    codes = torch.tensor(list(itertools.product(*PRODUCT_CODES)))
    return torch.cat([torch.full((1, codes.shape[1]), -1), codes])


def tiny_llada(item_sid: torch.Tensor, codebook_size: int, **overrides):
    torch.manual_seed(0)
    dataset = common.SyntheticDataset(item_sid, codebook_size, torch.arange(1, item_sid.shape[0]))
    config = {"hidden_size": 16, "n_layers": 1, "n_heads": 2, "mlp_ratio": 2,
              "MAX_ITEM_LIST_LENGTH": 3, "temperature": 1.0, "dropout_prob": 0.0, "gen_order": "adaptive",
              "constrained_decoding": True, "gen_steps": item_sid.shape[1], **overrides}
    model, _ = common.build_synthetic_model("LLaDARec", dataset, config, CPU)
    return model.eval()


def only_valid_codes_at_the_target(model, valid: torch.Tensor) -> None:
    """Give -inf to every target token no item has at that position, in both ways the model turns hidden states
    into logits (full vocabulary for the official loop, each head's codes for ours).

    With all probability on valid codes, normalising over the vocabulary (official) or over the head's codes
    (ours), and ranking positions by the best token (official) or the best allowed code (ours), coincide; what
    is left to compare is the loop itself.
    """
    sid_length, codebook_size = valid.shape
    code_bias = torch.zeros(sid_length, codebook_size).masked_fill(~valid, float("-inf"))
    vocab_bias = torch.full((sid_length, model.vocab_size), float("-inf"))
    for position in range(sid_length):
        vocab_bias[position, model.head_offset[position] + valid[position].nonzero().squeeze(1)] = 0.0
    full_logits, code_logits = model.logits, model.target_code_logits

    def logits(hidden):
        out = full_logits(hidden).clone()
        out[..., -sid_length:, :] += vocab_bias
        return out

    model.logits = logits
    model.target_code_logits = lambda hidden: code_logits(hidden) + code_bias


def valid_code_mask(codebook_size: int) -> torch.Tensor:
    valid = torch.zeros(len(PRODUCT_CODES), codebook_size, dtype=torch.bool)
    for position, codes in enumerate(PRODUCT_CODES):
        valid[position, codes] = True
    return valid


def random_users(model, n_users: int, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, model.n_items, (n_users, model.max_seq_length), generator=generator)
    lengths = torch.randint(1, model.max_seq_length + 1, (n_users,), generator=generator)
    items = items.masked_fill(torch.arange(model.max_seq_length) >= lengths[:, None], 0)
    return {model.ITEM_SEQ: items, model.ITEM_SEQ_LEN: lengths}


# ----- reference_decode ------------------------------------------------------------------------------------

def test_position_valid_tokens_lists_the_codes_seen_at_each_position():
    generator = torch.Generator().manual_seed(1)
    item_sid = common.random_unique_sids(30, 3, 5, generator)
    head_offset = 1 + torch.arange(3) * 5
    mask_token = 1 + 3 * 5
    table = reference_decode.position_valid_tokens(item_sid, head_offset, mask_token)
    for position in range(3):
        expected = {int(head_offset[position]) + code for code in item_sid[1:, position].tolist()}
        listed = [t for t in table[position].tolist() if t != mask_token]
        assert sorted(listed) == sorted(expected) and len(listed) == len(expected)


@pytest.mark.parametrize("num_beams", [5, 20])  # 20 > 18 items: ours ends with dead beams, the official with copies
def test_official_loop_returns_our_beams_with_one_position_per_step(num_beams):
    item_sid = product_catalog()
    model = tiny_llada(item_sid, TINY_CODEBOOK, num_beams=num_beams, decode_batch_size=3)
    only_valid_codes_at_the_target(model, valid_code_mask(TINY_CODEBOOK))
    users = random_users(model, 6)
    history = model.history_tokens(users[model.ITEM_SEQ], users[model.ITEM_SEQ_LEN])
    valid_tokens = reference_decode.position_valid_tokens(model.item_sid, model.head_offset, model.mask_token)
    sid_length = item_sid.shape[1]
    with torch.no_grad():
        ours = model.generate(history, num_beams)
        official = reference_decode.reference_beam_search(
            reference_decode.full_vocabulary_network(model), history, num_beams, sid_length, valid_tokens,
            model.mask_token, model.head_offset)
        our_scores = model.full_sort_predict(users)
        official_scores = reference_decode.reference_full_sort_predict(model, users, num_beams, sid_length, 3)

    live = torch.isfinite(ours.scores)
    assert live.sum(1).tolist() == [min(num_beams, len(item_sid) - 1)] * 6
    assert torch.equal(official.live, live)
    assert torch.equal(official.codes[live], ours.codes[live])
    assert torch.allclose(official.scores[live], ours.scores[live], atol=1e-5)
    assert torch.equal(official_scores, our_scores)


def test_official_loop_with_several_positions_per_step_still_yields_valid_codes():
    item_sid = product_catalog()
    model = tiny_llada(item_sid, TINY_CODEBOOK, gen_steps=2)
    users = random_users(model, 4)
    history = model.history_tokens(users[model.ITEM_SEQ], users[model.ITEM_SEQ_LEN])
    valid_tokens = reference_decode.position_valid_tokens(model.item_sid, model.head_offset, model.mask_token)
    with torch.no_grad():
        beams = reference_decode.reference_beam_search(
            reference_decode.full_vocabulary_network(model), history, 4, 2, valid_tokens, model.mask_token,
            model.head_offset)
    assert beams.live.all()
    assert (beams.scores[:, :-1] >= beams.scores[:, 1:]).all()
    for position, codes in enumerate(PRODUCT_CODES):
        assert set(beams.codes[:, :, position].flatten().tolist()) <= set(codes)


# ----- speed ---------------------------------------------------------------------------------------------

def counted_matmul_flops(fn) -> int:
    # The math attention backend runs attention as batched matmuls, which the counter sees.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_analytic_flops_equal_the_counted_matmuls():
    setup = TINY_SPEED
    generator = torch.Generator().manual_seed(0)
    dataset = common.synthetic_dataset(setup.n_items, setup.sid_length, setup.codebook_size, 10, generator)
    model, _ = common.build_synthetic_model("LLaDARec", dataset, speed.llada_overrides(setup), CPU)
    batch = common.synthetic_batch(model, 5, setup.history_len, setup.n_items, generator, CPU)
    model.train()
    assert counted_matmul_flops(lambda: model.calculate_loss(batch).backward()) \
        == 5 * speed.train_flops_per_sample(setup)

    model.eval()
    history = model.history_tokens(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    valid_tokens = reference_decode.position_valid_tokens(model.item_sid, model.head_offset, model.mask_token)
    with torch.no_grad():
        for gen_steps in (1, 2):
            with model.decoding(gen_steps=gen_steps):
                assert counted_matmul_flops(lambda: model.generate(history, 3)) \
                    == 5 * speed.decode_flops_per_user(setup, gen_steps, 3, official=False)
            assert counted_matmul_flops(lambda: reference_decode.reference_beam_search(
                reference_decode.full_vocabulary_network(model), history, 3, gen_steps, valid_tokens,
                model.mask_token, model.head_offset)) \
                == 5 * speed.decode_flops_per_user(setup, gen_steps, 3, official=True)


def test_random_unique_sids_are_unique_and_in_range():
    sid = common.random_unique_sids(200, 2, 16, torch.Generator().manual_seed(0))
    assert sid.shape == (201, 2) and (sid[0] == -1).all()
    assert len({tuple(row) for row in sid[1:].tolist()}) == 200
    assert sid[1:].min() >= 0 and sid[1:].max() < 16


def test_speed_measures_every_setting_and_writes_md_and_csv(tmp_path):
    report = speed.run_speed(dataclasses.replace(TINY_SPEED, compare_dense_mask=True), CPU)
    md_path, csv_path = speed.write_speed(report, tmp_path, "cpu-tiny")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = {(r["task"], r["model"], r["setting"]) for r in rows}
    decode_grid = {("decode", speed.OURS, speed.decode_setting(t, b)) for t in (1, 2) for b in (2, 3)}
    assert keys == {("train", speed.OURS, "batch 8"), ("train", "SASRec", "d=8, layers=1"),
                    ("decode", "SASRec", "d=8, layers=1"), ("decode", speed.REFERENCE, "T=2 B=5"),
                    ("decode", speed.OURS, "T=2 B=5"), *decode_grid,
                    ("train", speed.OURS, "batch 8, dense mask"), ("decode", speed.OURS, "T=2 B=5, dense mask")}
    for row in rows:
        throughput = float(row["throughput"])
        assert throughput > 0
        total = TINY_SPEED.train_sequences if row["task"] == "train" else TINY_SPEED.test_users
        assert float(row["full_run_s"]) == pytest.approx(total / throughput)
    text = md_path.read_text()
    assert "Speed-up of our decoding over the official-style loop at T=2 B=5" in text
    assert "commit" in text and "hardware" in text


def test_speed_times_every_requested_scoring_mode_on_the_same_users(tmp_path):
    setup = dataclasses.replace(TINY_SPEED, scorings=("beam", "marginal", "rescore", "fused"), run_reference=False,
                                run_sasrec=False, gen_steps_grid=(2,), beams_grid=(5,))
    report = speed.run_speed(setup, CPU)
    rows = {r.setting: r for r in report.rows if r.task == "decode"}
    assert set(rows) == {"T=2 B=5", "scoring=beam, T=2 B=5", "scoring=marginal", "scoring=rescore",
                         "scoring=fused"}
    assert all(r.throughput > 0 and r.batch == setup.decode_users for r in rows.values())
    # fused reads the item scorer: timed on a model that has one (its parameters: the scorer's projection more).
    assert rows["scoring=fused"].n_parameters > rows["scoring=marginal"].n_parameters
    md_path, _ = speed.write_speed(report, tmp_path, "cpu-tiny")
    assert "Rows `scoring=...`" in md_path.read_text()
    with pytest.raises(SystemExit):
        speed.build_parser().parse_args(["--scorings=beam,nucleus"])


def test_speed_times_training_for_every_compile_mode_and_batch_size(tmp_path, monkeypatch):
    """--compile_modes x --train_batch_grid: one training row each, labelled; decoding uses the plain model."""
    compiled_modes = []  # no compiler on CPU: the mode each model would compile with is only recorded
    monkeypatch.setattr(LLaDARec, "compile", lambda self, **kwargs: compiled_modes.append(kwargs["mode"]))
    speed.main(["--small", "--device=cpu", f"--out_dir={tmp_path}", "--no_reference", "--no_sasrec",
                "--compile_modes=eager,max-autotune-no-cudagraphs", "--train_batch_grid=4,8", "--gen_steps_grid=1",
                "--beams_grid=2", "--repeats=1", "--train_steps=1", "--label=grid"])
    with open(tmp_path / "speed_cpu-small-grid.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["task"], r["setting"], r["batch"]) for r in rows] == [
        ("train", "batch 4, eager", "4"), ("train", "batch 8, eager", "8"),
        ("train", "batch 4, compile max-autotune-no-cudagraphs", "4"),
        ("train", "batch 8, compile max-autotune-no-cudagraphs", "8"), ("decode", "T=1 B=2", "16")]
    assert compiled_modes == ["max-autotune-no-cudagraphs"]
    with pytest.raises(SystemExit):
        speed.main(["--small", "--device=cpu", "--compile_modes=eager,fast"])


# The official LLaDA-Rec code is never in this repository: a local checkout, named by $OFFICIAL as on the device
# machine, or carried in .carry/official. CI has none, so the tests that run it are skipped there.
OFFICIAL_DIR = Path(os.environ.get("OFFICIAL", common.REPO_ROOT / ".carry" / "official"))
needs_official_code = pytest.mark.skipif(not (OFFICIAL_DIR / "genrec").is_dir(),
                                         reason=f"no checkout of the official LLaDA-Rec code at {OFFICIAL_DIR}")


def test_speed_refuses_a_directory_without_the_official_code_before_timing(tmp_path, capsys, monkeypatch):
    def no_timing(*args, **kwargs):
        pytest.fail("timed despite a wrong official directory")

    monkeypatch.setattr(speed, "measure_matmul_rates", no_timing)
    monkeypatch.setattr(speed, "measure_llada", no_timing)
    with pytest.raises(SystemExit) as exit_info:
        speed.main(["--small", "--device=cpu", f"--out_dir={tmp_path}", f"--official_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert f"{tmp_path} is not a checkout of the official LLaDA-Rec code" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    # run_speed checks too, for callers other than main.
    with pytest.raises(ValueError, match="not a checkout of the official LLaDA-Rec code"):
        speed.run_speed(dataclasses.replace(TINY_SPEED, official_dir=tmp_path), CPU)


@needs_official_code
def test_speed_times_the_official_code_beside_ours(tmp_path):
    speed.main(["--small", "--device=cpu", f"--out_dir={tmp_path}", f"--official_dir={OFFICIAL_DIR}",
                "--no_sasrec", "--gen_steps_grid=4", "--beams_grid=50", "--repeats=1"])
    with open(tmp_path / "speed_cpu-small.csv", newline="") as f:
        rows = {(r["task"], r["model"], r["setting"]): r for r in csv.DictReader(f)}
    official = [rows[("train", speed.OFFICIAL, "batch 32")], rows[("decode", speed.OFFICIAL, "T=4 B=50")]]
    assert ("decode", speed.REFERENCE, "T=4 B=50") in rows  # the re-implemented loop stays
    for row in official:
        for column in ("median_s", "throughput", "full_run_s", "n_parameters"):
            assert float(row[column]) > 0
    text = (tmp_path / "speed_cpu-small.md").read_text()
    assert "| LLaDA-Rec official code | T=4 B=50 | fp32 | 16 |" in text
    assert "**Over the official code itself: decoding " in text and "training " in text
    assert f"TengShi-RUC/LLaDA-Rec bd8bdc1, imported from {OFFICIAL_DIR.resolve()}" in text


@needs_official_code
def test_official_model_flops_equal_the_counted_matmuls():
    from benchmarks import official_model

    setup = dataclasses.replace(TINY_SPEED, reference_beams=10)  # its evaluator asks for max(topk) = 10 SIDs
    generator = torch.Generator().manual_seed(0)
    dataset = common.synthetic_dataset(setup.n_items, setup.sid_length, setup.codebook_size, 10, generator)
    model, config = common.build_synthetic_model("LLaDARec", dataset, speed.llada_overrides(setup), CPU)
    official = official_model.build_official_model(OFFICIAL_DIR, config, model.item_sid, setup.reference_gen_steps,
                                                   setup.reference_beams, CPU)
    batch = common.synthetic_batch(model, 5, setup.history_len, setup.n_items, generator, CPU)
    batch = official_model.official_batch(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], batch[model.POS_ITEM_ID])
    official.model.train()
    assert counted_matmul_flops(lambda: official.model(batch).loss.backward()) \
        == 5 * speed.train_flops_per_sample(setup, official=True)
    assert counted_matmul_flops(lambda: official_model.official_predict(official, batch["input_ids"])) \
        == 5 * speed.decode_flops_per_user(setup, setup.reference_gen_steps, setup.reference_beams, official=True,
                                           vocab_size=setup.official_vocab_size)


def test_profile_labels_regions_and_categories_and_writes_md(tmp_path):
    from benchmarks import speed_profile as profile

    decode, train = profile.profile_llada(TINY_SPEED, CPU, dense_mask=False)
    events = {e.key: e for e in decode.events}
    # 2 chunks of 2 users x 2 steps: one model call per step, and the index asked at least once per step.
    assert events[profile.MODEL_REGION].count == 4
    assert events[profile.CONSTRAINT_REGION].count >= 4
    assert "aten::searchsorted" in events
    regions = {row[0]: row for row in profile.region_rows(train, on_device=False)}
    assert set(regions) == {"train: forward + loss", "train: backward", "train: clip_grad_norm_", "train: optimizer",
                            "everything else", "total (train step)"}
    assert float(regions["train: backward"][2].replace(",", "")) > 0
    categories = {row[0]: row[1] for row in profile.category_rows(decode, on_device=False)}
    assert categories["matmul"] > 0 and categories["attention"] > 0 and categories["constraint search"] > 0
    assert profile.category("aten::searchsorted") == "constraint search"
    assert profile.category("nvjet_tst_128x64_64x8_1x2_h_bz_coopA_NNT") == "matmul"
    assert profile.category("aten::view") == "other"

    path = tmp_path / "profile.md"
    common.write_markdown(path, "profile", profile.markdown_sections([decode, train], TINY_SPEED, CPU, False), {})
    text = path.read_text()
    assert "## train step: top 25 by self CPU time" in text and "aten::mm" in text


# ----- quality and tradeoff (one tiny training run each, shared) ---------------------------------------------

@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """SASRec with two seeds and LLaDARec with one, as two separate invocations into the same results folder."""
    root = tmp_path_factory.mktemp("quality")
    llada_overrides = tiny_llada_config_dict(root)
    overrides = tiny_config_dict(root / "data", root)
    del overrides["seed"], llada_overrides["seed"]  # the seeds are run_quality's
    results = root / "results"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # RecBole writes log/ into the working directory
        quality.run_quality(["SASRec"], "tiny", [1, 2], overrides, results)
        quality.run_quality(["LLaDARec"], "tiny", [1], llada_overrides, results)
    return results


def test_quality_merges_separate_invocations_into_one_summary(tiny_runs):
    runs = quality.read_runs(quality.runs_path(tiny_runs, "tiny"))
    assert [(r["label"], r["seed"]) for r in runs] == [("SASRec", "1"), ("SASRec", "2"), ("LLaDARec", "1")]
    with open(tiny_runs / "tiny.csv", newline="") as f:
        summary = {row["model"]: row for row in csv.DictReader(f)}
    assert set(summary) == {"SASRec", "LLaDARec"}
    sasrec_ndcg = [float(r["ndcg@10"]) for r in runs if r["label"] == "SASRec"]
    assert float(summary["SASRec"]["ndcg@10_mean"]) == pytest.approx(statistics.fmean(sasrec_ndcg))
    assert float(summary["SASRec"]["ndcg@10_std"]) == pytest.approx(statistics.stdev(sasrec_ndcg))
    assert summary["LLaDARec"]["n_seeds"] == "1" and summary["LLaDARec"]["ndcg@10_std"] == ""
    llada = runs[-1]  # LLaDARec's trainer times its epochs; the row keeps the medians (multi_gpu.py reads them)
    assert float(llada["train_s_per_epoch"]) > 0 and float(llada["valid_s_per_epoch"]) > 0
    assert all(r["train_s_per_epoch"] == "" for r in runs[:2])
    text = (tiny_runs / "tiny.md").read_text()
    assert "| ours | SASRec | 2 |" in text and " ± " in text and "commit" in text
    assert all((r["epochs"], r["stopped_by"]) == ("1", "epoch cap") for r in runs)  # tiny config: epochs 1
    assert "- ours, SASRec: seeds 1, 2; epochs 1 (epoch cap), 1 (epoch cap); settings" in text


def test_experiment_file_runs_its_labelled_runs_and_writes_their_rows(tmp_path, monkeypatch):
    """One command, one experiment file: each labelled run once per seed under its own config files and
    overrides, the command line's overrides over the file's; --only picks runs by label."""
    monkeypatch.chdir(tmp_path)  # RecBole writes log/ and saved/ into the working directory
    write_tiny_dataset(tmp_path / "data")
    tiny = tiny_config_dict(tmp_path / "data", tmp_path)
    del tiny["seed"], tiny["data_path"]  # the experiment's
    del tiny["n_layers"]  # so that the config file's layers count (overrides win over files)
    layers_file = str(tmp_path / "three_layers.yaml")
    Path(layers_file).write_text("n_layers: 3\n")
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(yaml.safe_dump({
        "dataset": "tiny", "data_path": "/nonexistent", "seeds": [1], "overrides": {**tiny, "epochs": 5},
        "runs": [{"label": "SASRec", "model": "SASRec"},
                 {"label": "SASRec (3 layers)", "model": "SASRec", "config_files": [layers_file],
                  "overrides": {"hidden_dropout_prob": 0.1}, "seeds": [1, 2]},
                 {"label": "GRU4Rec", "model": "GRU4Rec"}]}))
    results = tmp_path / "results"
    common_args = [f"--experiment={experiment}", f"--results_dir={results}", f"--data_path={tmp_path / 'data'}",
                   "--epochs=1"]
    quality.main([*common_args, "--only=SASRec", "--only=SASRec (3 layers)"])
    runs = quality.read_runs(quality.runs_path(results, "tiny"))
    assert [(r["label"], r["model"], r["seed"]) for r in runs] == [
        ("SASRec", "SASRec", "1"), ("SASRec (3 layers)", "SASRec", "1"), ("SASRec (3 layers)", "SASRec", "2")]
    assert all(r["epochs"] == "1" for r in runs)  # --epochs=1 over the file's 5
    layered = [json.loads(r["overrides"]) for r in runs[1:]]
    assert all(o["hidden_dropout_prob"] == 0.1 and o["data_path"] == str(tmp_path / "data") for o in layered)
    assert [r["config_files"] for r in runs] == ["", layers_file, layers_file]
    assert all(r["train_s_per_epoch"] == "" for r in runs)  # RecBole's own trainer: no epoch times recorded
    assert int(runs[1]["n_parameters"]) > int(runs[0]["n_parameters"])  # the config file's third layer
    text = (results / "tiny.md").read_text()
    assert "| ours | SASRec (3 layers) | 2 |" in text and "three_layers.yaml" in text and "GRU4Rec" not in text
    quality.main([*common_args, "--only=GRU4Rec"])
    assert [r["label"] for r in quality.read_runs(quality.runs_path(results, "tiny"))][-1] == "GRU4Rec"
    with pytest.raises(ValueError, match="no run labelled"):
        quality.main([*common_args, "--only=SASRec (4 layers)"])


def test_gpu_assignment_deals_runs_round_robin_after_the_multi_gpu_runs():
    runs = [quality.LabelledRun(label, "SASRec", nproc=nproc)
            for label, nproc in [("a", 1), ("ddp", 2), ("b", 1), ("c", 1)]]
    multi, per_gpu = quality.gpu_assignment(runs, ["0", "1"])
    assert multi == [("0,1", "ddp")]
    assert per_gpu == {"0": ["a", "c"], "1": ["b"]}
    assert quality.gpu_assignment(runs[:1], ["3", "5"]) == ([], {"3": ["a"]})
    with pytest.raises(ValueError, match="more GPUs"):
        quality.gpu_assignment(runs, ["0"])


def test_experiment_on_gpus_starts_one_process_per_gpu_with_its_runs(tmp_path, monkeypatch):
    experiment = quality.Experiment("tiny", (1,), {}, tuple(
        quality.LabelledRun(label, "SASRec", nproc=nproc) for label, nproc in [("a", 1), ("ddp", 2), ("b", 1)])
        + (quality.LabelledRun("on a", "LLaDARec", overrides={"item_scorer_backbone": "checkpoint of a"}),))
    started = []

    class RecordedProcess:
        def __init__(self, command):
            started.append(command)

        def wait(self):
            return 0

    monkeypatch.setattr(quality.subprocess, "run", lambda command, check: started.append(command))
    monkeypatch.setattr(quality.subprocess, "Popen", RecordedProcess)
    quality.run_experiment_on_gpus(tmp_path / "x.yaml", experiment, ["0", "1"], ["--epochs=1"], tmp_path / "out")
    options = [{arg.split("=", 1)[0]: arg.split("=", 1)[1] for arg in command[2:] if not arg.startswith("--only")}
               | {"only": [arg.split("=", 1)[1] for arg in command if arg.startswith("--only=")]}
               for command in started]
    # The run trained on another run's checkpoint comes last, once the others are done.
    assert [(o["--gpu_id"], o["only"]) for o in options] == [("0,1", ["ddp"]), ("0", ["a"]), ("1", ["b"]),
                                                            ("0", ["on a"])]
    assert [o["--checkpoint_dir"] for o in options] == ["saved/gpu0-1", "saved/gpu0", "saved/gpu1", "saved/gpu0"]
    assert all(o["--epochs"] == "1" and o["--experiment"] == str(tmp_path / "x.yaml") for o in options)


def test_a_checkpoint_of_another_run_resolves_per_seed(tmp_path):
    runs = quality.runs_path(tmp_path, "tiny")
    for seed in (1, 2):
        checkpoint = tmp_path / f"backbone-seed{seed}.pth"
        checkpoint.write_bytes(b"")
        quality.append_run(runs, {key: "" for key in quality.RUN_COLUMNS} | {
            "label": "backbone", "seed": str(seed), "saved_model_file": str(checkpoint)})
    overrides = {"item_scorer": "sid", "item_scorer_backbone": "checkpoint of backbone"}
    assert quality.checkpoint_references(overrides) == {"item_scorer_backbone": "backbone"}
    for seed in (1, 2):
        resolved = quality.resolve_checkpoints(overrides, "tiny", tmp_path, seed)
        assert resolved == {"item_scorer": "sid", "item_scorer_backbone": str(tmp_path / f"backbone-seed{seed}.pth")}
    with pytest.raises(LookupError, match="seed 3: run that label first"):
        quality.resolve_checkpoints(overrides, "tiny", tmp_path, 3)
    assert quality.resolve_checkpoints({"epochs": 1}, "tiny", tmp_path, 3) == {"epochs": 1}


def test_the_result_experiments_name_existing_config_files():
    for path in sorted((Path(__file__).resolve().parents[1] / "benchmarks" / "experiments").glob("*.yaml")):
        if path.name == "ablations.yaml":  # ablations.py's studies, another format
            continue
        experiment = quality.load_experiment(path)
        assert experiment.runs and experiment.seeds
        for labelled in experiment.runs:
            assert all((Path(__file__).resolve().parents[1] / f).is_file() for f in labelled.config_files), path


def test_every_row_of_the_result_tables_has_its_experiment_entry():
    """README: "one command per table". A label in a results table that its experiment file lacks cannot be rerun
    from it; the side-by-side rows (official_side_by_side.py writes them, ours and the official code's) are the one
    exception."""
    root = Path(__file__).resolve().parents[1]
    side_by_side = {"LLaDARec (official init, 8 epochs)", "LLaDARec (official init, 8 epochs, fp32)",
                    "official code, same data and SIDs"}
    for dataset, name in (("Beauty", "beauty"), ("Scientific", "scientific"), ("ml-100k", "ml-100k")):
        experiment = quality.load_experiment(root / "benchmarks" / "experiments" / f"{name}.yaml")
        runs = quality.read_runs(quality.runs_path(root / "benchmarks" / "results", dataset))
        labels = {row["label"] for row in runs}
        assert labels - side_by_side <= {labelled.label for labelled in experiment.runs}, dataset


def test_summary_keeps_the_latest_rerun_and_lists_published_figures(tmp_path):
    def record(label, seed, ndcg):
        return {key: "" for key in quality.RUN_COLUMNS} | {
            "label": label, "model": label, "dataset": "Beauty", "seed": seed, "ndcg@10": ndcg, "recall@10": ndcg,
            "train_seconds": 1.0, "test_seconds": 1.0, "overrides": "{}", "commit": "c", "hardware": "h"}

    path = quality.runs_path(tmp_path, "Beauty")
    for label, seed, ndcg in [("SASRec", 1, 0.1), ("SASRec", 2, 0.3), ("SASRec", 1, 0.2)]:
        quality.append_run(path, record(label, seed, ndcg))
    md_path, csv_path = quality.write_summary("Beauty", tmp_path)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    ours = [r for r in rows if r["source"] == "ours"]
    assert len(ours) == 1 and float(ours[0]["ndcg@10_mean"]) == pytest.approx(0.25)  # seed 1 rerun: 0.2 wins
    published = {r["model"]: r for r in rows if r["source"].startswith("published")}
    assert set(published) == {p.model for p in quality.PUBLISHED["Beauty"]}
    assert float(published["TIGER"]["ndcg@10_mean"]) == quality.PUBLISHED["Beauty"][3].metrics["ndcg@10"]
    assert "published: TIGER" in md_path.read_text()


def test_summary_takes_the_verdict_file_as_its_verdict_section(tmp_path):
    path = quality.runs_path(tmp_path, "Beauty")
    quality.append_run(path, {key: "" for key in quality.RUN_COLUMNS} | {
        "label": "SASRec", "model": "SASRec", "dataset": "Beauty", "seed": 1, "ndcg@10": 0.1,
        "train_seconds": 1.0, "test_seconds": 1.0, "overrides": "{}", "commit": "c", "hardware": "h"})
    assert "## Verdict" not in quality.write_summary("Beauty", tmp_path)[0].read_text()
    quality.verdict_path(tmp_path, "Beauty").write_text("LLaDARec trails SASRec.\n")
    text = quality.write_summary("Beauty", tmp_path)[0].read_text()
    assert "## Verdict\n\nLLaDARec trails SASRec." in text
    assert text.index("| ours | SASRec") < text.index("## Verdict") < text.index("## Notes")


def test_summary_names_the_config_files_of_each_setting(tmp_path):
    path = quality.runs_path(tmp_path, "Beauty")
    # the same two files, written as RecBole writes them (space separated) and as older commands did (commas)
    for seed, folder, files in [(1, "/tmp/a", "'--config_files=configs/x.yaml configs/y.yaml'"),
                                (2, "/tmp/b", "--config_files=configs/x.yaml,configs/y.yaml")]:
        quality.append_run(path, {key: "" for key in quality.RUN_COLUMNS} | {
            "label": "LLaDARec", "model": "LLaDARec", "dataset": "Beauty", "seed": seed, "ndcg@10": 0.1,
            "train_seconds": 1.0, "test_seconds": 1.0, "commit": "c", "hardware": "h",
            "overrides": json.dumps({"checkpoint_dir": folder, "epochs": 3}),
            "command": f"quality.py --dataset=Beauty --checkpoint_dir={folder} {files}"})
    md_path, _ = quality.write_summary("Beauty", tmp_path)
    settings_line = next(line for line in md_path.read_text().splitlines() if line.startswith("- ours, LLaDARec"))
    assert settings_line == ('- ours, LLaDARec: seeds 1, 2; settings '
                             '`{"config_files": "configs/x.yaml,configs/y.yaml", "epochs": 3}`')  # one setting


def test_tradeoff_reproduces_the_run_and_writes_table_and_plot(tiny_runs, tmp_path, monkeypatch):
    llada = next(r for r in quality.read_runs(quality.runs_path(tiny_runs, "tiny")) if r["model"] == "LLaDARec")
    assert llada["saved_model_file"].endswith("-seed1.pth")
    # A fresh process has constructed no Config yet, so RecBole's numpy aliases are not there: loading must set them.
    monkeypatch.delattr(np, "float", raising=False)
    loaded = tradeoff.load_checkpoint(Path(llada["saved_model_file"]), device="cpu")
    points = tradeoff.evaluate_tradeoff(loaded, beams=(3, 6))
    assert [(p.gen_steps, p.num_beams) for p in points] == [(1, 3), (1, 6), (2, 3), (2, 6)]
    # The run evaluated its test split with gen_steps=2, num_beams=6: the reloaded model must agree exactly.
    same_as_run = next(p for p in points if (p.gen_steps, p.num_beams) == (2, 6))
    assert same_as_run.metrics["ndcg@10"] == pytest.approx(float(llada["ndcg@10"]))
    assert same_as_run.users == 40
    written = tradeoff.write_tradeoff(points, "tiny", tmp_path, llada["saved_model_file"], "cpu")
    assert {p.name for p in written} == {"tradeoff_tiny.md", "tradeoff_tiny.csv", "tradeoff_tiny.png"}
    reread = tradeoff.read_points_csv(tmp_path / "tradeoff_tiny.csv")
    assert [(p.gen_steps, p.num_beams, p.metrics["ndcg@10"]) for p in reread] \
        == [(p.gen_steps, p.num_beams, p.metrics["ndcg@10"]) for p in points]


def test_tradeoff_loads_a_checkpoint_saved_before_the_catalog_scoring_keys(tiny_runs, tmp_path):
    llada = next(r for r in quality.read_runs(quality.runs_path(tiny_runs, "tiny")) if r["model"] == "LLaDARec")
    checkpoint = torch.load(llada["saved_model_file"], map_location="cpu", weights_only=False)
    new_keys = ("scoring", "valid_scoring", "rescore_candidates", "item_scorer", "item_scorer_weight",
                "item_scorer_id_embedding")
    for key in new_keys:
        del checkpoint["config"].final_config_dict[key]
    torch.save(checkpoint, tmp_path / "old.pth")
    loaded = tradeoff.load_checkpoint(tmp_path / "old.pth", device="cpu")
    assert (loaded.model.scoring, loaded.model.rescore_candidates, loaded.model.item_scorer) == ("beam", 200, "none")


def test_quality_on_several_gpus_goes_through_the_distributed_path(tmp_path, monkeypatch):
    calls = []

    def fake_distributed(model, dataset, config_files, overrides, nproc):
        calls.append((model, overrides["seed"], nproc))
        return RunResult(model=model, dataset=dataset, seed=overrides["seed"], n_parameters=1, train_seconds=1.0,
                         test_seconds=1.0, best_valid_score=0.1, best_valid_result={},
                         test_result={"recall@10": 0.2, "ndcg@10": 0.1})

    monkeypatch.setattr(quality, "run_distributed", fake_distributed)
    monkeypatch.setattr(quality, "run", lambda *args, **kwargs: pytest.fail("single-process path taken"))
    quality.run_quality(["LLaDARec"], "tiny", [7], {}, tmp_path, nproc=2)
    assert calls == [("LLaDARec", 7, 2)]
    runs = quality.read_runs(quality.runs_path(tmp_path, "tiny"))
    assert [(r["label"], r["seed"], r["ndcg@10"]) for r in runs] == [("LLaDARec (2 GPUs)", "7", "0.1")]


def test_multi_gpu_reads_epoch_times_and_skips_the_budget_placeholder():
    from benchmarks import multi_gpu

    log = "\n".join([
        "28 Nov 18:58    INFO  epoch 0 training [time: 6.46s, train loss: 524.5706]",
        "28 Nov 18:58    INFO  epoch 0 evaluating [time: 5.56s, valid_score: 0.048100]",
        "28 Nov 18:58    INFO  epoch 1 training [time: 6.40s, train loss: 523.4216]",
        "28 Nov 18:58    INFO  epoch 2 training [time: 0.00s, train loss: 0.0000]",
        "28 Nov 18:58    INFO  epoch 2 evaluating [time: 0.00s, valid_score: -inf]",
    ])
    assert multi_gpu.epoch_times(log) == {"training": [6.46, 6.40], "evaluating": [5.56]}
    assert multi_gpu.ratio(7.0, 3.5) == pytest.approx(2.0)
    assert multi_gpu.ratio(None, 1.0) is None


def test_an_experiment_with_multi_gpu_writes_the_comparison_from_the_recorded_epoch_times(tmp_path, capsys):
    from benchmarks import quality

    rows = [{key: "" for key in quality.RUN_COLUMNS} | {m: "0.01" for m in quality.METRICS} | {
        "label": label, "seed": str(seed), "hardware": "h", "train_seconds": "1", "test_seconds": "1", "epochs": "3",
        "train_s_per_epoch": str(seconds), "valid_s_per_epoch": str(seconds / 2)}
        for label, seed, seconds in (("one", 1, 12.0), ("one", 2, 11.0), ("two", 1, 6.0))]
    experiment_file = tmp_path / "x.yaml"
    experiment_file.write_text(yaml.safe_dump({
        "dataset": "tiny", "seeds": [1], "multi_gpu": {"single": "one", "multi": "two"},
        "runs": [{"label": "one", "model": "SASRec"}, {"label": "two", "model": "SASRec", "nproc": 2}]}))
    experiment = quality.load_experiment(experiment_file)
    quality.write_multi_gpu_comparison(experiment, tmp_path)  # no runs yet: says so, writes nothing
    assert "no multi-GPU comparison yet" in capsys.readouterr().out
    assert not (tmp_path / "multi_gpu_tiny.md").exists()
    for row in rows:
        quality.append_run(quality.runs_path(tmp_path, "tiny"), row)
    quality.write_multi_gpu_comparison(experiment, tmp_path)
    assert "training 2x, validation 2x" in (tmp_path / "multi_gpu_tiny.md").read_text()  # seed 1: 12 s against 6 s
    experiment_file.write_text(experiment_file.read_text().replace("multi: two", "multi: three"))
    with pytest.raises(ValueError, match="multi_gpu names"):
        quality.load_experiment(experiment_file)


def test_multi_gpu_compares_against_the_seed_spread_and_times_the_named_run(tmp_path):
    from benchmarks import multi_gpu, quality

    def record(label, seed, ndcg, hardware, train_seconds):
        metrics = {m: 0.01 for m in quality.METRICS} | {"ndcg@10": ndcg}
        return {key: "" for key in quality.RUN_COLUMNS} | {m: str(v) for m, v in metrics.items()} | {
            "label": label, "seed": str(seed), "hardware": hardware, "train_seconds": str(train_seconds),
            "test_seconds": "1.0"}

    runs = quality.runs_path(tmp_path, "tiny")
    for row in [record("LLaDARec", 1, 0.030, "1x GPU", 300), record("LLaDARec", 2, 0.034, "1x GPU", 310),
                record("LLaDARec", 2, 0.032, "1x GPU", 320),  # a rerun: the last row of a seed counts
                record("LLaDARec (long)", 1, 0.040, "1x GPU", 500), record("LLaDARec (2 GPUs)", 1, 0.031, "2x GPU", 90)]:
        quality.append_run(runs, row)
    line = "epoch {} {} [time: {}s, x]"
    (tmp_path / "one.log").write_text("\n".join([line.format(0, "training", 12.0), line.format(1, "training", 13.0),
                                                 line.format(1, "evaluating", 8.0)]))
    (tmp_path / "two.log").write_text("\n".join([line.format(0, "training", 8.0), line.format(1, "evaluating", 4.0)]))

    assert multi_gpu.main(["--dataset=tiny", f"--results_dir={tmp_path}", "--single=LLaDARec",
                           "--multi=LLaDARec (2 GPUs)", f"--single_log={tmp_path / 'one.log'}",
                           f"--multi_log={tmp_path / 'two.log'}", "--single_log_label=LLaDARec (long)"]) == 0
    report = (tmp_path / "multi_gpu_tiny.md").read_text()
    spread = statistics.stdev([0.030, 0.032])
    assert f"| NDCG@10 | 0.03 | 0.031 | +0.0010 | {multi_gpu.format_number(spread)} |" in report
    assert "| LLaDARec (long) | 1x GPU | 2 | 12.5 | 8 | 500 | 1 |" in report
    assert "training 1.56x, validation 2x" in report
    with open(tmp_path / "multi_gpu_tiny.csv", newline="") as f:
        assert [row["label"] for row in csv.DictReader(f)] == ["LLaDARec (long)", "LLaDARec (2 GPUs)"]


def test_gpu_quality_passes_each_run_its_own_arguments(tmp_path):
    """gpu_quality.sh with a recording stand-in for Python: which quality.py runs it starts, with which words."""
    if shutil.which("flock") is None:
        pytest.skip("gpu_quality.sh needs flock (util-linux)")
    calls = tmp_path / "calls.jsonl"
    stand_in = tmp_path / "python"
    stand_in.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "if sys.argv[1] == '-c':\n    print(0)\n"  # the GPU count
        "elif sys.argv[1] == '-':\n    sys.stdin.read()\n"  # the merge step
        f"else:\n    open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    stand_in.chmod(0o755)
    repo = Path(__file__).resolve().parents[1]
    environment = {"PATH": "/usr/bin:/bin", "PYTHON": str(stand_in), "LLADA_SEEDS": "2", "SEEDS": "1",
                   "FIRST_SEED": "7", "BASELINES": "SASRec", "TRADEOFF_STEPS": "",
                   "LLADA_LABEL": "LLaDARec (paper size)", "LLADA_OVERRIDES": "--epochs=3 --sid_seed=1",
                   "BASELINE_LABEL": "SASRec (d=256, 4 layers)", "BASELINE_OVERRIDES": "--config_files=a.yaml,b.yaml"}
    subprocess.run(["bash", "benchmarks/gpu_quality.sh", "tiny", str(tmp_path / "work")], cwd=repo,
                   env=environment, check=True, capture_output=True, timeout=60)

    def option(args: list[str], name: str) -> str:
        return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}="))

    runs = [json.loads(line) for line in calls.read_text().splitlines()]
    by_run = {(option(args, "models"), option(args, "first_seed")): args
              for args in runs if "--summary_only" not in args}
    assert sorted(by_run) == [("LLaDARec", "7"), ("LLaDARec", "8"), ("SASRec", "7")]
    for seed in ("7", "8"):
        llada = by_run["LLaDARec", seed]
        assert "--label=LLaDARec (paper size)" in llada  # one word, spaces and all
        assert {"--epochs=3", "--sid_seed=1"} <= set(llada)
        assert option(llada, "results_dir") == f"{tmp_path / 'work'}/runs/LLaDARec-{seed}"
    sasrec = by_run["SASRec", "7"]
    assert option(sasrec, "label") == "SASRec (d=256, 4 layers)"
    assert option(sasrec, "config_files") == "a.yaml,b.yaml"
    assert "--epochs=3" not in sasrec
