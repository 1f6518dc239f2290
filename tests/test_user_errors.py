"""A new user's mistakes: each ends in one paragraph naming the problem and the fix, exit code 2, no traceback,
and before any data is loaded or any epoch runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from recbole_llada import config_check
from recbole_llada.cli.run import main
from recbole_llada.errors import UserInputError
from recbole_llada.training import quick_start

from conftest import TINY_DATASET, tiny_config_dict, write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("RECBOLE_LLADA_DEBUG", raising=False)


@pytest.fixture
def no_data_loading(monkeypatch):
    """Fails the test if RecBole starts loading a dataset: the mistake must be caught before."""
    def create_dataset(config):
        raise AssertionError("data was loaded before the mistake was reported")

    monkeypatch.setattr(quick_start, "create_dataset", create_dataset)


def user_error(capsys, *argv: str) -> str:
    """Run the CLI; assert it ends with exit code 2 and one paragraph, no traceback; return the paragraph."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert err.strip().count("\n") == 0  # one paragraph
    return err


def on_tiny(data_path: Path, *argv: str) -> list[str]:
    return [f"--dataset={TINY_DATASET}", f"--data_path={data_path}", "--device=cpu", "--use_gpu=False",
            "--epochs=1", *argv]


@pytest.mark.parametrize("override, expected", [
    ("--learning_rat=0.5", "Did you mean 'learning_rate'"),
    ("--num_beams=abc", "'num_beams' is 'abc'"),
    ("--num_beams=0", "'num_beams' is 0"),
    ("--epochs=abc", "'epochs' is 'abc'"),
    ("--dropout_prob=1.5", "<= 1"),
    ("--gen_order=sideways", "one of adaptive, left2right"),
    ("--compile_mode=fast", "'compile_mode' is 'fast'"),
    ("--constrained_decoding=yes", "true or false"),
    ("--sid_tokenizer=foo", "sid_tokenizer must be one of"),
    ("--sid_length=abc", "'sid_length' is 'abc'"),
    ("--sid_n_heads=2", "'sid_n_heads' (set in --key=value overrides) was renamed to sid_length"),
    ("--max_grad_norm=0.5", "was renamed to RecBole's clip_grad_norm"),
    ("--sid_codebook_size=1", "'sid_codebook_size' is 1"),
    ("--gen_steps=9", "gen_steps is 9"),
    ("--metrics=[Recal]", "RecBole rejected the configuration"),
    ("--item_scorer_backbone=missing.pth", "item_scorer is none"),
    ("--item_scorer_loss=residual", "one of scorer, fused"),
    ("--item_scorer_loss=fused", "item_scorer_loss: fused trains the item scorer on scorer + marginal scores"),
])
def test_bad_keys_and_values_stop_before_any_data_is_loaded(override, expected, tiny_data_path, capsys,
                                                             no_data_loading):
    assert expected in user_error(capsys, "--model=LLaDARec", *on_tiny(tiny_data_path, override))


def test_a_missing_item_scorer_backbone_is_named_before_any_data_is_loaded(tiny_data_path, capsys, no_data_loading):
    message = user_error(capsys, "--model=LLaDARec", *on_tiny(tiny_data_path, "--item_scorer=sid",
                                                               "--item_scorer_backbone=missing.pth"))
    assert "item_scorer_backbone 'missing.pth' does not exist" in message


def test_a_pca_wider_than_the_collaborative_vectors_is_refused_before_any_data_is_loaded(tiny_data_path, capsys,
                                                                                          no_data_loading):
    # sid_pca_dim defaults to 128, sid_cooc_dim to 64: the transition SVD's 64 axes cannot feed a 128-axis PCA.
    message = user_error(capsys, "--model=LLaDARec", *on_tiny(tiny_data_path, "--item_embedding=collaborative",
                                                               "--sid_collab_source=cooccurrence"))
    assert "sid_pca_dim is 128" in message and "sid_cooc_dim (64)" in message
    assert "set sid_pca_dim to at most 64 or 0 (no PCA)" in message


@pytest.mark.parametrize("values", [
    {"sid_collab_source": "cooccurrence", "sid_cooc_dim": 64, "sid_pca_dim": 64},  # as wide as the vectors
    {"sid_collab_source": "cooccurrence", "sid_cooc_dim": 64, "sid_pca_dim": 0},  # no PCA
    {"sid_collab_source": "sasrec+cooccurrence", "sid_collab_hidden_size": 128, "sid_cooc_dim": 64,
     "sid_pca_dim": 128},  # fused: 128 + 64 = 192 axes
    {"sid_collab_source": "sasrec", "sid_collab_hidden_size": 128, "sid_pca_dim": 128},
])
def test_a_pca_within_the_collaborative_vectors_is_accepted(values):
    config_check.check_semantic_id_config({"item_embedding": "collaborative", **values})


