"""Amazon Reviews 2023 preparation on tiny files written in the official formats, and the downloader on loopback."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import random
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from recbole.config import Config
from recbole.data import create_dataset, data_preparation

from recbole_llada.data.amazon2023 import (
    SYNTHETIC_STEP_MS,
    DownloadSettings,
    assign_timestamps,
    clean_text,
    ensure_prepared,
    main,
    prepare,
)
from recbole_llada.data.download import DownloadError, download_file
from recbole_llada.errors import UserInputError
from tests.conftest import tiny_config_dict

CATEGORY = "Tiny_and_Scientific"
BASE_MS = 1_650_000_000_000


@dataclass
class World:
    """Each user's chronological (item, timestamp in ms) list: the ground truth the files are written from."""

    sequences: dict[str, list[tuple[str, int]]]
    meta: list[dict] = field(default_factory=list)

    @property
    def items(self) -> set[str]:
        return {item for sequence in self.sequences.values() for item, _ in sequence}


def make_world(n_users: int = 8, seed: int = 0) -> World:
    """Sequences of 5..9 distinct items with realistic millisecond timestamps, including the awkward cases:
    a numeric-looking ASIN with leading zeros, ties inside the history and a valid target tied with the test one."""
    rng = random.Random(seed)
    catalogue = [f"B0{index:08d}" for index in range(1, 16)] + ["0123456789"]
    sequences = {}
    for user_index in range(n_users):
        items = rng.sample(catalogue, rng.randint(5, 9))
        timestamps, now = [], BASE_MS + rng.randrange(10**9)
        for _ in items:
            now += rng.choice([0, 1, 60_000, 86_400_000])  # 0: a tie with the previous interaction
            timestamps.append(now)
        sequences[f"USER{user_index:02d}"] = list(zip(items, timestamps))
    first = next(iter(sequences.values()))
    first[-1] = (first[-1][0], first[-2][1])  # valid and test targets at the same millisecond
    return World(sequences)


def add_meta(world: World) -> None:
    items = sorted(world.items)
    for index, item in enumerate(items[:-1]):  # the last item has no meta record
        world.meta.append({
            "parent_asin": item,
            "main_category": "Industrial & Scientific",
            "title": f"Widget&nbsp;{index} &amp; <b>bolts</b>\twith\ttabs",
            "features": [f"fits 12\" pipes\nline two", "", "<i>steel</i>"],
            "categories": ["Industrial & Scientific", "Tools"],
            "description": ["First paragraph.\r\nStill first.", "Second\u2028paragraph."],
            "details": {"Brand": "Acme"},
        })
    world.meta.append({"parent_asin": "B099999999", "title": "not in any sequence", "features": [],
                       "categories": [], "description": []})


def write_split(path: Path, rows: list[tuple[str, str, int, str]]) -> None:
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "parent_asin", "rating", "timestamp", "history"])
        for user, item, timestamp, history in rows:
            writer.writerow([user, item, "5.0", timestamp, history])


