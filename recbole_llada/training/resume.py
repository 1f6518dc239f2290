"""Continue an interrupted run from its checkpoint, ending where the uninterrupted run would have ended.

RecBole's checkpoint (written whenever validation improves) holds the model, the optimizer, the epoch and the
best validation score, and ``Trainer.resume_checkpoint`` restores them. It leaves out the best validation result
(a resumed run that never improves again returns ``None`` for it), the losses of the epochs before (so the run no
longer knows how many epochs it trained), the random state (dropout, masking, the training loader's shuffling)
and trainer state beyond the optimizer (``LLaDARecTrainer``'s learning-rate schedule). ``ResumableTrainer`` saves
all of them with each checkpoint and restores them, so a run stopped at any point after its last checkpoint and
resumed with ``--resume`` reproduces the uninterrupted run's epochs exactly (on the same machine and settings).
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_llada.errors import UserInputError

_RESUME_STATE = "recbole_llada_resume_state"


class ResumableTrainer(Trainer):
    """RecBole's ``Trainer`` whose checkpoints carry everything needed to resume exactly (see the module doc)."""

    _train_data: Any = None
    _last_valid_result: dict[str, float] | None = None
    _pending_resume_state: dict[str, Any] | None = None

    def fit(self, train_data, *args, **kwargs):
        self._train_data = train_data
        if self._pending_resume_state is not None:
            self._restore_training_state(self._pending_resume_state, train_data)
            self._pending_resume_state = None
        return super().fit(train_data, *args, **kwargs)

    def _valid_epoch(self, valid_data, show_progress=False):
        # RecBole saves the checkpoint before it records the epoch's result as the best one.
        valid_score, self._last_valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        return valid_score, self._last_valid_result

    def _training_state(self) -> dict[str, Any]:
        """What RecBole's checkpoint leaves out; subclasses add their own state."""
        state = {
            "best_valid_result": self._last_valid_result,
            "train_loss_dict": dict(self.train_loss_dict),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
        }
        if self._train_data is not None:
            state["train_loader_rng"] = self._train_data.generator.get_state()
        return state

    def _restore_training_state(self, state: dict[str, Any], train_data) -> None:
        self.best_valid_result = state["best_valid_result"]
        self.train_loss_dict = dict(state["train_loss_dict"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        if "train_loader_rng" in state:
            train_data.generator.set_state(state["train_loader_rng"])

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """RecBole's checkpoint (same keys, same file) plus the training state, replaced atomically."""
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": self.config,
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            _RESUME_STATE: self._training_state(),
        }
        # Written whole or not at all: a run killed while saving keeps its previous checkpoint to resume from.
        partial = f"{saved_model_file}.partial"
        torch.save(state, partial, pickle_protocol=4)
        os.replace(partial, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def resume_checkpoint(self, resume_file):
        super().resume_checkpoint(resume_file)
        self._pending_resume_state = load_checkpoint(resume_file).get(_RESUME_STATE)


def resumable(trainer_class: type) -> type:
    """``trainer_class`` with ``ResumableTrainer``'s checkpoints (itself when it already has them)."""
    if issubclass(trainer_class, ResumableTrainer) or not issubclass(trainer_class, Trainer):
        return trainer_class
    return type(f"Resumable{trainer_class.__name__}", (ResumableTrainer, trainer_class), {})


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    # RecBole's checkpoints pickle its Config, which torch's weights_only loading refuses (see compat.py).
    return torch.load(path, map_location="cpu", weights_only=False)


def resume(trainer: Trainer, checkpoint_file: str | Path) -> None:
    """Load ``checkpoint_file`` into ``trainer`` for ``fit`` to continue from; user mistakes end in a
    ``UserInputError``."""
    path = Path(checkpoint_file)
    if not path.is_file():
        raise UserInputError(f"--resume: checkpoint {str(path)!r} does not exist. Checkpoints are written to "
                             "checkpoint_dir (default saved/) as <Model>-<time>.pth.")
    try:
        checkpoint = load_checkpoint(path)
        saved_config = checkpoint["config"]
    except (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError, AttributeError,
            pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise UserInputError(f"--resume: {str(path)!r} is not a RecBole checkpoint ({error}).") from error
    config = trainer.config
    for key in ("model", "dataset"):
        if saved_config[key] != config[key]:
            raise UserInputError(f"--resume: {str(path)!r} is a checkpoint of {key} {saved_config[key]!r}, but this "
                                 f"run's {key} is {config[key]!r}. Resume with the run's own settings.")
    try:
        trainer.resume_checkpoint(str(path))
    except (RuntimeError, ValueError, KeyError) as error:
        raise UserInputError(
            f"--resume: {str(path)!r} was saved with another configuration of {config['model']} and does not fit "
            f"this one ({str(error).splitlines()[0]}). Resume with the same config files and --key=value overrides."
        ) from error