def test_the_pca_width_is_left_to_the_data_when_content_vectors_feed_the_sids():
    # Text or file vectors have a width known only once they are read; the PCA checks it then.
    config_check.check_semantic_id_config({"item_embedding": "text+collaborative", "sid_collab_source": "cooccurrence",
                                           "sid_cooc_dim": 16, "sid_pca_dim": 128})


def test_the_scientific_benchmark_config_passes_the_pca_check():
    values = config_check.load_user_config_file(REPO / "benchmarks" / "configs" / "LLaDARec-Scientific-h200.yaml")
    config_check.check_semantic_id_config(values)


def test_debug_shows_the_traceback(tiny_data_path, monkeypatch):
    with pytest.raises(UserInputError, match="learning_rat"):
        main(["--model=SASRec", "--debug", *on_tiny(tiny_data_path, "--learning_rat=0.5")])
    monkeypatch.setenv("RECBOLE_LLADA_DEBUG", "1")
    with pytest.raises(UserInputError, match="learning_rat"):
        main(["--model=SASRec", *on_tiny(tiny_data_path, "--learning_rat=0.5")])
    monkeypatch.setenv("RECBOLE_LLADA_DEBUG", "0")
    assert main(["--model=SASRec", *on_tiny(tiny_data_path, "--learning_rat=0.5")]) == 2


@pytest.mark.parametrize("name, suggestion", [("sasrec", "SASRec"), ("SASRecc", "SASRec"),
                                              ("lladarec", "LLaDARec"), ("gru4rec", "GRU4Rec")])
def test_a_model_name_in_the_wrong_case_gets_the_right_one(name, suggestion, capsys):
    err = user_error(capsys, f"--model={name}")
    assert f"Did you mean {suggestion!r}?" in err
    assert "sasrec," not in err  # the list shows class names, which work, not file names


def test_keys_of_recbole_and_the_plugin_are_all_known():
    known = config_check.known_keys()
    assert {"learning_rate", "MAX_ITEM_LIST_LENGTH", "load_col", "eval_args", "inner_size", "num_beams",
            "sid_tokenizer", "item_embedding", "amazon2023_category", "gpu_id"} <= known
    assert "learning_rat" not in known


def test_value_types_come_from_the_yaml_defaults():
    types = config_check.default_types("LLaDARec")
    assert types["num_beams"] is int and types["temperature"] is float and types["constrained_decoding"] is bool
    assert types["epochs"] is int and types["learning_rate"] is float


@pytest.mark.parametrize("text, expected", [
    ("epochs: 3\nlearning_rate: [0.1\n", "is not valid YAML at line 3"),
    ("- epochs: 3\n", "holds a list"),
    ("", "holds nothing"),
    ("epochs: 3\nlearning_rat: 0.1\n", "Unknown config key 'learning_rat' (set in config file"),
    ("num_beams: many\n", "'num_beams' is 'many' (set in config file"),
])
def test_a_broken_config_file_is_named_with_its_problem(text, expected, tiny_data_path, tmp_path, capsys,
                                                        no_data_loading):
    config_file = tmp_path / "mine.yaml"
    config_file.write_text(text)
    err = user_error(capsys, "--model=LLaDARec", f"--config_files={config_file}", *on_tiny(tiny_data_path))
    assert expected in err and "mine.yaml" in err


def test_a_data_path_given_for_ml_100k_is_used_not_ignored(tmp_path, capsys):
    err = user_error(capsys, "--model=SASRec", "--dataset=ml-100k", f"--data_path={tmp_path}/nonexistent/dir")
    assert "nonexistent/dir/ml-100k" in err and "leave out --data_path" in err
    write_tiny_dataset(tmp_path / "copy", name="ml-100k")
    config = quick_start.build_config("SASRec", "ml-100k", overrides={"data_path": str(tmp_path / "copy")})
    assert Path(config["data_path"]) == tmp_path / "copy" / "ml-100k"


HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"


