"""benchmarks/catalog_scoring.py: the bar (best baseline +5%, gain beyond the seed spread, enough seeds) on hand-made
result files, and the files it writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ sits beside the package

from benchmarks import ablations, catalog_scoring, quality  # noqa: E402

DATASET = "toy"


def add_run(results_dir: Path, label: str, model: str, seed: int, recall: float, ndcg: float) -> None:
    record = {key: "" for key in quality.RUN_COLUMNS}
    record.update({"label": label, "model": model, "dataset": DATASET, "seed": seed, "recall@10": recall,
                   "ndcg@10": ndcg, "train_seconds": 1.0, "test_seconds": 1.0, "overrides": "{}",
                   "commit": "abc", "hardware": "1x NVIDIA H200"})
    quality.append_run(quality.runs_path(results_dir, DATASET), record)


def add_decoded(results_dir: Path, mode: str, seed: int, recall: float, ndcg: float, hardware: str,
                label: str = "backbone + adapter") -> None:
    ablations.append_row(ablations.rows_path(results_dir, "decoding", DATASET), {
        "label": mode, "seed": seed, "status": "ok", "recall@10": recall, "ndcg@10": ndcg, "users": 100,
        "decode_seconds": 0.1, "decode_ms_per_user": 1.0, "settings": json.dumps({"checkpoints_label": label}),
        "hardware": hardware})


@pytest.fixture
def results_dir(tmp_path):
    """Baselines: SASRec best on Recall@10 (0.100 ± 0.001), FMLPRec best on NDCG@10 (0.050 ± 0.001)."""
    for seed, wobble in zip((1, 2, 3), (-0.001, 0.0, 0.001)):
        add_run(tmp_path, "SASRec", "SASRec", seed, 0.100 + wobble, 0.040 + wobble)
        add_run(tmp_path, "FMLPRec", "FMLPRec", seed, 0.090 + wobble, 0.050 + wobble)
    return tmp_path


def load(results_dir: Path, min_seeds: int = 3, hardware: str = "H200"):
    ours = catalog_scoring.run_results(DATASET, results_dir)
    bar = catalog_scoring.best_baselines(ours, min_seeds)
    decoded = catalog_scoring.decoding_results(DATASET, results_dir, min_seeds, hardware)
    return {r.name: r for r in ours + decoded}, bar


def test_the_target_is_the_best_baseline_of_each_metric_plus_five_percent(results_dir):
    _, bar = load(results_dir)
    assert bar.best["recall@10"].name == "SASRec" and bar.best["ndcg@10"].name == "FMLPRec"
    assert bar.target("recall@10") == pytest.approx(0.105)
    assert bar.target("ndcg@10") == pytest.approx(0.0525)


def test_a_row_clears_only_above_both_targets_beyond_the_spread_with_enough_seeds(results_dir):
    for seed in (1, 2, 3):
        add_run(results_dir, "clears", "LLaDARec", seed, 0.110 + 0.001 * seed, 0.055 + 0.001 * seed)
        add_run(results_dir, "one metric short", "LLaDARec", seed, 0.110, 0.052)  # NDCG@10 below 0.0525
        # Above both targets on the mean, but the seeds spread wider than the gain over the best baseline.
        add_run(results_dir, "noisy", "LLaDARec", seed, (0.080, 0.110, 0.140)[seed - 1],
                (0.040, 0.055, 0.070)[seed - 1])
    add_run(results_dir, "one seed", "LLaDARec", 1, 0.200, 0.100)
    rows, bar = load(results_dir)
    assert bar.cleared(rows["clears"])
    assert not bar.cleared(rows["one metric short"])
    assert rows["noisy"].mean["recall@10"] > bar.target("recall@10") and not bar.cleared(rows["noisy"])
    assert not bar.cleared(rows["one seed"])
    assert catalog_scoring.best_baselines(list(rows.values()), min_seeds=1).cleared(rows["one seed"])
    assert bar.versus_target(rows["one metric short"], "ndcg@10") == pytest.approx(0.052 / 0.0525 - 1)


def test_decoding_studies_need_the_hardware_and_the_seeds(results_dir):
    for seed in (1, 2, 3):
        add_decoded(results_dir, "fused", seed, 0.12, 0.06, "1x NVIDIA H200")
        add_decoded(results_dir, "beam", seed, 0.10, 0.05, "CPU: x86_64, 2 threads", label="cpu study")
    add_decoded(results_dir, "marginal", 1, 0.12, 0.06, "1x NVIDIA H200")  # one seed only
    rows, bar = load(results_dir)
    assert rows["fused"].source == "backbone + adapter" and rows["fused"].seeds == 3
    assert rows["fused"].decode_ms == pytest.approx(1.0) and bar.cleared(rows["fused"])
    assert "beam" not in rows and "marginal" not in rows
    rows, _ = load(results_dir, hardware="CPU")
    assert rows["beam"].source == "cpu study" and "fused" not in rows


def test_main_writes_the_table_the_csv_and_the_plot(results_dir):
    for seed in (1, 2, 3):
        add_run(results_dir, "LLaDARec (official init)", "LLaDARec", seed, 0.095, 0.047)
        add_decoded(results_dir, "fused", seed, 0.12 + 0.001 * seed, 0.06, "1x NVIDIA H200")
    assert catalog_scoring.main([f"--datasets={DATASET}", f"--results_dir={results_dir}"]) == 0
    md = (results_dir / "catalog_scoring.md").read_text()
    assert "| toy | `toy.md` | LLaDARec (official init) | 3 |" in md and "-10%" in md  # 0.095 / 0.105 - 1
    assert "| toy | `ablation_decoding_toy.md`: backbone + adapter | fused | 3 |" in md
    assert "cleared on: toy of toy" in md
    csv_rows = quality.read_runs(results_dir / "catalog_scoring.csv")
    assert [row["name"] for row in csv_rows] == ["LLaDARec (official init)", "fused"]
    assert [row["cleared"] for row in csv_rows] == ["False", "True"]
    pytest.importorskip("matplotlib")
    assert (results_dir / "catalog_scoring.png").stat().st_size > 0


def test_no_baselines_is_a_clear_stop(tmp_path):
    add_run(tmp_path, "LLaDARec", "LLaDARec", 1, 0.1, 0.05)
    with pytest.raises(SystemExit, match="no baseline runs"):
        catalog_scoring.best_baselines(catalog_scoring.run_results(DATASET, tmp_path), 3)
