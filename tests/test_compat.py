"""Each compat workaround: the original breaks on this stack, the patched path works."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from recbole.config import Config

from recbole_llada import compat

from conftest import tiny_config_dict


@pytest.mark.skipif(np.__version__.startswith("1."), reason="the numpy-2 breakage needs numpy 2")
def test_recbole_original_compatibility_settings_fails_on_numpy2_and_patch_restores_aliases():
    original = compat.ORIGINALS["Config.compatibility_settings"]
    with pytest.raises(AttributeError, match="float_"):
        original(None)
    Config.compatibility_settings(None)
    assert np.float is np.float64 and np.long is np.int_ and np.unicode is np.str_


def test_config_builds_with_numpy2(tiny_data_path, tmp_path):
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config_dict(tiny_data_path, tmp_path))
    assert config["MAX_ITEM_LIST_LENGTH"] == 5


@pytest.mark.parametrize("visible, gpu_id, expected", [
    ("1", None, "1"),        # the user's choice of GPU survives the Config
    ("2,3", None, "2,3"),
    ("", None, ""),          # no GPU visible stays no GPU
    ("1", "0", "0"),         # an explicit gpu_id keeps RecBole's meaning: physical ids
    (None, None, "0"),       # nothing set: RecBole's default
])
def test_config_keeps_the_visible_gpus_unless_gpu_id_is_given(tiny_data_path, tmp_path, monkeypatch,
                                                              visible, gpu_id, expected):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # restored after the test, whatever Config sets
    if visible is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    overrides = tiny_config_dict(tiny_data_path, tmp_path)
    if gpu_id is not None:
        overrides["gpu_id"] = gpu_id
    config = Config(model="SASRec", dataset="tiny", config_dict=overrides)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == expected and config["gpu_id"] == expected


def test_recbole_alone_moves_a_process_to_gpu_0(tiny_data_path, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    original = compat.ORIGINALS["Config._init_device"]
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config_dict(tiny_data_path, tmp_path))
    config.final_config_dict["gpu_id"] = 0  # what RecBole's defaults give when the user sets none
    del config.final_config_dict["local_rank"]  # as before the first device set-up
    original(config)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def _recbole_style_checkpoint(path, tiny_data_path, tmp_path):
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config_dict(tiny_data_path, tmp_path))
    state = {"config": config, "epoch": 0, "state_dict": {"w": torch.ones(2)}, "other_parameter": None}
    torch.save(state, path, pickle_protocol=4)


def test_default_torch_load_refuses_recbole_checkpoints_but_recbole_trainer_loads_them(tiny_data_path, tmp_path):
    import recbole.trainer.trainer as recbole_trainer

    path = tmp_path / "model.pth"
    _recbole_style_checkpoint(path, tiny_data_path, tmp_path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported"):
        torch.load(path)
    checkpoint = recbole_trainer.torch.load(path, map_location="cpu")
    assert torch.equal(checkpoint["state_dict"]["w"], torch.ones(2))
    assert recbole_trainer.torch.nn is torch.nn


def test_load_data_and_model_reloads_a_trained_checkpoint(tiny_data_path, tmp_path):
    pytest.importorskip("ray")  # recbole.quick_start imports ray at import time
    from recbole.quick_start import load_data_and_model, run_recbole

    config = tiny_config_dict(tiny_data_path, tmp_path)
    run_recbole(model="SASRec", dataset="tiny", config_dict=config)
    (checkpoint,) = (tmp_path / "saved").glob("SASRec-*.pth")
    loaded_config, model, _, _, _, test_data = load_data_and_model(str(checkpoint))
    assert loaded_config["model"] == "SASRec" and model.n_items == test_data._dataset.item_num
    with pytest.raises(Exception, match="(?i)weights_only|unsupported"):
        torch.load(checkpoint)


def test_pandas3_is_refused_with_an_explanation():
    with pytest.raises(ImportError, match="pandas < 3"):
        compat.check_pandas("3.0.1")
    compat.check_pandas("2.3.3")


def test_apply_is_idempotent():
    finders_before = len(sys.meta_path)
    compat.apply()
    assert len(sys.meta_path) == finders_before


def test_distributed_evaluate_waits_for_rank0_and_loads_its_checkpoint(monkeypatch):
    import recbole.trainer.trainer as recbole_trainer

    calls = []

    def fake_evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        calls.append(("load", self.saved_model_file))

    def fake_broadcast(objects, src):
        calls.append(("broadcast", src))
        objects[0] = "saved/LLaDARec-rank0.pth"

    monkeypatch.setattr(torch.distributed, "barrier", lambda: calls.append(("barrier",)))
    monkeypatch.setattr(torch.distributed, "broadcast_object_list", fake_broadcast)
    evaluate = compat._wait_for_rank0_checkpoint(fake_evaluate)
    rank1 = type("Rank1Trainer", (), {"config": {"single_spec": False}, "saved_model_file": "saved/LLaDARec-rank1.pth"})()
    evaluate(rank1, eval_data=None)
    assert calls == [("barrier",), ("broadcast", 0), ("load", "saved/LLaDARec-rank0.pth")]

    calls.clear()
    single = type("Trainer", (), {"config": {"single_spec": True}, "saved_model_file": "saved/a.pth"})()
    evaluate(single, eval_data=None)
    assert calls == [("load", "saved/a.pth")]
    assert getattr(recbole_trainer.Trainer.evaluate, "_waits_for_rank0", False)


@pytest.mark.parametrize("with_plugin", [False, True])
def test_importing_recbole_models_leaves_anomaly_detection_off_only_with_the_plugin(with_plugin):
    import subprocess

    code = "; ".join([
        "import torch",
        *(["import recbole_llada"] if with_plugin else []),
        "import recbole.model.sequential_recommender",  # SINE's module switches anomaly detection on
        "print(torch.is_anomaly_enabled())",
    ])
    printed = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                             check=True).stdout.split()[-1]
    assert printed == ("False" if with_plugin else "True")
