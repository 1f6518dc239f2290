"""Ray Tune search: space parsing, trial paths, CLI wiring, and one tiny real search on 2 CPUs.

The real search is a 3-trial grid run one trial at a time, so ASHA's decision is deterministic: a learning rate
of 0.01 learns, a learning rate of 0 stays at its random start and falls below the first trial at the first rung,
and a negative learning rate is rejected by the optimizer (an invalid config, reported as ERROR).
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import recbole
import torch
import yaml

from recbole_llada import resources
from recbole_llada.cli.run import main
from recbole_llada.errors import UserInputError
from recbole_llada.training import quick_start
from recbole_llada.tuning import tune
from recbole_llada.tuning.report import EARLY_STOPPED, ERROR, TERMINATED

from conftest import tiny_config_dict, write_tiny_dataset

ray = pytest.importorskip("ray")

EPOCHS = 3
GOOD_LR, FROZEN_LR, INVALID_LR = 0.01, 0.0, -1.0


def write_space(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_every_sampler_parses_and_samples_inside_its_range(tmp_path):
    space_file = write_space(tmp_path / "space.yaml", "\n".join([
        "learning_rate: {loguniform: [1e-4, 1e-2]}",
        "dropout_prob: {uniform: [0.1, 0.5]}",
        "hidden_size: {quniform: [8, 64, 8]}",
        "n_layers: {randint: [1, 4]}",
        "n_heads: {choice: [1, 2]}",
        "weight_decay: {grid_search: [0.0, 0.1]}",
    ]))
    space = tune.load_space(space_file)
    assert space["learning_rate"].args == (1e-4, 1e-2)  # "1e-4" is a float, as in RecBole's own YAML
    ray_space = tune.to_ray_space(space)
    assert ray_space["weight_decay"] == {"grid_search": [0.0, 0.1]}
    for _ in range(50):
        assert 1e-4 <= ray_space["learning_rate"].sample() <= 1e-2
        assert 0.1 <= ray_space["dropout_prob"].sample() <= 0.5
        assert ray_space["hidden_size"].sample() in {8.0 * k for k in range(1, 9)}
        assert ray_space["n_layers"].sample() in {1, 2, 3}
        assert ray_space["n_heads"].sample() in {1, 2}


@pytest.mark.parametrize("entry", [
    "learning_rate: 0.001",
    "learning_rate: {normal: [0.0, 1.0]}",
    "learning_rate: {uniform: [0.1]}",
    "learning_rate: {uniform: [0.5, 0.1]}",
    "learning_rate: {loguniform: [0.0, 0.1]}",
    "n_layers: {choice: []}",
    "n_layers: {choice: [1], uniform: [0, 1]}",
])
def test_malformed_space_entries_are_user_errors(tmp_path, entry):
    with pytest.raises(UserInputError, match="learning_rate|n_layers"):
        tune.load_space(write_space(tmp_path / "space.yaml", entry + "\n"))


def test_a_misspelt_key_in_the_space_stops_the_search_before_it_starts(tmp_path):
    space = write_space(tmp_path / "space.yaml", "learning_rat: {loguniform: [1.0e-4, 1.0e-2]}\n")
    with pytest.raises(UserInputError, match="Did you mean 'learning_rate'"):
        tune.search("SASRec", "ml-100k", space, tune_dir=tmp_path / "tune")


def test_unknown_space_name_lists_the_shipped_ones():
    with pytest.raises(UserInputError, match="SASRec"):
        tune.resolve_space_file("NoSuchSpace")


@pytest.mark.parametrize("model", ["LLaDARec", "SASRec", "GRU4Rec", "BERT4Rec", "FMLPRec"])
def test_shipped_spaces_search_keys_the_model_reads(model):
    space = tune.load_space(model)  # a bare name resolves to properties/tune/<model>.yaml
    recbole_dir = Path(recbole.__file__).parent / "properties"
    model_yaml = resources.model_config(model)
    if not model_yaml.is_file():
        model_yaml = recbole_dir / "model" / f"{model}.yaml"
    known = {**yaml.safe_load((recbole_dir / "overall.yaml").read_text()),
             **yaml.safe_load(model_yaml.read_text())}
    assert set(space) <= set(known)


def test_trials_get_absolute_paths_that_survive_a_change_of_directory(tmp_path, monkeypatch):
    write_tiny_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    overrides = tiny_config_dict(Path("data"), Path("."))  # relative, as a user would type them
    config = quick_start.build_config("SASRec", "tiny", overrides=overrides)
    resolved = tune.resolved_path_overrides(config)
    assert resolved["data_path"] == str(tmp_path / "data")
    assert resolved["checkpoint_dir"] == str(tmp_path / "saved")
    elsewhere = tmp_path / "trial_working_dir"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    trial_config = quick_start.build_config("SASRec", "tiny", overrides={**overrides, **resolved})
    assert Path(trial_config["data_path"]) == tmp_path / "data" / "tiny"


def test_cpu_trials_tell_recbole_to_stay_off_the_gpu(tiny_data_path, tmp_path):
    device = tune.device_overrides(0)
    assert device["use_gpu"] is False
    config = quick_start.build_config("SASRec", "tiny", overrides={**tiny_config_dict(tiny_data_path, tmp_path),
                                                                   **device})
    assert config["device"] == torch.device("cpu")


def test_cli_passes_the_tuning_flags_and_fixed_overrides_to_search(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_search(model, dataset, space, config_files, overrides, options, tune_dir):
        calls.append(SimpleNamespace(model=model, dataset=dataset, space=space, overrides=overrides,
                                     options=options, tune_dir=tune_dir))
        return SimpleNamespace(best=object(), best_config_file=tmp_path / "best_config.yaml", test_result={},
                               tune_dir=tmp_path)

    monkeypatch.setattr(tune, "search", fake_search)
    code = main(["--model=SASRec", "--dataset=ml-100k", "--tune=SASRec", "--num_samples=4", "--epochs=3",
                 "--gpus_per_trial=0.5", "--cpus_per_trial=2", "--max_concurrent=2", "--ray_address=auto",
                 "--grace_period=2", f"--tune_dir={tmp_path}"])
    assert code == 0
    (call,) = calls
    assert (call.model, call.dataset, call.space, call.tune_dir) == ("SASRec", "ml-100k", "SASRec", str(tmp_path))
    assert call.overrides == {"epochs": 3}
    assert (call.options.num_samples, call.options.gpus_per_trial, call.options.cpus_per_trial) == (4, 0.5, 2.0)
    assert (call.options.max_concurrent, call.options.ray_address, call.options.grace_period) == (2, "auto", 2)
    assert main(["--model=SASRec,GRU4Rec", "--tune=SASRec"]) == 2
    assert "one model" in capsys.readouterr().err


def test_importing_the_package_and_cli_does_not_import_ray():
    code = ("import sys, recbole_llada, recbole_llada.cli.run, recbole_llada.tuning.tune, "
            "recbole_llada.training.quick_start; sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    write_tiny_dataset(root / "data")
    space_file = write_space(root / "space.yaml",
                             f"learning_rate: {{grid_search: [{GOOD_LR}, {FROZEN_LR}, {INVALID_LR}]}}\n")
    overrides = tiny_config_dict(root / "data", root, epochs=EPOCHS)
    options = tune.SearchOptions(num_samples=1, max_concurrent=1, cpus_per_trial=1, gpus_per_trial=0,
                                 grace_period=1, reduction_factor=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        ray.init(num_cpus=2, include_dashboard=False)
        try:
            summary = tune.search("SASRec", "tiny", space_file, overrides=overrides, options=options,
                                  tune_dir=root / "out")
        finally:
            ray.shutdown()
    assert not ray.is_initialized()
    return summary


def trial_with_lr(summary, learning_rate):
    (trial,) = [t for t in summary.trials if t.params["learning_rate"] == learning_rate]
    return trial


@pytest.mark.slow  # the shared tiny_search fixture runs a whole search
def test_table_has_one_row_per_trial_with_finite_valid_scores(tiny_search):
    with open(tiny_search.tune_dir / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(tiny_search.trials) == 3
    assert rows[0]["learning_rate"] == str(GOOD_LR)  # best first
    for row in rows:
        if row["status"] != ERROR:
            assert math.isfinite(float(row["best valid NDCG@10"])) and int(row["epochs"]) >= 1
    report = (tiny_search.tune_dir / "tune.md").read_text()
    assert "commit" in report and "hardware" in report and "## Best trial" in report
    assert (tiny_search.tune_dir / "valid_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # the shared tiny_search fixture runs a whole search
def test_asha_stops_the_trial_that_cannot_learn(tiny_search):
    good, frozen = trial_with_lr(tiny_search, GOOD_LR), trial_with_lr(tiny_search, FROZEN_LR)
    assert good.status == TERMINATED and good.epochs_run == EPOCHS
    assert frozen.status == EARLY_STOPPED and frozen.epochs_run == 1
    assert frozen.best_valid(True) < good.valid_curve[0][1]


@pytest.mark.slow  # the shared tiny_search fixture runs a whole search
def test_invalid_config_is_an_error_row_and_the_search_completes(tiny_search):
    invalid = trial_with_lr(tiny_search, INVALID_LR)
    assert invalid.status == ERROR and invalid.epochs_run == 0
    assert "learning_rate" in invalid.error and "-1.0" in invalid.error  # the config check names key and value
    assert tiny_search.best is trial_with_lr(tiny_search, GOOD_LR)
    assert tiny_search.test_result and all(math.isfinite(v) for v in tiny_search.test_result.values())


@pytest.mark.slow  # the shared tiny_search fixture runs a whole search
def test_best_config_yaml_reruns_to_the_same_scores(tiny_search):
    best_config = yaml.safe_load(tiny_search.best_config_file.read_text())
    assert best_config["learning_rate"] == GOOD_LR and Path(best_config["data_path"]).is_absolute()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trials: same reduction order, same floats
    try:
        rerun = quick_start.run("SASRec", "tiny", config_files=[str(tiny_search.best_config_file)])
    finally:
        torch.set_num_threads(threads)
    assert rerun.best_valid_score == pytest.approx(tiny_search.best.best_valid(True), abs=1e-4)
    assert rerun.test_result == pytest.approx(tiny_search.test_result, abs=1e-4)
