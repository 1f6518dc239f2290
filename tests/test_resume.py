"""Resuming an interrupted run, checkpoints of failed runs, and the loss parts in the log and TensorBoard."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from recbole.trainer import Trainer

from recbole_llada.cli.run import main
from recbole_llada.errors import UserInputError
from recbole_llada.training import quick_start
from recbole_llada.training.resume import load_checkpoint, resume
from recbole_llada.training.trainer import LLaDARecTrainer

from conftest import TINY_DATASET, tiny_config_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]


def llada_overrides(data_path, tmp_path, **extra) -> dict:
    """Tiny LLaDARec with dropout and random masking (so the random state matters), three epochs."""
    settings = dict(
        epochs=3, stopping_step=5, sid_length=2, sid_codebook_size=8, sid_epochs=20, sid_pca_dim=8,
        sid_hidden_sizes=[16], sid_code_dim=4, sid_check_every=10, n_heads=2, mlp_ratio=2, dropout_prob=0.2,
        gen_steps=2, num_beams=5, valid_num_beams=3, train_batch_size=32, sid_cache_dir=str(tmp_path / "sid_cache"))
    return tiny_config_dict(data_path, tmp_path, **{**settings, **extra})


def train(overrides: dict, stop_at_epoch: int | None = None, resume_file=None) -> LLaDARecTrainer:
    """Train like ``quick_start.run``; ``stop_at_epoch`` interrupts the run (Ctrl-C) when that epoch starts."""
    config = quick_start.build_config("LLaDARec", TINY_DATASET, overrides=overrides)
    quick_start.ensure_dataset_files(config)
    experiment = quick_start.prepare(config)
    trainer = experiment.trainer
    if resume_file is not None:
        resume(trainer, resume_file)
    if stop_at_epoch is not None:
        train_epoch = trainer._train_epoch

        def interrupted(train_data, epoch_idx, **kwargs):
            if epoch_idx == stop_at_epoch:
                raise KeyboardInterrupt
            return train_epoch(train_data, epoch_idx, **kwargs)

        trainer._train_epoch = interrupted
    trainer.fit(experiment.train_data, experiment.valid_data, saved=True)
    trainer.test_result = trainer.evaluate(experiment.test_data, load_best_model=True)
    return trainer


def test_a_resumed_run_ends_exactly_where_the_uninterrupted_one_does(tiny_data_path, tmp_path):
    whole = train(llada_overrides(tiny_data_path, tmp_path, checkpoint_dir=str(tmp_path / "whole")))

    overrides = llada_overrides(tiny_data_path, tmp_path, checkpoint_dir=str(tmp_path / "stopped"))
    with pytest.raises(KeyboardInterrupt):
        train(overrides, stop_at_epoch=2)
    (checkpoint,) = (tmp_path / "stopped").glob("*.pth")
    saved_epoch = load_checkpoint(checkpoint)["epoch"]
    assert saved_epoch < 2  # the resumed run trains at least one epoch itself

    resumed = train(overrides, resume_file=checkpoint)
    assert resumed.start_epoch == saved_epoch + 1
    assert resumed.train_loss_dict == whole.train_loss_dict  # every epoch's loss, to the last bit
    assert resumed.best_valid_score == whole.best_valid_score
    assert resumed.best_valid_result == whole.best_valid_result
    assert resumed.test_result == whole.test_result
    assert resumed.saved_model_file == str(checkpoint)  # the resumed run keeps writing the same checkpoint
    assert sorted(p.name for p in (tmp_path / "stopped").glob("*.pth")) == [checkpoint.name]


def test_resume_refuses_a_checkpoint_of_another_model_or_configuration(tiny_data_path, tmp_path):
    overrides = llada_overrides(tiny_data_path, tmp_path, epochs=1)
    (checkpoint,) = [train(overrides).saved_model_file]
    bigger = llada_overrides(tiny_data_path, tmp_path, epochs=1, hidden_size=16)
    with pytest.raises(UserInputError, match="another configuration"):
        train(bigger, resume_file=checkpoint)
    with pytest.raises(UserInputError, match="does not exist"):
        train(overrides, resume_file=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(UserInputError, match="not a RecBole checkpoint"):
        train(overrides, resume_file=tmp_path / "junk.pth")


def test_cli_resume_continues_the_checkpoint_and_prints_the_test_metrics(tiny_data_path, tmp_path, capsys):
    overrides = llada_overrides(tiny_data_path, tmp_path, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train(overrides, stop_at_epoch=1)
    (checkpoint,) = (tmp_path / "saved").glob("*.pth")
    args = [f"--{key}={value}" for key, value in overrides.items() if key != "load_col"]
    assert main(["--model=LLaDARec", f"--dataset={TINY_DATASET}", f"--resume={checkpoint}", *args]) == 0
    assert "LLaDARec on tiny, test: recall@1" in capsys.readouterr().out
    assert load_checkpoint(checkpoint)["epoch"] >= 0
    assert main(["--model=LLaDARec,SASRec", f"--resume={checkpoint}", *args]) == 2
    assert "--resume continues one run" in capsys.readouterr().err


def test_a_failed_run_deletes_its_checkpoint_an_interrupted_one_keeps_it(tiny_data_path, tmp_path, monkeypatch):
    """The test step (after training wrote its checkpoint) fails, or is interrupted."""
    overrides = tiny_config_dict(tiny_data_path, tmp_path, epochs=2)
    validate_or_test = Trainer.evaluate

    def test_step_raises(error: BaseException):
        def evaluate(self, eval_data, load_best_model=True, **kwargs):
            if load_best_model:
                raise error
            return validate_or_test(self, eval_data, load_best_model=load_best_model, **kwargs)
        return evaluate

    monkeypatch.setattr(Trainer, "evaluate", test_step_raises(RuntimeError("test step failed")))
    with pytest.raises(RuntimeError, match="test step failed"):
        quick_start.run("SASRec", TINY_DATASET, overrides=overrides)
    assert list((tmp_path / "saved").glob("*.pth")) == []

    monkeypatch.setattr(Trainer, "evaluate", test_step_raises(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        quick_start.run("SASRec", TINY_DATASET, overrides=overrides)
    assert len(list((tmp_path / "saved").glob("*.pth"))) == 1


def test_both_loss_parts_reach_the_log_and_tensorboard(tiny_data_path, tmp_path):
    config = quick_start.build_config("LLaDARec", TINY_DATASET,
                                      overrides=llada_overrides(tiny_data_path, tmp_path, epochs=1,
                                                                his_mask_weight=2.0, item_mask_weight=0.5))
    quick_start.ensure_dataset_files(config)
    experiment = quick_start.prepare(config)
    trainer = experiment.trainer
    scalars = {}
    trainer.tensorboard.add_scalar = lambda tag, value, step: scalars.__setitem__((tag, step), value)
    trainer.fit(experiment.train_data, experiment.valid_data, saved=False)

    item_loss, his_loss = scalars[("Loss/Train/item", 0)], scalars[("Loss/Train/history", 0)]
    assert item_loss > 0 and his_loss > 0
    # The parts are weighted as in the loss (item_mask_weight, his_mask_weight), so they add up to the total.
    assert math.isclose(item_loss + his_loss, scalars[("Loss/Train", 0)], rel_tol=1e-5)
    line = trainer._generate_train_loss_output(0, 0.0, 1.0, trainer.train_loss_dict[0])
    assert f"item loss: {item_loss:.4f}" in line and f"history loss: {his_loss:.4f}" in line


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_metrics_of_an_uninterrupted_one(tiny_data_path, tmp_path):
    """kill -9 as soon as the first checkpoint exists (or, on a fast machine, after the run ended: then resuming
    only tests the checkpoint), resume, and compare with the same run uninterrupted."""
    overrides = llada_overrides(tiny_data_path, tmp_path, epochs=4, checkpoint_dir=str(tmp_path / "killed"))
    args = [f"--{key}={value}" for key, value in overrides.items() if key != "load_col"]
    command = [sys.executable, str(REPO / "run_recbole_llada.py"), "--model=LLaDARec", f"--dataset={TINY_DATASET}",
               *args]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and not list((tmp_path / "killed").glob("*.pth")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (checkpoint,) = (tmp_path / "killed").glob("*.pth")

    resumed = quick_start.run("LLaDARec", TINY_DATASET, overrides=overrides, resume=str(checkpoint))
    whole = quick_start.run("LLaDARec", TINY_DATASET,
                            overrides={**overrides, "checkpoint_dir": str(tmp_path / "whole")})
    assert resumed.test_result == whole.test_result
    assert resumed.best_valid_result == whole.best_valid_result
    assert resumed.epochs_trained == whole.epochs_trained


def test_the_trainer_takes_recboles_learner_and_clip_grad_norm(tiny_data_path, tmp_path):
    def trainer_of(**extra) -> LLaDARecTrainer:
        config = quick_start.build_config("LLaDARec", TINY_DATASET,
                                          overrides=llada_overrides(tiny_data_path, tmp_path, **extra))
        return quick_start.prepare(config).trainer

    default = trainer_of()
    assert type(default.optimizer) is torch.optim.AdamW and default.clip_grad_norm == {"max_norm": 1.0}
    other = trainer_of(learner="adam", clip_grad_norm={"max_norm": 0.5})
    assert type(other.optimizer) is torch.optim.Adam and other.clip_grad_norm == {"max_norm": 0.5}
