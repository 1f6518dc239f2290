"""valid_curves.py (curves read from RecBole logs) and cheap_validation.py (cheap decodings beside the selection)."""

from __future__ import annotations

import csv

import pytest

from benchmarks import cheap_validation, valid_curves
from recbole_llada.training import quick_start

from conftest import TINY_DATASET
from test_resume import llada_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOG = """30 Nov 08:40    INFO  epoch 1 evaluating [time: 6.46s, valid_score: 0.012700]
30 Nov 08:40    INFO  epoch 1 valid marginal: 0.010000
30 Nov 08:41    INFO  epoch 3 evaluating [time: 6.10s, valid_score: 0.020000]
30 Nov 08:41    INFO  epoch 3 valid marginal: 0.015000
30 Nov 08:42    INFO  epoch 5 evaluating [time: 6.20s, valid_score: 0.020000]
30 Nov 08:42    INFO  epoch 5 valid marginal: 0.014000
"""


def test_curves_are_read_from_the_log_and_the_first_best_epoch_wins():
    curves = valid_curves.read_curves(LOG)
    assert curves == {valid_curves.SELECTION: {1: 0.0127, 3: 0.02, 5: 0.02}, "marginal": {1: 0.01, 3: 0.015, 5: 0.014}}
    assert valid_curves.best(curves[valid_curves.SELECTION]) == (3, 0.02)  # RecBole keeps the first best
    assert valid_curves.best(curves["marginal"]) == (3, 0.015)


def test_only_the_last_training_in_a_log_makes_the_curves():
    # A run on collaborative SIDs first trains the SASRec that provides them, in the same log.
    sasrec = """30 Nov 08:30    INFO  epoch 0 training [time: 8.40s, train loss: 9674.9690]
30 Nov 08:30    INFO  epoch 0 evaluating [time: 0.35s, valid_score: 0.023600]
30 Nov 08:30    INFO  epoch 1 training [time: 8.40s, train loss: 9074.9690]
30 Nov 08:30    INFO  epoch 1 evaluating [time: 0.35s, valid_score: 0.030000]
"""
    model = "30 Nov 08:39    INFO  epoch 0 training [time: 9.80s, train loss: 2594.6973]\n" + LOG
    assert valid_curves.read_curves(sasrec + model) == valid_curves.read_curves(LOG)


def test_curve_files_hold_every_point_and_the_best_epochs(tmp_path):
    path = valid_curves.write_curves({"run": valid_curves.read_curves(LOG)}, "t", tmp_path)
    with open(tmp_path / "valid_curves_t.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["curve"] for r in rows} == {valid_curves.SELECTION, "marginal"}
    assert "| run | marginal | 3 | 5 | 3 | 0.0150 |" in path.read_text()


def test_cheap_curves_are_the_final_model_scored_with_each_decoding(tiny_data_path, tmp_path):
    overrides = llada_overrides(tiny_data_path, tmp_path, epochs=2, eval_step=1)
    config = quick_start.build_config("LLaDARec", TINY_DATASET, overrides=overrides)
    experiment = quick_start.prepare(config)
    trainer = experiment.trainer
    curves = cheap_validation.add_comparison_curves(trainer, experiment.valid_data, ["marginal", "greedy"])
    trainer.fit(experiment.train_data, experiment.valid_data, saved=False)
    assert all(sorted(curve) == [0, 1] for curve in curves.values())
    # The last point of each curve is the trained model (saved=False keeps the last epoch's weights) decoded that way.
    with trainer.model.decoding(scoring="marginal"):
        marginal = trainer.evaluate(experiment.valid_data, load_best_model=False)["ndcg@10"]
    with trainer.model.decoding(num_beams=1):
        greedy = trainer.evaluate(experiment.valid_data, load_best_model=False)["ndcg@10"]
    assert curves["marginal"][1] == pytest.approx(marginal) and curves["greedy"][1] == pytest.approx(greedy)
    assert trainer.best_valid_score == max(curves[valid_curves.SELECTION].values())


def test_cheap_validation_needs_one_validation_per_epoch(tiny_data_path, tmp_path):
    config = quick_start.build_config("LLaDARec", TINY_DATASET,
                                      overrides=llada_overrides(tiny_data_path, tmp_path, eval_step=2))
    experiment = quick_start.prepare(config)
    with pytest.raises(ValueError, match="eval_step"):
        cheap_validation.add_comparison_curves(experiment.trainer, experiment.valid_data, ["marginal"])
