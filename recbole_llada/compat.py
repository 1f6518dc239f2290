"""Every workaround recbole-llada needs to run RecBole 1.2.1 on today's stack, in one place.

RecBole 1.2.1 (the current release) predates numpy 2, torch 2.6 and pandas 3. Rather than forking it we patch
the few places that break, each patch scoped as narrowly as possible. ``apply()`` runs once when
``recbole_llada`` is imported; it is idempotent. Each workaround is covered by ``tests/test_compat.py``,
whose tests fail without it.

1. numpy 2 removed ``np.float_``, ``np.complex_`` and ``np.unicode_``. ``Config.compatibility_settings``
   reads them to re-create the aliases RecBole's code still uses (``np.float``, ``np.int``, ...), so every
   ``Config(...)`` raises ``AttributeError``. We replace that method with one that builds the same aliases
   from names that exist in numpy 1 and 2.
2. torch >= 2.6 loads checkpoints with ``weights_only=True`` by default. RecBole's checkpoints hold a
   pickled ``Config`` (protocol 4) and fail with "Unsupported operand 149"; ``add_safe_globals`` cannot
   help because the opcode itself is refused. RecBole only ever loads checkpoints it wrote itself, so the
   trainer module sees a ``torch`` whose ``load`` defaults to ``weights_only=False``, and
   ``recbole.quick_start.load_data_and_model`` (which imports torch inside the function) runs with that
   default while it executes. ``torch.load`` everywhere else keeps the safe default.
3. Multi-GPU (``nproc > 1``): at test time every rank loads the best checkpoint while rank 0 may still be
   writing it (``EOFError``/``UnpicklingError`` on the other ranks); worse, each rank names its checkpoint
   after its own clock second, so the other ranks may look for a file that never exists. Running
   distributed, ``Trainer.evaluate`` first waits at a barrier (rank 0's last save is complete) and takes
   rank 0's checkpoint path.
4. pandas 3 makes ``df[col].fillna(..., inplace=True)`` a silent no-op (copy-on-write); RecBole relies on
   it when loading atomic files, and an empty text cell then crashes dataset loading. There is no narrow
   patch for that, so we refuse pandas 3 with a clear message (``setup.py`` pins ``pandas<3``). pandas 2.2+
   warns about those very calls on every dataset load; since pandas 3 is refused, the warning says nothing
   actionable and is silenced for RecBole's modules only, as is torch's deprecation notice for RecBole's
   ``torch.cuda.amp.GradScaler`` (still working, and inside RecBole's code, not the user's).
5. ``recbole/model/sequential_recommender/sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` at import
   time, and RecBole imports every sequential model as soon as one is looked up: every model of every run then
   trains in anomaly-detection mode, which records a Python stack per autograd node and checks every backward
   result (RecBole's SASRec: 0.27 s per ml-100k batch on 2 CPU cores instead of 0.19 s). Right after that module
   is imported we switch the mode off again. To debug with anomaly detection, enable it after importing models.
6. ``Config`` sets ``CUDA_VISIBLE_DEVICES`` to its ``gpu_id`` (default ``"0"``) before CUDA starts, so a process
   started with ``CUDA_VISIBLE_DEVICES=1`` silently runs on GPU 0, beside whatever runs there (and so does any
   subprocess it starts, which inherits the variable). When the user set ``CUDA_VISIBLE_DEVICES`` and gave no
   ``gpu_id``, the GPUs they made visible are kept; an explicit ``gpu_id`` still means RecBole's physical ids.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import os
import sys
import types
import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

_applied = False
_TORCH_LOAD = torch.load
# What each patch replaced, kept so tests can show that the original really breaks on this stack.
ORIGINALS: dict[str, Callable] = {}


def _numpy2_safe_compatibility_settings(self) -> None:
    """Replacement for ``recbole.config.Config.compatibility_settings`` (numpy 1 and 2 alike)."""
    np.bool = np.bool_
    np.int = np.int_
    np.float = np.float64
    np.complex = np.complex128
    np.object = np.object_
    np.str = np.str_
    np.long = np.int_
    np.unicode = np.str_


class _TorchTrustingOwnCheckpoints(types.ModuleType):
    """Stands in for ``torch`` inside a RecBole module; identical except that ``load`` unpickles fully."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return _TORCH_LOAD(*args, **kwargs)


def _trust_own_checkpoints(module: types.ModuleType) -> None:
    if isinstance(getattr(module, "torch", None), types.ModuleType):
        module.torch = _TorchTrustingOwnCheckpoints()


