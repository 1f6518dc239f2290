"""FMLP-Rec: the filter against an explicit circular convolution, padding isolation, and training on the
tiny ring world through RecBole's own data pipeline, trainer and quick start."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_trainer, init_seed

from conftest import tiny_config_dict, write_tiny_dataset
from recbole_llada.model.fmlp_rec import FMLPRec, frequency_filter
from recbole_llada.model.layers import left_align


def circular_convolution_by_hand(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [L, H] convolved circularly with the real kernel whose one-sided spectrum is weight [L//2+1, H]."""
    seq_len, hidden = x.shape
    kernel = torch.zeros(seq_len, hidden, dtype=torch.float64)
    for n in range(seq_len):
        for m in range(seq_len):
            # Full spectrum of a real kernel: Hermitian extension of the one-sided one; the imaginary
            # parts at m = 0 and m = L/2 are not representable and drop out.
            w = weight[m] if m <= seq_len // 2 else weight[seq_len - m].conj()
            if m == 0 or 2 * m == seq_len:
                w = w.real.to(torch.complex128)
            kernel[n] += (w * complex(math.cos(2 * math.pi * m * n / seq_len),
                                      math.sin(2 * math.pi * m * n / seq_len))).real / seq_len
    out = torch.zeros(seq_len, hidden, dtype=torch.float64)
    for t in range(seq_len):
        for s in range(seq_len):
            out[t] += kernel[(t - s) % seq_len] * x[s]
    return out


@pytest.mark.parametrize("seq_len", [5, 6])
def test_frequency_filter_is_a_circular_convolution(seq_len):
    gen = torch.Generator().manual_seed(seq_len)
    x = torch.randn(2, seq_len, 3, dtype=torch.float64, generator=gen)
    weight = torch.randn(seq_len // 2 + 1, 3, dtype=torch.complex128, generator=gen)
    out = frequency_filter(x, weight)
    for b in range(2):
        assert torch.allclose(out[b], circular_convolution_by_hand(x[b], weight), atol=1e-10)


def test_frequency_filter_rejects_a_weight_for_another_length():
    with pytest.raises(ValueError, match="complex weight"):
        frequency_filter(torch.randn(1, 6, 3), torch.randn(3, 3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="complex weight"):
        frequency_filter(torch.randn(1, 6, 3), torch.randn(4, 3))


def test_left_align_moves_each_sequence_to_the_end():
    item_seq = torch.tensor([[4, 7, 0, 0, 0], [1, 2, 3, 9, 9], [5, 6, 7, 8, 2]])
    lengths = torch.tensor([2, 3, 5])
    aligned, valid = left_align(item_seq, lengths)
    for row, n in enumerate(lengths.tolist()):
        expected = [0] * (5 - n) + item_seq[row, :n].tolist()
        assert aligned[row].tolist() == expected
        assert valid[row].tolist() == [False] * (5 - n) + [True] * n
    for bad in ([0, 3, 5], [2, 3, 6]):
        with pytest.raises(ValueError, match="item_seq_len"):
            left_align(item_seq, torch.tensor(bad))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fmlp")
    write_tiny_dataset(root / "data")
    return root


def prepare(root: Path, **overrides):
    config = Config(model="FMLPRec", dataset="tiny",
                    config_dict=tiny_config_dict(root / "data", root, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, train, valid, test


def test_defaults_come_from_the_model_yaml(tiny_root):
    config = Config(model="FMLPRec", dataset="tiny", config_dict={"data_path": str(tiny_root / "data"),
                                                                  "MAX_ITEM_LIST_LENGTH": 7})
    assert (config["n_layers"], config["hidden_size"], config["inner_size"]) == (2, 64, 256)
    assert (config["hidden_dropout_prob"], config["hidden_act"], config["loss_type"]) == (0.5, "gelu", "CE")
    model = FMLPRec(config, create_dataset(config))
    assert len(model.blocks) == 2
    assert model.blocks[0].filter.weight.shape == (7 // 2 + 1, 64, 2)


def test_rejects_pairwise_losses(tiny_root):
    config, train, _, _ = prepare(tiny_root, loss_type="BPR")
    with pytest.raises(ValueError, match="loss_type"):
        FMLPRec(config, train.dataset)


def test_output_shapes(tiny_root):
    config, train, _, test = prepare(tiny_root)
    model = FMLPRec(config, train.dataset).eval()
    interaction = next(iter(test))[0]
    batch = len(interaction)
    seq_output = model(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
    assert seq_output.shape == (batch, config["hidden_size"])
    assert model.full_sort_predict(interaction).shape == (batch, train.dataset.item_num)
    assert model.predict(interaction).shape == (batch,)
    assert torch.isfinite(model.calculate_loss(interaction))


def test_padding_does_not_leak_into_valid_positions(tiny_root):
    config, train, _, _ = prepare(tiny_root)
    model = FMLPRec(config, train.dataset).eval()
    seq_len, n_items = config["MAX_ITEM_LIST_LENGTH"], train.dataset.item_num
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([1, 3, seq_len])
    items = torch.randint(1, n_items, (3, seq_len), generator=gen)
    padded = torch.arange(seq_len)[None, :] >= lengths[:, None]
    right_padded = items.masked_fill(padded, 0)
    with torch.no_grad():
        reference = model(right_padded, lengths)
        assert torch.allclose(model(items, lengths), reference, atol=1e-6)  # garbage ids beyond the length
        model.item_embedding.weight[0] = torch.randn(config["hidden_size"], generator=gen) * 10
        assert torch.allclose(model(right_padded, lengths), reference, atol=1e-6)
        changed_last_item = right_padded.clone()
        changed_last_item[0, 0] = changed_last_item[0, 0] % (n_items - 1) + 1
        assert not torch.allclose(model(changed_last_item, lengths), reference, atol=1e-3)

        # Deeper: no hidden state at a padding position reaches a valid output through any block.
        valid = ~padded.flip(1)
        hidden = torch.randn(3, seq_len, config["hidden_size"], generator=gen)
        garbage = hidden + torch.randn(hidden.shape, generator=gen) * 5 * (~valid)[..., None]
        assert torch.allclose(model.encode(garbage, valid)[valid], model.encode(hidden, valid)[valid],
                              atol=1e-5)


def random_scores_recall(config, train, test) -> float:
    class RandomScores(FMLPRec):
        def full_sort_predict(self, interaction):
            return torch.rand(len(interaction), self.n_items)

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, RandomScores(config, train.dataset))
    return trainer.evaluate(test, load_best_model=False, show_progress=False)["recall@10"]


def test_training_lowers_the_loss_and_beats_random_ranking(tiny_root):
    config, train, _, test = prepare(tiny_root, learning_rate=0.01)
    model = FMLPRec(config, train.dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    losses = [trainer._train_epoch(train, epoch) for epoch in range(10)]
    assert losses[-1] < 0.85 * losses[0]
    recall = trainer.evaluate(test, load_best_model=False, show_progress=False)["recall@10"]
    baseline = random_scores_recall(config, train, test)
    assert recall >= 0.9 and recall >= baseline + 0.3


def test_run_recbole_end_to_end(tiny_root, tmp_path):
    from recbole.quick_start import run_recbole

    result = run_recbole(model="FMLPRec", dataset="tiny",
                         config_dict=tiny_config_dict(tiny_root / "data", tmp_path, epochs=2))
    assert 0.0 <= result["test_result"]["recall@10"] <= 1.0
    assert list((tmp_path / "saved").glob("FMLPRec-*.pth"))
