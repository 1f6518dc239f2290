"""The official LLaDA-Rec model (TengShi-RUC/LLaDA-Rec at bd8bdc1, a local checkout never copied here) built in this
process on speed.py's synthetic inputs, with its own decoding entry point and training step.

Its classes are instantiated as its pipeline does, each fed the least it reads:

- config: its ``get_config`` (default.yaml, the AmazonReviews2023 and LLaDARec config.yaml) over our LLaDARec config
  mapped onto its keys as official_side_by_side.py maps it, with the decoding steps and beams to time;
- dataset: a genrec ``AbstractDataset`` holding only the item ids: our synthetic item ``i`` is its item
  ``item_<i>`` with the same id, so our histories are its histories; it has no sequences, which only its data
  pipeline reads;
- tokenizer: its ``LLaDARecTokenizer`` over its MultiHeadVQVAE tokenizer, which loads our SIDs from a ``sem_ids``
  JSON written to a temporary folder, so no VQ-VAE is trained;
- model: its ``LLaDARec``, random weights of its constructor, fp32, with an Accelerator without mixed precision, as
  its pipeline runs it.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch.nn.utils import clip_grad_norm_

from benchmarks.official_launcher import import_official_code
from benchmarks.official_side_by_side import (ITEM_PREFIX, official_arguments, official_command_line, official_name,
                                              sem_ids_file)

CATEGORY = "synthetic"  # names the official sem_ids folder only: no data files are read


@dataclass
class OfficialModel:
    model: torch.nn.Module  # genrec.models.LLaDARec.model.LLaDARec
    config: dict  # its config, as its pipeline holds it (with device and accelerator)
    n_return_sequences: int  # sequences its Trainer.evaluate asks generate for at test time: its Evaluator's maxk


def build_official_model(official_dir: Path, our_config: Mapping[str, Any], item_sid: torch.Tensor, gen_steps: int,
                         num_beams: int, device: torch.device) -> OfficialModel:
    """The official LLaDARec for our config and SIDs (``item_sid``: LongTensor[n_items + 1, M], row 0 padding),
    decoding with ``gen_steps`` steps and ``num_beams`` beams (its ``gen_steps`` and ``num_beams``)."""
    official_dir = import_official_code(official_dir)
    from accelerate import Accelerator
    from genrec.dataset import AbstractDataset
    from genrec.evaluator import Evaluator
    from genrec.models.LLaDARec.model import LLaDARec
    from genrec.models.LLaDARec.tokenizer import LLaDARecTokenizer
    from genrec.utils import get_config, parse_command_line_args

    item_sid = item_sid.cpu()
    with tempfile.TemporaryDirectory(prefix="llada_official_speed_") as work_dir:
        arguments = official_arguments(our_config, CATEGORY, item_sid.shape[1], epochs=1, seed=our_config["seed"],
                                       work_dir=Path(work_dir))
        arguments.update(gen_steps=gen_steps, num_beams=num_beams)
        # As its main.py and our launcher: command-line strings, parsed by its own parser.
        config_dict = parse_command_line_args(official_command_line(arguments))
        config = get_config(config_dict.pop("model"), config_dict.pop("dataset"), None, config_dict)
        config["device"], config["use_ddp"] = device, False
        config["accelerator"] = Accelerator(cpu=device.type == "cpu", mixed_precision="no")

        dataset = AbstractDataset(config)
        item_names = [official_name(ITEM_PREFIX, str(item)) for item in range(1, item_sid.shape[0])]
        for item, name in enumerate(item_names, start=1):
            dataset.id_mapping["item2id"][name] = item
            dataset.id_mapping["id2item"].append(name)
        sem_ids_path = sem_ids_file(Path(work_dir), CATEGORY, config["max_item_seq_len"])
        sem_ids_path.parent.mkdir(parents=True)
        sem_ids_path.write_text(json.dumps(dict(zip(item_names, item_sid[1:].tolist()))))
        # Its tokenizer reads its own config through a path relative to the checkout.
        with contextlib.chdir(official_dir):
            tokenizer = LLaDARecTokenizer(config, dataset)

    n_return_sequences = Evaluator(config, tokenizer).maxk
    if num_beams < n_return_sequences:
        raise ValueError(f"the official beam search returns at most its {num_beams} beams, and its evaluator asks "
                         f"for max(topk) = {n_return_sequences}")
    model = LLaDARec(config, dataset, tokenizer).to(device)
    return OfficialModel(model=model, config=config, n_return_sequences=n_return_sequences)


def official_batch(item_seq: torch.Tensor, item_seq_len: torch.Tensor, targets: torch.Tensor) -> dict:
    """Our interaction's histories and targets as its tokenizer writes a training batch: histories left-padded
    (ours are right-padded), the target item id as ``labels`` [U, 1]. Its model reads nothing else."""
    history_len = item_seq.shape[1]
    shift = (history_len - item_seq_len)[:, None]
    left_padded = item_seq.gather(1, (torch.arange(history_len, device=item_seq.device) - shift) % history_len)
    return {"input_ids": left_padded, "labels": targets[:, None]}


def official_predict(official: OfficialModel, input_ids: torch.Tensor) -> None:
    """Its test-time decoding of these users, as its Trainer.evaluate calls it: ``generate`` (its ``beam_search``)
    on batches of ``test_batch_size`` users, asking for max(topk) SID sequences each, without gradients. The
    evaluator's comparison of those SIDs with the targets (on the CPU) is left out."""
    official.model.eval()
    with torch.no_grad():
        for chunk in input_ids.split(official.config["test_batch_size"]):
            official.model.generate({"input_ids": chunk, "split": "test"},
                                    n_return_sequences=official.n_return_sequences)


def official_train_step(official: OfficialModel, train_sequences: int) -> Callable[[dict], None]:
    """Its optimizer step, as the batch loop of its Trainer.fit runs it, on a model, AdamW and cosine schedule
    prepared by its Accelerator as fit prepares them. The schedule spans one epoch of ``train_sequences``; its
    length does not change a step's cost. Leaves the model in training mode."""
    from torch.optim import AdamW
    from transformers.optimization import get_scheduler

    config, accelerator = official.config, official.config["accelerator"]
    optimizer = AdamW(official.model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    total_steps = math.ceil(train_sequences / config["train_batch_size"])
    scheduler = get_scheduler(name="cosine", optimizer=optimizer,
                              num_warmup_steps=math.floor(total_steps * config["warmup_ratio"]),
                              num_training_steps=total_steps)
    model, optimizer, scheduler = accelerator.prepare(official.model, optimizer, scheduler)
    model.train()

    def step(batch: dict) -> None:
        optimizer.zero_grad()
        outputs = model(batch)
        accelerator.backward(outputs.loss)
        clip_grad_norm_(model.parameters(), config["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        # fit reads the three losses every step (host syncs): part of its step's cost.
        for loss in (outputs.loss, outputs.his_mask_loss, outputs.target_mask_loss):
            loss.item()

    return step