@pytest.mark.parametrize("inter, expected", [
    ("", "is empty"),
    (HEADER, "has a header but no interactions"),
    ("user_id\titem_id\nu1\ti1\n", "header cell 'user_id' must be written name:type"),
    (HEADER + "u1\ti1\t1\nu1\ti2\nu1\ti3\t3\n", "line 3: 2 fields, but the header has 3"),
    (HEADER + "u1\ti1\tyesterday\n", "line 2: timestamp is 'yesterday'"),
    ("user_id:token\tmovie:token\ttimestamp:float\nu1\ti1\t1\n", "has no 'item_id' column"),
    (HEADER + "u1\ti1\t1\nu1\ti2\t2\nu2\ti1\t1\nu2\ti3\t2\n", "fewer than 3 interactions"),
])
def test_a_broken_inter_file_is_explained_before_recbole_reads_it(inter, expected, tmp_path, capsys,
                                                                  no_data_loading):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "mine.inter").write_text(inter)
    err = user_error(capsys, "--model=SASRec", "--dataset=mine", f"--data_path={tmp_path}")
    assert expected in err and "mine.inter" in err


def test_filters_that_leave_no_data_or_an_empty_split_are_explained(tmp_path):
    folder = tmp_path / "data" / "mixed"
    folder.mkdir(parents=True)
    rows = [f"u{user}\ti{step}\t{step}" for user in range(1, 6) for step in range(1, 3 if user < 5 else 6)]
    (folder / "mixed.inter").write_text(HEADER + "\n".join(rows) + "\n")
    overrides = tiny_config_dict(tmp_path / "data", tmp_path, user_inter_num_interval="[100,inf)")
    with pytest.raises(UserInputError, match="No interactions of mixed are left after RecBole's filters"):
        quick_start.run("SASRec", "mixed", overrides=overrides)
    overrides["user_inter_num_interval"] = "[0,2]"  # only the users with two interactions stay
    with pytest.raises(UserInputError, match="split of mixed is empty"):
        quick_start.run("SASRec", "mixed", overrides=overrides)


def test_the_timestamp_is_loaded_when_the_file_has_one(tiny_data_path, tmp_path):
    overrides = tiny_config_dict(tiny_data_path, tmp_path)
    del overrides["load_col"]  # RecBole's default loads user and item only
    config = quick_start.build_config("SASRec", TINY_DATASET, overrides=overrides)
    assert "timestamp" not in config["load_col"]["inter"]
    experiment = quick_start.prepare(config)
    assert config["load_col"]["inter"] == ["user_id", "item_id", "timestamp"]
    assert "timestamp" in experiment.train_data.dataset.inter_feat.columns


@pytest.mark.parametrize("item_values", ["", "12.5"])
def test_items_without_any_text_are_refused_before_the_tokenizer_trains(item_values, tiny_data_path, tmp_path):
    item_file = tiny_data_path / TINY_DATASET / f"{TINY_DATASET}.item"
    rows = [f"i{item}\t{item_values}\t{item_values}" for item in range(1, 31)]
    item_file.write_text("item_id:token\ttitle:token_seq\tprice:float\n" + "\n".join(rows) + "\n")
    overrides = tiny_config_dict(tiny_data_path, tmp_path, sid_length=2, sid_codebook_size=8, gen_steps=2,
                                 sid_cache_dir=str(tmp_path / "sid_cache"))
    with pytest.raises(UserInputError, match="has any text"):
        quick_start.run("LLaDARec", TINY_DATASET, overrides=overrides)
    assert not (tmp_path / "sid_cache").exists()


def test_a_paper_sized_llada_on_a_toy_dataset_says_how_to_shrink_it(tiny_data_path, caplog):
    config = quick_start.build_config("LLaDARec", TINY_DATASET, overrides={"data_path": str(tiny_data_path)})
    quick_start.warn_if_oversized(config, n_items=40)
    assert "40 items, fewer than the 256 codes" in caplog.text and "LLaDARec-ml-100k.yaml" in caplog.text
    caplog.clear()
    quick_start.warn_if_oversized(config, n_items=1682)
    assert caplog.text == ""


def test_progress_is_shown_by_default():
    config = quick_start.build_config("LLaDARec", "ml-100k")
    assert config["show_progress"] is True


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_clean_keeps_the_results(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    for folder in ("results", "saved", "log", "log_tensorboard"):
        (tmp_path / folder).mkdir()
    subprocess.run(["make", "clean", "VENV=.venv-of-this-test"], cwd=tmp_path, check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile", "results"]
