"""Time each stage of the SID pipeline (text, embed, pca, tokenizer fit, encode, uniqueness) on real and synthetic data.

    python benchmarks/sid_speed.py --datasets ml-100k beauty            # CPU: auto epochs (200)
    python benchmarks/sid_speed.py --datasets synthetic --epochs 10000   # GPU, the paper's settings

Datasets: ``ml-100k`` (the .item file shipped with RecBole; title, year, genres), ``beauty``
(../shared/data/amazon2014/Beauty/Beauty.item, "attributes"), ``synthetic`` (25,848 clustered 384-d vectors,
PCA to 128, M=4, K=256, d=32, as in the paper). Every item counts as a training item; the cache is off.
Writes ``benchmarks/results/sid_speed_<hardware>.{md,csv}``. ``--save_embeddings DIR`` keeps the text
embeddings so a machine without the encoder (the GPU box) can rerun with ``--load_embeddings DIR``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recbole_llada.training.results import git_commit
from recbole_llada.sid import (PADDING_CODE, SIDConfig, SIDResult, array_embeddings, build_semantic_ids, encode_texts,
                              file_embeddings, read_item_texts, resolved_device, text_embeddings)
from recbole_llada.sid.build import resolved_epochs

REPO = Path(__file__).resolve().parent.parent
ML_100K_ITEMS = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
    "site-packages" / "recbole" / "dataset_example" / "ml-100k" / "ml-100k.item"
BEAUTY_ITEMS = REPO.parent / "shared" / "data" / "amazon2014" / "Beauty" / "Beauty.item"
SYNTHETIC_ITEMS = 25848  # size of the paper's largest dataset
STAGES = ("text", "embed", "pca", "fit", "encode", "unique", "total")


def ml_100k_path() -> Path:
    if ML_100K_ITEMS.is_file():
        return ML_100K_ITEMS
    import recbole

    return Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.item"


def synthetic_embeddings(n_items: int, dim: int = 384, n_clusters: int = 2000, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors like sentence embeddings of a catalogue: topics, items near their topic."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim))
    members = rng.integers(n_clusters, size=n_items)
    vectors = centers[members] + 0.5 * rng.standard_normal((n_items, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def run_dataset(name: str, args: argparse.Namespace) -> tuple[SIDResult, float, SIDConfig]:
    common = dict(tokenizer=args.tokenizer, epochs=args.epochs, device=args.device, cache_dir=None,
                  show_progress=args.progress, seed=args.seed)
    tick = time.perf_counter()
    if args.load_embeddings and name != "synthetic":
        # Text embeddings computed elsewhere (e.g. on a machine that has the encoder), read as an embedding file.
        npy, ids = args.load_embeddings / f"{name}.npy", args.load_embeddings / f"{name}.ids"
        item_ids = ["[PAD]", *ids.read_text(encoding="utf-8").split("\n")[:-1]]
        cfg = SIDConfig(item_embedding="file", embedding_file=str(npy), embedding_ids_file=str(ids), **common)
        mask = np.ones(len(item_ids), dtype=bool)
        mask[0] = False
        return build_semantic_ids(cfg, item_ids, mask, file_embeddings(npy, ids, item_ids[1:])), 0.0, cfg
    if name == "synthetic":
        vectors = synthetic_embeddings(SYNTHETIC_ITEMS)
        item_ids = ["[PAD]"] + [f"s{index}" for index in range(SYNTHETIC_ITEMS)]
        text_seconds = time.perf_counter() - tick
        cfg = SIDConfig(**common)
        mask = np.ones(len(item_ids), dtype=bool)
        mask[0] = False
        return build_semantic_ids(cfg, item_ids, mask, array_embeddings(vectors)), text_seconds, cfg
    if name == "ml-100k":
        texts = read_item_texts(ml_100k_path(), "item_id", ["movie_title", "release_year", "class"])
    elif name == "beauty":
        texts = read_item_texts(BEAUTY_ITEMS, "item_id", ["attributes"])
    else:
        raise ValueError(f"unknown dataset {name!r}")
    text_seconds = time.perf_counter() - tick
    item_ids = ["[PAD]", *texts]
    mask = np.ones(len(item_ids), dtype=bool)
    mask[0] = False
    cfg = SIDConfig(**common)
    result = build_semantic_ids(cfg, item_ids, mask, text_embeddings(item_ids[1:], texts, cfg.text_encoder,
                                                                    cfg.encode_batch_size, resolved_device(cfg),
                                                                    cfg.show_progress))
    if args.save_embeddings:
        args.save_embeddings.mkdir(parents=True, exist_ok=True)
        vectors = encode_texts(list(texts.values()), cfg.text_encoder, cfg.encode_batch_size, show_progress=False)
        np.save(args.save_embeddings / f"{name}.npy", vectors)
        (args.save_embeddings / f"{name}.ids").write_text("".join(f"{item}\n" for item in texts), encoding="utf-8")
    return result, text_seconds, cfg


def hardware_name(device: str) -> tuple[str, str]:
    """(file-name slug, description)."""
    if torch.device(device).type == "cuda":
        gpu = torch.cuda.get_device_name(0)
        return gpu.lower().replace(" ", "-"), f"{gpu}, {os.cpu_count()} CPU cores"
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.exists() else []
    return f"cpu-{os.cpu_count()}cores", f"{models[0] if models else platform.machine()}, {os.cpu_count()} CPU cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "beauty", "synthetic"],
                        choices=["ml-100k", "beauty", "synthetic"])
    parser.add_argument("--epochs", type=int, default=None, help="tokenizer epochs (default: auto per device)")
    parser.add_argument("--tokenizer", default="mh_vqvae")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 avoids stalls on a busy machine")
    parser.add_argument("--out_dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--save_embeddings", type=Path, default=None,
                        help="also write each text dataset's embeddings (<name>.npy, <name>.ids) to this folder")
    parser.add_argument("--load_embeddings", type=Path, default=None,
                        help="read text datasets' embeddings from such a folder instead of encoding texts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    slug, hardware = hardware_name(args.device)
    load_before = " ".join(f"{value:.1f}" for value in os.getloadavg())
    rows = []
    for name in args.datasets:
        result, text_seconds, cfg = run_dataset(name, args)
        report = result.report
        assert (result.item_sid[0] == PADDING_CODE).all() and report.collisions_after == 0
        seconds = {**report.stage_seconds, "text": text_seconds}
        seconds["total"] = seconds["total"] + text_seconds
        rows.append({
            "dataset": name, "items": report.n_items, "tokenizer": report.tokenizer,
            "epochs": resolved_epochs(cfg, args.device), "input_dim": report.embedding_dim,
            **{f"{stage}_s": round(seconds.get(stage, 0.0), 2) for stage in STAGES},
            "collisions_quantizer": report.collisions_before,
            "collisions_sinkhorn": report.collisions_after_rebalance,
            "collisions_final": report.collisions_after, "moved": report.n_moved,
            "code_usage": "/".join(map(str, report.code_usage)),
            "perplexity": "/".join(f"{value:.0f}" for value in report.perplexity),
            "recon_mse": round(report.reconstruction_error, 4), "best_epoch": report.best_epoch,
        })
        print(report.format(), "\n", flush=True)

    # Each run appends: its rows to the CSV (with the run's date and commit) and a section to the markdown file.
    date, commit = datetime.datetime.now().isoformat(timespec="seconds"), git_commit()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = args.out_dir / f"sid_speed_{slug}.csv", args.out_dir / f"sid_speed_{slug}.md"
    new_csv = not csv_path.exists()
    with open(csv_path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["date", "commit", "threads", *rows[0]])
        if new_csv:
            writer.writeheader()
        writer.writerows({"date": date, "commit": commit, "threads": torch.get_num_threads(), **row} for row in rows)
    lines = [] if md_path.exists() else [
        f"# SID pipeline speed on {hardware}", "",
        "Stages in seconds; 'embed' includes loading the encoder. Collisions count items sharing an SID with an "
        "earlier item: straight from the quantizer, after the Sinkhorn pass, and after make_unique (always 0).",
    ]
    lines += [
        "", f"## {date}", "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- commit: {commit}",
        f"- torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} torch threads, "
        f"load average before the run {load_before}", "",
        "| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0]),
    ]
    lines += ["| " + " | ".join(str(value) for value in row.values()) + " |" for row in rows]
    with open(md_path, "a") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))

if __name__ == "__main__":
    main()
