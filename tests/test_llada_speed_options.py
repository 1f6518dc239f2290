"""LLaDARec's speed paths give the plain paths' results: the key-padding attention mask and `compile`."""

from __future__ import annotations

import pytest
import torch
from recbole.utils import init_seed

from recbole_llada.model.llada_rec import PAD_TOKEN, LLaDARec

from conftest import prepare_tiny_llada
from test_llada_rec import first_batch, llada_config_dict


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    return prepare_tiny_llada(llada_config_dict(tmp_path_factory.mktemp("llada_speed")))


def new_model(tiny_world) -> LLaDARec:
    config, train, _, _ = tiny_world
    init_seed(config["seed"], config["reproducibility"])
    return LLaDARec(config, train._dataset)


def loss_and_gradients(model: LLaDARec, batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    torch.manual_seed(0)  # the same corruptions for every model
    loss = model.calculate_loss(batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_key_padding_mask_trains_and_decodes_as_the_dense_mask(tiny_world):
    _, train, _, test = tiny_world
    batch = first_batch(train)
    model = new_model(tiny_world)
    history = model.history_tokens(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    assert (history == PAD_TOKEN).any(), "the batch must contain padding for this test to mean anything"

    model.dense_attention_mask = True
    dense_loss, dense_gradients = loss_and_gradients(model, batch)
    model.dense_attention_mask = False
    loss, gradients = loss_and_gradients(model, batch)
    assert torch.allclose(loss, dense_loss, atol=1e-5)
    for gradient, dense_gradient in zip(gradients, dense_gradients):
        assert torch.isfinite(gradient).all()
        assert torch.allclose(gradient, dense_gradient, atol=1e-5)

    model.eval()
    interaction = first_batch(test)[0]
    with torch.no_grad():
        scores = model.full_sort_predict(interaction)
        model.dense_attention_mask = True
        dense_scores = model.full_sort_predict(interaction)
    top = max(model.max_topk, 10)
    assert torch.equal(scores.topk(top).indices, dense_scores.topk(top).indices)


def test_compile_key_compiles_the_forward_in_place(tiny_world, monkeypatch):
    """`compile: True` routes every model call through torch.compile(dynamic=False); names and results stay."""
    graphs, options = [], []
    real_compile = torch.compile

    def record_graph(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward  # run the captured graph eagerly: no compiler needed on CPU

    def compile_recorded(function, **kwargs):
        options.append(kwargs)
        return real_compile(function, backend=record_graph, **kwargs)

    monkeypatch.setattr(torch, "compile", compile_recorded)
    config, train, _, test = tiny_world
    plain = new_model(tiny_world)
    config["compile"] = True
    try:
        compiled = new_model(tiny_world)
    finally:
        config["compile"] = False
    assert options == [{"dynamic": False, "mode": "default"}]
    assert list(compiled.state_dict()) == list(plain.state_dict())

    batch = first_batch(train)
    loss, gradients = loss_and_gradients(compiled, batch)
    plain_loss, plain_gradients = loss_and_gradients(plain, batch)
    assert graphs, "the compiled forward was never called"
    assert torch.allclose(loss, plain_loss, atol=1e-5)
    for gradient, plain_gradient in zip(gradients, plain_gradients):
        assert torch.allclose(gradient, plain_gradient, atol=1e-5)

    # One decoding forward (full_sort_predict would trace a graph per beam count and chunk size).
    compiled.eval(), plain.eval()
    interaction = first_batch(test)[0]
    history = plain.history_tokens(interaction[plain.ITEM_SEQ], interaction[plain.ITEM_SEQ_LEN])
    partial = torch.full((history.shape[0], 3, plain.sid_length), -1)
    partial[:, 1:, 0] = torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.allclose(compiled.code_log_probs(history, partial), plain.code_log_probs(history, partial),
                              atol=1e-5)


@pytest.mark.parametrize("mode, cuda_graphs", [("reduce-overhead", True), ("max-autotune", True),
                                               ("max-autotune-no-cudagraphs", False)])
def test_compile_mode_reaches_torch_compile(tiny_world, monkeypatch, mode, cuda_graphs):
    """`compile_mode` is torch.compile's mode; under CUDA graphs every forward marks a new CUDA-graph step."""
    options, marks = [], []
    monkeypatch.setattr(torch, "compile", lambda function, **kwargs: options.append(kwargs) or function)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append("step"))
    config, train, _, _ = tiny_world
    config["compile"], config["compile_mode"] = True, mode
    try:
        model = new_model(tiny_world)
    finally:
        config["compile"], config["compile_mode"] = False, "default"
    assert options == [{"dynamic": False, "mode": mode}]
    assert model.uses_cuda_graphs is cuda_graphs
    model.calculate_loss(first_batch(train)).backward()
    assert marks == (["step"] if cuda_graphs else [])


def test_a_bad_compile_mode_is_refused_only_when_compiling(tiny_world):
    config, _, _, _ = tiny_world
    config["compile_mode"] = "fastest"
    try:
        assert not new_model(tiny_world).uses_cuda_graphs  # compile: False never reads compile_mode
        config["compile"] = True
        with pytest.raises(ValueError, match="compile_mode must be one of .*'fastest'"):
            new_model(tiny_world)
    finally:
        config["compile"], config["compile_mode"] = False, "default"