@contextlib.contextmanager
def _full_unpickling_torch_load():
    original = torch.load
    torch.load = _TorchTrustingOwnCheckpoints.load
    try:
        yield
    finally:
        torch.load = original


def _patch_quick_start(module: types.ModuleType) -> None:
    original = module.load_data_and_model

    @functools.wraps(original)
    def load_data_and_model(*args, **kwargs):
        with _full_unpickling_torch_load():
            return original(*args, **kwargs)

    module.load_data_and_model = load_data_and_model


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Applies a patch to a module right after it is first imported.

    ``recbole.quick_start`` imports ray at import time (slow, and ray is absent where only training runs), so
    we must not import it eagerly just to patch it.
    """

    def __init__(self, module_name: str, patch: Callable[[types.ModuleType], None]) -> None:
        self.module_name = module_name
        self.patch = patch

    def find_spec(self, fullname, path, target=None):
        if fullname != self.module_name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        original_exec = spec.loader.exec_module
        patch = self.patch

        def exec_then_patch(module):
            original_exec(module)
            patch(module)

        spec.loader.exec_module = exec_then_patch
        return spec


def _wait_for_rank0_checkpoint(evaluate: Callable) -> Callable:
    @functools.wraps(evaluate)
    def evaluate_after_barrier(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        distributed = not self.config["single_spec"]
        if distributed and load_best_model and model_file is None:
            torch.distributed.barrier()
            rank0_file = [self.saved_model_file]
            torch.distributed.broadcast_object_list(rank0_file, src=0)
            self.saved_model_file = rank0_file[0]
        return evaluate(self, eval_data, load_best_model=load_best_model, model_file=model_file,
                        show_progress=show_progress)

    evaluate_after_barrier._waits_for_rank0 = True
    return evaluate_after_barrier


def _undo_sine_anomaly_mode(module: types.ModuleType | None) -> None:
    torch.autograd.set_detect_anomaly(False)


def _keep_visible_devices(init_device: Callable) -> Callable:
    """Wrap ``Config._init_device``: without a user ``gpu_id``, the gpu_id becomes the visible devices themselves."""
    @functools.wraps(init_device)
    def init_device_keeping_visible(self) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        given = any("gpu_id" in (layer or {}) for layer in
                    (self.file_config_dict, self.variable_config_dict, self.cmd_config_dict))
        if visible is not None and not given:
            self.final_config_dict["gpu_id"] = visible
        init_device(self)

    init_device_keeping_visible._keeps_visible_devices = True
    return init_device_keeping_visible


def check_pandas(version: str = pd.__version__) -> None:
    major = int(version.split(".")[0])
    if major >= 3:
        raise ImportError(
            f"recbole-llada needs pandas < 3 (found {version}): RecBole 1.2.1 fills missing values with "
            "`fillna(inplace=True)`, which pandas 3 silently ignores, corrupting datasets with empty cells. "
            "Install it with: pip install 'pandas>=2.2,<3'"
        )


def apply() -> None:
    """Apply every workaround once (called by ``import recbole_llada``)."""
    global _applied
    if _applied:
        return
    check_pandas()
    warnings.filterwarnings("ignore", message=".*inplace method.*", category=FutureWarning,
                            module=r"recbole\..*")
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.GradScaler.*", category=FutureWarning,
                            module=r"recbole\..*")

    from recbole.config import Config
    import recbole.trainer.trainer as recbole_trainer

    ORIGINALS.setdefault("Config.compatibility_settings", Config.compatibility_settings)
    Config.compatibility_settings = _numpy2_safe_compatibility_settings
    if not getattr(Config._init_device, "_keeps_visible_devices", False):
        ORIGINALS.setdefault("Config._init_device", Config._init_device)
        Config._init_device = _keep_visible_devices(Config._init_device)
    _trust_own_checkpoints(recbole_trainer)
    if not getattr(recbole_trainer.Trainer.evaluate, "_waits_for_rank0", False):
        ORIGINALS.setdefault("Trainer.evaluate", recbole_trainer.Trainer.evaluate)
        recbole_trainer.Trainer.evaluate = _wait_for_rank0_checkpoint(recbole_trainer.Trainer.evaluate)

    for module_name, patch in (("recbole.quick_start.quick_start", _patch_quick_start),
                               ("recbole.model.sequential_recommender.sine", _undo_sine_anomaly_mode)):
        if module_name in sys.modules:
            patch(sys.modules[module_name])
        else:
            sys.meta_path.insert(0, _PatchAfterImport(module_name, patch))
    _applied = True
