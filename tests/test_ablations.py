"""benchmarks/ablations.py: every study of benchmarks/experiments/ablations.yaml end to end on CPU (the tiny ring
dataset of conftest, a tiny LLaDARec, one epoch: about 2 s a run, where ml-100k cut to its 56 least active users
took twice that), and the report's arithmetic on hand-made rows."""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ sits beside the package

from benchmarks import ablations, tradeoff  # noqa: E402
from conftest import TINY_DATASET, tiny_llada_config_dict  # noqa: E402
from recbole_llada.training.quick_start import run  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_ITEMS = 30
SEED = 2024
STUDIES = ablations.load_studies()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The overrides every run takes, and one LLaDARec checkpoint (with its run's result) for the decode studies."""
    root = tmp_path_factory.mktemp("ablations")
    overrides = tiny_llada_config_dict(root, N_ITEMS)
    del overrides["seed"]  # the seeds are the script's
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # RecBole writes log/ into the working directory
        # A folder of its own: RecBole names checkpoints by the second, and the studies' first runs may start
        # within the same second as this one.
        result = run("LLaDARec", TINY_DATASET, (), {**overrides, "seed": SEED,
                                                    "checkpoint_dir": str(root / "fixture_saved")})
    return root, overrides, Path(result.saved_model_file), result


def run_study(study: str, setup, results_dir: Path, *extra: str) -> list[dict[str, str]]:
    _, overrides, _, _ = setup
    argv = [f"--study={study}", f"--dataset={TINY_DATASET}", f"--results_dir={results_dir}", *extra,
            *(f"--{key}={value}" for key, value in overrides.items())]
    assert ablations.main(argv) == 0
    for ext in ("md", "csv", "png"):
        assert (results_dir / f"ablation_{study}_{TINY_DATASET}.{ext}").is_file()
    return ablations.read_rows(ablations.rows_path(results_dir, study, TINY_DATASET))


def metrics(row: dict[str, str]) -> dict[str, float]:
    return {metric: float(row[metric]) for metric in ablations.METRICS}


def checkpoint_config(row: dict[str, str]):
    return torch.load(row["checkpoint"], map_location="cpu", weights_only=False)["config"]


# ----- trained studies --------------------------------------------------------------------------------------------

def test_trained_studies_train_every_variant_with_its_overrides(setup, tmp_path):
    rows = {study: run_study(study, setup, tmp_path, "--seeds=1", f"--first_seed={SEED}")
            for study in ("tokenizer", "losses", "attention", "alpha")}
    for study, study_rows in rows.items():
        assert [r["label"] for r in study_rows] == [v.name for v in STUDIES[study].variants]
        assert all(r["status"] == "ok" and r["seed"] == str(SEED) for r in study_rows), study_rows
        for row, variant in zip(study_rows, STUDIES[study].variants):
            config = checkpoint_config(row)
            assert all(config[key] == value for key, value in variant.overrides.items()), (study, variant)
        assert "| variant | overrides | seeds |" in (tmp_path / f"ablation_{study}_{TINY_DATASET}.md").read_text()

    # The same setting and seed in four studies (his_mask_weight 3.5 is the YAML default) and the fixture's run:
    # one experiment, so one result.
    by_label = {(study, r["label"]): r for study, study_rows in rows.items() for r in study_rows}
    same = [by_label["tokenizer", "mh_vqvae"], by_label["losses", "full"], by_label["attention", "bidirectional"],
            by_label["alpha", "alpha=3.5"]]
    expected = {metric: float(setup[3].test_result[metric]) for metric in ablations.METRICS}
    assert all(metrics(row) == pytest.approx(expected) for row in same)
    # ... and one training: the later studies reuse the first study's run of that configuration (alpha=0 is the
    # losses study's run without user-history masking).
    assert len({row["checkpoint"] for row in same}) == 1
    assert [row["note"] for row in same] == [""] + ["the run of tokenizer/mh_vqvae: the same configuration"] * 3
    assert by_label["alpha", "alpha=0"]["note"] == ("the run of losses/without user-history masking: the same "
                                                    "configuration")
    assert by_label["alpha", "alpha=0"]["checkpoint"] == by_label["losses", "without user-history masking"]["checkpoint"]
    assert by_label["alpha", "alpha=1"]["note"] == ""

    # A rerun with the same settings and one more seed runs that seed only, and the report averages both.
    more = run_study("losses", setup, tmp_path, "--seeds=2", f"--first_seed={SEED}")
    assert more[:len(rows["losses"])] == rows["losses"]
    assert [(r["label"], r["seed"]) for r in more[len(rows["losses"]):]] == [
        (v.name, str(SEED + 1)) for v in STUDIES["losses"].variants]
    report = (tmp_path / f"ablation_losses_{TINY_DATASET}.md").read_text()
    full = [metrics(r)["ndcg@10"] for r in more if r["label"] == "full"]
    assert f"{statistics.fmean(full):.4f} ± {statistics.stdev(full):.4f}" in report


# ----- decode studies ---------------------------------------------------------------------------------------------

def test_decode_studies_rebuild_the_checkpoint_per_variant(setup, tmp_path):
    _, _, checkpoint, result = setup
    given = f"--checkpoints={checkpoint}"
    decoding = {r["label"]: r for r in run_study("decoding", setup, tmp_path, given)}
    order = {r["label"]: r for r in run_study("order", setup, tmp_path, given)}
    steps = {r["label"]: r for r in run_study("steps", setup, tmp_path, given)}

    # Unchanged settings reproduce the training run's test result exactly.
    expected = {metric: float(result.test_result[metric]) for metric in ablations.METRICS}
    assert metrics(decoding["beam"]) == pytest.approx(expected)
    assert metrics(order["adaptive"]) == pytest.approx(expected)
    assert decoding["greedy"]["status"] == "ok"
    for name in ("marginal", "hybrid", "rescore", "scorer", "scorer_hybrid", "fused"):  # present or not, no crash
        row = decoding[name]
        assert row["status"] == "ok" or (row["status"] == "skipped" and row["note"]), row
    assert all(row["status"] == "ok" for row in order.values())

    # M = 2: T = 3 and 4 are refused by the model; rebuilding from the config agrees with tradeoff.py's settings
    # made in place on the loaded model.
    for variant in STUDIES["steps"].variants:
        row = steps[variant.name]
        if variant.overrides["gen_steps"] > 2:
            assert row["status"] == "skipped" and "gen_steps must be in 1..sid_length=2" in row["note"]
        else:
            assert row["status"] == "ok" and int(row["users"]) == 40  # the tiny dataset's users
            assert float(row["decode_ms_per_user"]) == pytest.approx(1000 * float(row["decode_seconds"]) / 40)
    loaded = tradeoff.load_checkpoint(checkpoint, device="cpu")
    for gen_steps, num_beams in ((1, 1), (2, 10)):
        point = tradeoff.evaluate_point(loaded, gen_steps, num_beams)
        row = steps[f"gen_steps={gen_steps} num_beams={num_beams}"]
        assert metrics(row) == pytest.approx({m: point.metrics[m] for m in ablations.METRICS})
    report = (tmp_path / f"ablation_steps_{TINY_DATASET}.md").read_text()
    assert "(skipped: rejected by the model: gen_steps must be in" in report


def test_a_decode_study_trains_its_checkpoint_once_per_seed(setup, tmp_path):
    rows = run_study("order", setup, tmp_path, "--seeds=1", f"--first_seed={SEED}")
    assert len({r["checkpoint"] for r in rows}) == 1 and Path(rows[0]["checkpoint"]).is_file()
    assert metrics(rows[0]) == pytest.approx({m: float(setup[3].test_result[m]) for m in ablations.METRICS})
    assert run_study("order", setup, tmp_path, "--seeds=1", f"--first_seed={SEED}") == rows  # nothing left to run


def test_variants_run_only_the_named_ones_and_the_report_keeps_the_rest(setup, tmp_path):
    given = f"--checkpoints={setup[2]}"
    rows = run_study("order", setup, tmp_path, given, "--variants=left2right,random")
    assert sorted(r["label"] for r in rows) == ["left2right", "random"]
    report = (tmp_path / f"ablation_order_{TINY_DATASET}.md").read_text()
    assert "adaptive" in report  # the unmeasured reference stays a row of the table
    rows = run_study("order", setup, tmp_path, given, "--variants=adaptive")
    assert sorted(r["label"] for r in rows) == ["adaptive", "left2right", "random"]
    with pytest.raises(ValueError, match="has no variant sideways"):
        run_study("order", setup, tmp_path, given, "--variants=sideways")


def test_another_checkpoint_of_a_decoded_seed_needs_a_label_and_gets_its_own_table(setup, tmp_path):
    first = setup[2]
    other = tmp_path / "other" / "retrained.pth"  # another model of the same seed and settings
    other.parent.mkdir()
    shutil.copy(first, other)
    run_study("order", setup, tmp_path, f"--checkpoints={first}", "--variants=adaptive")
    with pytest.raises(ValueError, match="--checkpoints_label"):
        run_study("order", setup, tmp_path, f"--checkpoints={other}", "--variants=adaptive")
    rows = run_study("order", setup, tmp_path, f"--checkpoints={other}", "--variants=adaptive",
                     "--checkpoints_label=retrained")
    assert [row["checkpoint"] for row in rows] == [str(first), str(other)]
    assert json.loads(rows[1]["settings"])["checkpoints_label"] == "retrained"
    report = (tmp_path / f"ablation_order_{TINY_DATASET}.md").read_text()
    assert report.count("## Earlier settings:") == 1
    assert f"checkpoints `{first}`;" in report.split("## Earlier settings:")[1]  # the earlier table's own line
    assert f"- checkpoints: `{other}`" in report  # the notes of the latest table


def test_checkpoints_are_refused_for_a_trained_study(setup, tmp_path):
    with pytest.raises(ValueError, match="--checkpoints is for decode studies"):
        run_study("losses", setup, tmp_path, f"--checkpoints={setup[2]}")


def test_missing_checkpoints_are_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ablations.main(["--study=decoding", f"--dataset={TINY_DATASET}", f"--results_dir={tmp_path}",
                        f"--checkpoints={tmp_path / 'gone.pth'}"])
    assert f"--checkpoints: no such file: {tmp_path / 'gone.pth'}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ----- the report on hand-made rows ---------------------------------------------------------------------------

def hand_row(label: str, seed: int, ndcg: float, status: str = "ok", note: str = "") -> dict[str, str]:
    row = {key: "" for key in ablations.ROW_COLUMNS}
    row.update({"label": label, "seed": str(seed), "status": status, "note": note, "settings": "{}"})
    if status == "ok":
        row.update({metric: str(ndcg) for metric in ablations.METRICS})
    return row


def test_summary_agreement_and_noise_on_hand_made_rows():
    study = ablations.Study("s", "Fig. 0", "trained", "a beats b and c", (
        ablations.Variant("a", {}, reference=True), ablations.Variant("b", {"k": 1}, below=("a",)),
        ablations.Variant("c", {"k": 2}, below=("a",)), ablations.Variant("d", {"k": 3}, below=("a", "b")),
        ablations.Variant("e", {"scoring": "x"})))
    rows = [hand_row("a", 1, 0.30), hand_row("a", 2, 0.14), hand_row("a", 1, 0.16),  # the rerun of seed 1 counts
            hand_row("b", 1, 0.10), hand_row("b", 2, 0.12), hand_row("c", 1, 0.155), hand_row("c", 2, 0.165),
            hand_row("d", 1, 0.40), hand_row("e", 1, 0, "skipped", "this code has no key scoring")]
    summaries = {s.variant.name: s for s in ablations.summarise(study, rows)}
    assert summaries["a"].mean["ndcg@10"] == pytest.approx(0.15)
    assert summaries["a"].std["ndcg@10"] == pytest.approx(statistics.stdev([0.16, 0.14]))
    assert summaries["d"].std["ndcg@10"] is None and summaries["e"].seeds == []
    verdicts = {name: ablations.agreement(s, summaries) for name, s in summaries.items()}
    assert verdicts == {"a": "–", "b": "yes", "c": "no (within 1 std)", "d": "no", "e": "–"}
    table, checked = ablations.summary_table(list(summaries.values()))
    assert "| e | `{\"scoring\": \"x\"}` | – (skipped: this code has no key scoring) |" in table
    assert ablations.agreement_sentence(study, checked).startswith("1 of 3 rows go the paper's direction")


def test_where_runs_write_is_not_part_of_their_settings():
    # Two GPUs' queues give every run a checkpoint folder (and may give a cache) of its own; they are still one
    # experiment, so that one study reuses another's run of the same configuration.
    base = {"epochs": 30, "data_path": "/data"}
    one = ablations.settings_text({**base, "checkpoint_dir": "/w/runs/q0-1", "sid_cache_dir": "/w/c0"}, ["a.yaml"])
    other = ablations.settings_text({**base, "checkpoint_dir": "/w/runs/q1-3"}, ["a.yaml"])
    assert one == other == ablations.settings_text(base, ["a.yaml"])
    assert ablations.settings_text({**base, "epochs": 60}, ["a.yaml"]) != one
    assert ablations.settings_text(base, ["b.yaml"]) != one


def test_rows_of_earlier_settings_keep_a_table_of_their_own(tmp_path):
    study = STUDIES["order"]
    old = [dict(hand_row("adaptive", 1, 0.0111), settings='{"old": 1}', checkpoint="old.pth"),
           dict(hand_row("random", 1, 0.0222), settings='{"old": 1}', checkpoint="old.pth")]
    new = [hand_row("adaptive", 1, 0.0333)]
    for row in old + new:
        ablations.append_row(ablations.rows_path(tmp_path, "order", "D"), row)
    report = ablations.write_report(study, "D", tmp_path, plot=False).read_text()
    latest, earlier = report.split("## Earlier settings: `{\"old\": 1}`")
    assert "0.0333" in latest and "0.0111" not in latest and "0.0222" not in latest
    assert "0.0111" in earlier and "0.0222" in earlier and "`old.pth`" in earlier


def test_grid_rows_sit_below_the_next_larger_step_count():
    variants = {v.name: v for v in STUDIES["steps"].variants}
    assert len(variants) == 16
    assert variants["gen_steps=1 num_beams=10"].below == ("gen_steps=2 num_beams=10",)
    assert variants["gen_steps=3 num_beams=50"].below == ("gen_steps=4 num_beams=50",)
    assert variants["gen_steps=4 num_beams=1"].below == ()
    assert variants["gen_steps=2 num_beams=20"].overrides == {"gen_steps": 2, "num_beams": 20}


def test_every_study_file_row_names_real_variants(tmp_path):
    assert set(STUDIES) == {"tokenizer", "losses", "attention", "alpha", "decoding", "order", "steps"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("x: {source: T, kind: trained, claim: c, variants: [{name: a, paper: {below: [zz]}}]}\n")
    with pytest.raises(ValueError, match="zz"):
        ablations.load_studies(bad)
