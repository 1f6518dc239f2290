"""Run the official LLaDA-Rec pipeline (its main.py, TengShi-RUC/LLaDA-Rec at bd8bdc1) with the run-time patches
today's stack needs, without editing any of its files; started by official_side_by_side.py.

    python benchmarks/official_launcher.py OFFICIAL_DIR SUMMARY_JSON --key=value ...

The ``--key=value`` arguments are the official config keys, exactly as its main.py takes them. Patches, all applied
in this process only:
- transformers >= 5 no longer stores ``use_cache`` on the vendored ``LLaDAConfig``, whose model reads it in every
  forward: the config sets it again after its own constructor;
- the official Accelerator logs to TensorBoard: the tracker is switched off (``log_with=None``), so TensorBoard
  need not be installed and nothing is written beside the run;
- its AmazonReviews2023 loader accepts only Amazon 2023 category names: the check is skipped, so our data can be
  written under our dataset's name.
The official code reads its tokenizer config through a relative path, so this runs from OFFICIAL_DIR; every file it
writes goes to the directories named in the arguments (official_side_by_side.py puts them in its work dir).

SUMMARY_JSON receives what the results table needs: test metrics, best epoch and validation score, epochs trained,
trainable parameters, and the wall-clock seconds of training (with validation) and of the test evaluation.

``check_official_checkout`` and ``import_official_code`` are also what speed.py uses to build the official model
in its own process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


OFFICIAL_MODEL_FILE = Path("genrec") / "models" / "LLaDARec" / "model.py"

_patched_checkout: Path | None = None  # the checkout imported and patched in this process, if any


def check_official_checkout(official_dir: Path | str) -> Path:
    """``official_dir`` resolved; ValueError unless it holds the official LLaDA-Rec code."""
    official_dir = Path(official_dir).resolve()
    if not (official_dir / OFFICIAL_MODEL_FILE).is_file():
        raise ValueError(f"{official_dir} is not a checkout of the official LLaDA-Rec code (TengShi-RUC/LLaDA-Rec): "
                         f"{OFFICIAL_MODEL_FILE} is missing")
    return official_dir


def import_official_code(official_dir: Path | str) -> Path:
    """Make the checkout's packages (``genrec``, ``LLaDA``) importable and patch them; returns the checkout.

    Once per process: the patches wrap classes in place, so a second round would wrap them twice, and the modules
    are cached, so a second checkout could not be imported beside the first.
    """
    global _patched_checkout
    official_dir = check_official_checkout(official_dir)
    if _patched_checkout is None:
        sys.path.insert(0, str(official_dir))
        patch_official_code()
        _patched_checkout = official_dir
    elif _patched_checkout != official_dir:
        raise ValueError(f"the official code is already imported from {_patched_checkout}, not {official_dir}")
    return official_dir


def patch_official_code() -> None:
    import genrec.pipeline
    from genrec.datasets.AmazonReviews2023.dataset import AmazonReviews2023
    from LLaDA.configuration_llada import LLaDAConfig

    config_init = LLaDAConfig.__init__

    def init_keeping_use_cache(self, use_cache: bool = False, **kwargs):
        config_init(self, use_cache=use_cache, **kwargs)
        self.use_cache = use_cache

    LLaDAConfig.__init__ = init_keeping_use_cache

    accelerator_class = genrec.pipeline.Accelerator

    def accelerator_without_tracker(*args, **kwargs):
        kwargs["log_with"] = None
        return accelerator_class(*args, **kwargs)

    genrec.pipeline.Accelerator = accelerator_without_tracker
    AmazonReviews2023._check_available_category = lambda self: None


class TrainerClock:
    """Times the official Trainer: ``fit`` (training and per-epoch validation) and the evaluations outside it
    (the test), and counts the validation passes, i.e. the epochs trained when ``eval_interval`` is 1."""

    def __init__(self, trainer_class):
        self.train_seconds = 0.0
        self.test_seconds = 0.0
        self.validations = 0
        self._fitting = False
        fit, evaluate = trainer_class.fit, trainer_class.evaluate
        clock = self

        def timed_fit(trainer, *args, **kwargs):
            clock._fitting = True
            start = time.perf_counter()
            try:
                return fit(trainer, *args, **kwargs)
            finally:
                clock.train_seconds += time.perf_counter() - start
                clock._fitting = False

        def timed_evaluate(trainer, *args, **kwargs):
            if clock._fitting:
                clock.validations += 1
                return evaluate(trainer, *args, **kwargs)
            start = time.perf_counter()
            try:
                return evaluate(trainer, *args, **kwargs)
            finally:
                clock.test_seconds += time.perf_counter() - start

        trainer_class.fit = timed_fit
        trainer_class.evaluate = timed_evaluate


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    summary_path, official_args = Path(argv[1]).resolve(), argv[2:]
    official_dir = import_official_code(argv[0])
    os.chdir(official_dir)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # as its main.py

    from genrec.trainer import Trainer
    from genrec.utils import get_pipeline, parse_command_line_args

    clock = TrainerClock(Trainer)
    config = parse_command_line_args(official_args)
    model_name, dataset_name = config.pop("model"), config.pop("dataset")
    pipeline = get_pipeline(model_name)(model_name=model_name, dataset_name=dataset_name, config_dict=config)
    n_parameters = sum(p.numel() for p in pipeline.model.parameters() if p.requires_grad)
    outcome = pipeline.run()
    if pipeline.accelerator.is_main_process:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps({
            "test_results": outcome["test_results"],
            "best_epoch": outcome["best_epoch"],
            "best_val_score": outcome["best_val_score"],
            "epochs_trained": clock.validations,
            "n_parameters": n_parameters,
            "train_seconds": clock.train_seconds,
            "test_seconds": clock.test_seconds,
            "checkpoint": pipeline.trainer.saved_model_ckpt,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
