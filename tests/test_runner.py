"""The runner: config layering, overrides, user errors, and a side-by-side comparison on tiny data."""

from __future__ import annotations

import csv
import math
import subprocess

import pytest

from recbole_llada.cli.run import main
from recbole_llada.errors import UserInputError
from recbole_llada.training import quick_start
from recbole_llada.training.results import git_commit

from conftest import tiny_config_dict


def test_overrides_follow_recbole_value_rules():
    parsed = quick_start.parse_overrides(["--epochs=3", "--learning_rate=1e-3", "--topk=[5,10]",
                                          "--use_gpu=false", "--gpu_id=0,1"])
    assert parsed == {"epochs": 3, "learning_rate": 1e-3, "topk": [5, 10], "use_gpu": False, "gpu_id": (0, 1)}
    with pytest.raises(UserInputError):
        quick_start.parse_overrides(["epochs"])


def test_shared_protocol_is_the_default_and_overrides_win(tiny_data_path, tmp_path):
    config = quick_start.build_config("SASRec", "tiny", overrides={"data_path": str(tiny_data_path),
                                                                   "MAX_ITEM_LIST_LENGTH": 7})
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO"
    assert config["valid_metric"] == "NDCG@10"
    assert config["topk"] == [1, 5, 10]
    assert config["loss_type"] == "CE"
    assert config["MAX_ITEM_LIST_LENGTH"] == 7


def test_plugin_model_yaml_overrides_the_baselines_training_defaults(tiny_data_path):
    overrides = {"data_path": str(tiny_data_path)}
    baseline = quick_start.build_config("SASRec", "tiny", overrides=overrides)
    assert (baseline["learning_rate"], baseline["train_batch_size"]) == (0.001, 256)
    llada = quick_start.build_config("LLaDARec", "tiny", overrides=overrides)
    assert (llada["learning_rate"], llada["train_batch_size"], llada["weight_decay"]) == (0.003, 1024, 0.05)
    assert llada["eval_args"]["split"] == {"LS": "valid_and_test"}


def test_unknown_model_is_one_paragraph_without_traceback(capsys):
    assert main(["--model=SASRecc", "--dataset=ml-100k"]) == 2
    err = capsys.readouterr().err
    assert "Unknown model 'SASRecc'" in err and "FMLPRec" in err and "Traceback" not in err


def test_missing_dataset_explains_where_data_goes(tmp_path, capsys):
    assert main(["--model=SASRec", "--dataset=NoSuchData", f"--data_path={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "NoSuchData" in err and "--data_path" in err and "Traceback" not in err


def test_compare_writes_one_table_for_all_models(tiny_data_path, tmp_path):
    overrides = tiny_config_dict(tiny_data_path, tmp_path)
    results, table = quick_start.compare(["GRU4Rec", "SASRec", "FMLPRec"], "tiny", overrides=overrides,
                                         results_dir=tmp_path / "results")
    assert [r.model for r in results] == ["GRU4Rec", "SASRec", "FMLPRec"]
    for result in results:
        assert result.n_parameters > 0 and result.train_seconds > 0
        assert all(math.isfinite(v) for v in result.test_result.values())
    with open(table.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert [row["model"] for row in rows] == ["GRU4Rec", "SASRec", "FMLPRec"]
    assert {"recall@10", "ndcg@10", "params", "train s", "test s", "seed"} <= set(rows[0])
    text = table.read_text()
    assert "commit" in text and "hardware" in text and "command" in text


def test_multi_gpu_needs_gpus_and_one_model(capsys):
    assert main(["--model=SASRec,GRU4Rec", "--nproc=2"]) == 2
    assert "one model" in capsys.readouterr().err
    assert main(["--model=SASRec", "--nproc=2"]) == 2
    assert "needs 2 GPUs" in capsys.readouterr().err


def test_training_extent_names_what_ended_training():
    from types import SimpleNamespace

    def trainer(epochs_run, epochs, budget_stop_epoch=None):
        return SimpleNamespace(train_loss_dict=dict.fromkeys(range(epochs_run), 1.0), epochs=epochs,
                               budget_stop_epoch=budget_stop_epoch)

    assert quick_start.training_extent(trainer(50, 50)) == (50, "epoch cap")
    assert quick_start.training_extent(trainer(47, 50)) == (47, "early stopping")
    # the budget's placeholder epochs (recorded with loss 0) do not count as trained
    assert quick_start.training_extent(trainer(13, 50, budget_stop_epoch=11)) == (11, "time budget")


def test_the_demo_is_its_own_config_file_that_make_demo_names():
    from pathlib import Path

    from recbole_llada import resources

    demo = resources.demo_config("LLaDARec", "ml-100k")
    real = resources.load_yaml(resources.model_dataset_config("LLaDARec", "ml-100k"))
    # The demo must not depend on the real ml-100k settings, which a later file layer would otherwise leak into it.
    assert set(real) <= set(resources.load_yaml(demo))
    makefile = (Path(resources.__file__).resolve().parents[1] / "Makefile").read_text()
    assert f"--config_files={demo.relative_to(demo.parents[2])}" in makefile
    config = quick_start.build_config("LLaDARec", "ml-100k", [str(demo)])
    assert (config["hidden_size"], config["epochs"], config["sid_codebook_size"]) == (32, 6, 64)


def test_the_recorded_commit_is_dirty_for_changed_code_not_for_changed_results(tmp_path, monkeypatch):
    monkeypatch.delenv("RECBOLE_LLADA_COMMIT", raising=False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "table.md").write_text("| a |\n")
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        subprocess.run([*git, *command], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "benchmarks" / "results" / "table.md").write_text("| b |\n")  # a regenerated table
    assert git_commit(tmp_path / "benchmarks") == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "+dirty"
    monkeypatch.setenv("RECBOLE_LLADA_COMMIT", "abc1234")  # a copy without .git (the GPU machines)
    assert git_commit(tmp_path) == "abc1234"