def write_official_files(raw_dir: Path, world: World, category: str = CATEGORY, train: bool = True,
                         meta: bool = True) -> Path:
    """The benchmark's last_out_w_his files: train has one row per earlier interaction, valid/test one per user."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    rows = {"train": [], "valid": [], "test": []}
    for user, sequence in world.sequences.items():
        items = [item for item, _ in sequence]
        for position, (item, timestamp) in enumerate(sequence):
            split = "test" if position == len(sequence) - 1 else "valid" if position == len(sequence) - 2 else "train"
            rows[split].append((user, item, timestamp, " ".join(items[:position])))
    for split, split_rows in rows.items():
        if split != "train" or train:
            write_split(raw_dir / f"{category}.{split}.csv.gz", split_rows)
    if meta:
        with gzip.open(raw_dir / f"meta_{category}.jsonl.gz", "wt") as handle:
            for record in world.meta:
                handle.write(json.dumps(record) + "\n")
    return raw_dir


def read_inter(path: Path) -> list[tuple[str, str, float]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    rows = [line.split("\t") for line in lines[1:]]
    return [(user, item, float(timestamp)) for user, item, timestamp in rows]


def per_user(rows: list[tuple[str, str, float]]) -> dict[str, list[tuple[str, float]]]:
    grouped: dict[str, list[tuple[str, float]]] = {}
    for user, item, timestamp in rows:
        grouped.setdefault(user, []).append((item, timestamp))
    return grouped


@pytest.fixture
def world() -> World:
    world = make_world()
    add_meta(world)
    return world


# --- timestamps -------------------------------------------------------------------------------------------------

def test_assign_timestamps_keeps_known_values_and_is_strictly_increasing():
    rng = random.Random(1)
    for _ in range(300):
        length = rng.randint(1, 8)
        known = [rng.choice([None, BASE_MS + rng.randrange(5)]) for _ in range(length)]
        if all(value is None for value in known):
            known[rng.randrange(length)] = BASE_MS
        assigned = assign_timestamps(known)
        assert all(later > earlier for earlier, later in zip(assigned, assigned[1:]))
        for index, value in enumerate(known):
            if value is not None and (index == 0 or value > assigned[index - 1]):
                assert assigned[index] == value
            elif value is not None:  # a tie or an out-of-order record moves just past its predecessor
                assert assigned[index] == assigned[index - 1] + 1
        anchor = next(index for index, value in enumerate(known) if value is not None)
        assert [assigned[anchor] - value for value in assigned[:anchor]] == [
            (anchor - index) * SYNTHETIC_STEP_MS for index in range(anchor)]


def test_assign_timestamps_like_the_shared_scientific_file():
    # Only the valid and test timestamps are known, and they tie (user AFGWUMSEOS3BGOWT56HYCYQVTM5Q).
    assert assign_timestamps([None, None, 1489696044000, 1489696044000]) == [
        1489696042000, 1489696043000, 1489696044000, 1489696044001]
    with pytest.raises(ValueError):
        assign_timestamps([None, None])


# --- preparation ------------------------------------------------------------------------------------------------

def test_prepare_writes_official_sequences_in_order(tmp_path, world):
    raw_dir = write_official_files(tmp_path / "raw", world)
    prepared = prepare(CATEGORY, "Tiny", raw_dir, tmp_path / "out", download=False)

    assert prepared.inter_file == tmp_path / "out" / "Tiny" / "Tiny.inter"
    assert prepared.n_users == len(world.sequences)
    assert prepared.n_items == len(world.items)
    assert prepared.n_interactions == sum(len(sequence) for sequence in world.sequences.values())
    rows = per_user(read_inter(prepared.inter_file))
    assert list(rows) == list(world.sequences)  # users in the official files' order
    n_ties = 0
    for user, sequence in world.sequences.items():
        assert [item for item, _ in rows[user]] == [item for item, _ in sequence]
        previous = None
        for (_, official), (_, written) in zip(sequence, rows[user]):
            if previous is None or official > previous:
                assert written == official
            else:  # a tie: moved 1 ms past its predecessor, keeping the official order
                assert written == previous + 1
                n_ties += 1
            previous = written
    assert prepared.n_real_timestamps == prepared.n_interactions - n_ties
    assert n_ties > 0  # the world does exercise ties


def test_prepare_without_train_gives_the_same_sequences(tmp_path, world, caplog):
    full = prepare(CATEGORY, "Tiny", write_official_files(tmp_path / "full", world), tmp_path / "a", download=False)
    with caplog.at_level(logging.WARNING):
        partial = prepare(CATEGORY, "Tiny", write_official_files(tmp_path / "part", world, train=False),
                          tmp_path / "b", download=False)
    assert "train.csv.gz not found" in caplog.text
    full_rows, partial_rows = read_inter(full.inter_file), read_inter(partial.inter_file)
    assert [row[:2] for row in full_rows] == [row[:2] for row in partial_rows]
    partial_users = per_user(partial_rows)
    for user, sequence in world.sequences.items():  # only the valid and test timestamps are known here
        assert partial_users[user][-2][1] == sequence[-2][1]
    untied_tests = sum(sequence[-1][1] > sequence[-2][1] for sequence in world.sequences.values())
    assert partial.n_real_timestamps == partial.n_users + untied_tests < 2 * partial.n_users
    assert (full.n_users, full.n_items, full.n_interactions) == (
        partial.n_users, partial.n_items, partial.n_interactions)


@pytest.mark.parametrize("with_train", [True, False])
def test_recbole_leave_one_out_reproduces_the_official_targets(tmp_path, world, with_train):
    raw_dir = write_official_files(tmp_path / "raw", world, train=with_train)
    prepare(CATEGORY, "Tiny", raw_dir, tmp_path / "data", download=False)
    config = Config(model="SASRec", dataset="Tiny", config_dict=tiny_config_dict(
        tmp_path / "data", tmp_path, MAX_ITEM_LIST_LENGTH=20,
        load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title", "categories"]}))
    dataset = create_dataset(config)
    assert dataset.item_num - 1 == len(world.items)  # the .item file loads too (id 0 is padding)
    _, valid_data, test_data = data_preparation(config, dataset)

    for loader, offset in ((valid_data, 2), (test_data, 1)):
        split = loader._dataset.inter_feat
        users = dataset.id2token("user_id", split["user_id"].numpy())
        targets = dataset.id2token("item_id", split["item_id"].numpy())
        assert sorted(users) == sorted(world.sequences)
        for user, target, history, length in zip(users, targets, split["item_id_list"].numpy(),
                                                  split["item_length"].numpy()):
            official = [item for item, _ in world.sequences[user]]
            assert target == official[-offset]
            assert list(dataset.id2token("item_id", history[:length])) == official[:-offset]


def test_item_file_has_clean_one_line_text(tmp_path, world):
    prepared = prepare(CATEGORY, "Tiny", write_official_files(tmp_path / "raw", world), tmp_path / "out",
                       download=False)
    with open(prepared.item_file, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["item_id:token", "title:token_seq", "features:token_seq", "categories:token_seq",
                       "description:token_seq"]
    assert all(len(row) == 5 for row in rows)
    texts = {row[0]: row[1:] for row in rows[1:]}
    assert set(texts) == world.items  # every sequence item, nothing only the meta file knows
    assert prepared.n_items_with_text == len(world.items) - 1
    assert texts[sorted(world.items)[-1]] == ["", "", "", ""]
    title, features, categories, description = texts[sorted(world.items)[0]]
    assert title == "Widget 0 & bolts with tabs"
    assert features == "fits 12'' pipes line two, steel"
    assert categories == "Industrial & Scientific, Tools"
    assert description == "First paragraph. Still first., Second paragraph."


def test_clean_text_edge_cases():
    assert clean_text(None) == ""
    assert clean_text(["", None, " <br> "]) == ""
    assert clean_text("a\x00b\x07c") == "abc"
    assert clean_text("x\u2028y\x85z\r\n") == "x y z"
    assert clean_text('"Quoted" start') == "''Quoted'' start"
    assert clean_text(3.5) == "3.5"


def test_missing_meta_warns_and_writes_no_item_file(tmp_path, world, caplog):
    raw_dir = write_official_files(tmp_path / "raw", world, meta=False)
    with caplog.at_level(logging.WARNING):
        prepared = prepare(CATEGORY, "Tiny", raw_dir, tmp_path / "out", download=False)
    assert prepared.item_file is None
    assert not (tmp_path / "out" / "Tiny" / "Tiny.item").exists()
    assert f"meta_{CATEGORY}.jsonl.gz not found" in caplog.text


def test_uncompressed_files_work_too(tmp_path, world):
    raw_dir = write_official_files(tmp_path / "raw", world)
    for path in list(raw_dir.iterdir()):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    gz = prepare(CATEGORY, "Tiny", write_official_files(tmp_path / "gz", world), tmp_path / "a", download=False)
    plain = prepare(CATEGORY, "Tiny", raw_dir, tmp_path / "b", download=False)
    assert gz.inter_file.read_text() == plain.inter_file.read_text()
    assert gz.item_file.read_text() == plain.item_file.read_text()


def test_files_from_different_releases_are_refused(tmp_path, world):
    raw_dir = write_official_files(tmp_path / "raw", world)
    other = make_world(seed=7)
    write_split(raw_dir / f"{CATEGORY}.valid.csv.gz",
                [(user, seq[-2][0], seq[-2][1], " ".join(item for item, _ in seq[:-2]))
                 for user, seq in other.sequences.items()])
    with pytest.raises(ValueError, match="same release"):
        prepare(CATEGORY, "Tiny", raw_dir, tmp_path / "out", download=False)


def test_missing_test_file_without_download_says_what_to_place_where(tmp_path, world):
    raw_dir = write_official_files(tmp_path / "raw", world)
    (raw_dir / f"{CATEGORY}.test.csv.gz").unlink()
    with pytest.raises(UserInputError) as error:
        prepare(CATEGORY, "Tiny", raw_dir, tmp_path / "out", download=False)
    message = str(error.value)
    assert f"{CATEGORY}.test.csv.gz" in message and str(raw_dir) in message
    assert "--raw_dir" in message and "--no-download" in message
    assert f"{CATEGORY}.valid.csv.gz" not in message  # it is there


def test_ensure_prepared(tmp_path, world):
    write_official_files(tmp_path / "data" / "Scientific" / "raw", world, category="Industrial_and_Scientific")
    inter_file = ensure_prepared("Scientific", tmp_path / "data", download=False)
    assert inter_file == tmp_path / "data" / "Scientific" / "Scientific.inter"
    assert (tmp_path / "data" / "Scientific" / "Scientific.item").is_file()
    inter_file.write_text("user_id:token\titem_id:token\ttimestamp:float\n")  # an existing file is returned as is
    assert ensure_prepared("Scientific", tmp_path / "data", download=False).read_text().count("\n") == 1
    with pytest.raises(ValueError, match="Scientific.*Instrument.*Game"):
        ensure_prepared("Beauty2023", tmp_path / "data", download=False)


def test_cli(tmp_path, world, capsys):
    raw_dir = write_official_files(tmp_path / "raw", world)
    assert main(["--category", CATEGORY, "--name", "Tiny", "--raw_dir", str(raw_dir),
                 "--out_dir", str(tmp_path / "out"), "--no-download"]) == 0
    assert (tmp_path / "out" / "Tiny" / "Tiny.inter").is_file()
    assert f"{len(world.sequences)} users" in capsys.readouterr().out
    assert main(["--name", "Tiny", "--out_dir", str(tmp_path / "out"), "--no-download"]) == 2
    assert main(["--name", "Game", "--out_dir", str(tmp_path / "out"), "--no-download"]) == 2
    assert "Video_Games.valid.csv.gz" in capsys.readouterr().err


# --- downloading (loopback only) --------------------------------------------------------------------------------

@dataclass
class FakeServer:
    """Serves ``files`` on 127.0.0.1 with Range support; can cut a path's first response halfway."""

    files: dict[str, bytes]
    cut_first_response: set[str] = field(default_factory=set)
    honour_range: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                range_header = self.headers.get("Range")
                if range_header and server.honour_range:
                    start = int(range_header.removeprefix("bytes=").rstrip("-"))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path in server.cut_first_response:
                    server.cut_first_response.discard(self.path)
                    self.wfile.write(body[start:start + (len(body) - start) // 2])
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        serve = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        serve.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload() -> bytes:
    return random.Random(3).randbytes(300_000)


@pytest.fixture
def serve():
    servers = []

    def start(files: dict[str, bytes], **options) -> FakeServer:
        servers.append(FakeServer(files, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_download_resumes_a_broken_transfer(tmp_path, payload, serve):
    server = serve({"/f.bin": payload}, cut_first_response={"/f.bin"})
    destination = download_file(f"{server.url}/f.bin", tmp_path / "f.bin", retries=2, backoff_s=0,
                                show_progress=False)
    assert destination.read_bytes() == payload
    assert server.requests == [("/f.bin", None), ("/f.bin", f"bytes={len(payload) // 2}-")]
    assert not (tmp_path / "f.bin.part").exists()


def test_download_resumes_an_earlier_part_file(tmp_path, payload, serve):
    server = serve({"/f.bin": payload})
    (tmp_path / "f.bin.part").write_bytes(payload[:1000])
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", retries=0, show_progress=False)
    assert (tmp_path / "f.bin").read_bytes() == payload
    assert server.requests == [("/f.bin", "bytes=1000-")]


def test_download_finishes_a_complete_part_file(tmp_path, payload, serve):
    server = serve({"/f.bin": payload})
    (tmp_path / "f.bin.part").write_bytes(payload)
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", retries=0, show_progress=False)
    assert (tmp_path / "f.bin").read_bytes() == payload
    assert len(server.requests) == 1


def test_download_starts_over_when_the_server_ignores_range(tmp_path, payload, serve):
    server = serve({"/f.bin": payload}, honour_range=False)
    (tmp_path / "f.bin.part").write_bytes(b"x" * 1000)
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", retries=0, show_progress=False)
    assert (tmp_path / "f.bin").read_bytes() == payload


def test_download_does_not_retry_a_missing_file(tmp_path, serve):
    server = serve({})
    with pytest.raises(DownloadError, match="404"):
        download_file(f"{server.url}/missing.bin", tmp_path / "missing.bin", retries=3, backoff_s=0,
                      show_progress=False)
    assert len(server.requests) == 1
    assert not (tmp_path / "missing.bin").exists()


def loopback_settings(url: str) -> DownloadSettings:
    return DownloadSettings(benchmark_url=url + "/benchmark/{category}.{split}.csv.gz",
                            meta_url=url + "/meta/meta_{category}.jsonl.gz", retries=1, backoff_s=0,
                            show_progress=False)


def test_prepare_downloads_the_missing_files(tmp_path, world, serve):
    source = write_official_files(tmp_path / "source", world)
    files = {f"/benchmark/{path.name}": path.read_bytes() for path in source.glob(f"{CATEGORY}.*")}
    files[f"/meta/meta_{CATEGORY}.jsonl.gz"] = (source / f"meta_{CATEGORY}.jsonl.gz").read_bytes()
    server = serve(files)
    downloaded = prepare(CATEGORY, "Tiny", None, tmp_path / "out", download=True,
                         settings=loopback_settings(server.url))
    assert sorted(path.name for path in (tmp_path / "out" / "Tiny" / "raw").iterdir()) == sorted(
        path.name for path in source.iterdir())
    local = prepare(CATEGORY, "Tiny", source, tmp_path / "local", download=False)
    assert downloaded.inter_file.read_text() == local.inter_file.read_text()
    assert downloaded.item_file.read_text() == local.item_file.read_text()


def test_prepare_goes_on_without_the_optional_files(tmp_path, world, serve, caplog):
    source = write_official_files(tmp_path / "source", world, train=False, meta=False)
    server = serve({f"/benchmark/{path.name}": path.read_bytes() for path in source.iterdir()})
    with caplog.at_level(logging.WARNING):
        prepared = prepare(CATEGORY, "Tiny", tmp_path / "raw", tmp_path / "out", download=True,
                           settings=loopback_settings(server.url))
    assert prepared.n_users == len(world.sequences) and prepared.item_file is None
    assert "could not download optional" in caplog.text


def test_offline_stops_with_a_clear_message(tmp_path):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UserInputError) as error:
        prepare(CATEGORY, "Tiny", tmp_path / "raw", tmp_path / "out", download=True,
                settings=loopback_settings(f"http://127.0.0.1:{port}"))
    message = str(error.value)
    assert "download failed" in message and str(tmp_path / "raw") in message and "--raw_dir" in message
    for name in (f"{CATEGORY}.valid.csv.gz", f"{CATEGORY}.test.csv.gz"):
        assert name in message
    assert not (tmp_path / "out" / "Tiny" / "Tiny.inter").exists()


def test_a_new_category_is_prepared_from_the_config_alone(tmp_path, world):
    """A dataset name of the user's own, its official category given in the config (amazon2023_category)."""
    from recbole_llada.training import quick_start

    write_official_files(tmp_path / "data" / "Beauty2023" / "raw", world, category="All_Beauty")
    with pytest.raises(ValueError, match="amazon2023_category"):  # without it the name says nothing
        ensure_prepared("Beauty2023", tmp_path / "data", download=False)
    config = quick_start.build_config("SASRec", "Beauty2023", overrides={
        "data_path": str(tmp_path / "data"), "amazon2023_category": "All_Beauty",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}})
    quick_start.ensure_dataset_files(config)
    assert (tmp_path / "data" / "Beauty2023" / "Beauty2023.inter").is_file()
