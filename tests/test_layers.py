"""Attention masks against brute-force double loops; the encoder never reads padding; RMSNorm against LLaDA's
formula; autocast's shared cast against per-layer casts."""

import pytest
import torch

from recbole_llada.model.layers import (ATTENTION_KINDS, RMSNorm, SwiGLU, TransformerEncoder,
                                        build_attention_mask, cast_once_for_autocast)

N_DIGITS = 3


def _brute_force_mask(kind: str, valid: torch.Tensor, sid_length: int) -> torch.Tensor:
    batch_size, seq_len = valid.shape
    mask = torch.zeros(batch_size, 1, seq_len, seq_len, dtype=torch.bool)
    for b in range(batch_size):
        for i in range(seq_len):
            for j in range(seq_len):
                item_i, item_j = i // sid_length, j // sid_length
                if not valid[b, i]:
                    allowed = i == j
                elif not valid[b, j]:
                    allowed = False
                elif kind == "bidirectional":
                    allowed = True
                elif kind == "causal":
                    allowed = j <= i
                elif kind == "inter_item_causal":
                    allowed = item_j <= item_i
                else:
                    allowed = item_j != item_i or j <= i
                mask[b, 0, i, j] = allowed
    return mask


def _left_padded_valid() -> torch.Tensor:
    n_items = 4
    n_valid_items = torch.tensor([4, 2, 1])
    item = torch.arange(n_items * N_DIGITS) // N_DIGITS
    return item[None, :] >= (n_items - n_valid_items)[:, None]


def _full_mask(mask: torch.Tensor) -> torch.Tensor:
    """A key-padding mask [B, 1, 1, N] broadcast to [B, 1, N, N]; a dense mask unchanged."""
    return mask.expand(-1, -1, mask.shape[-1], -1)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_dense_mask_matches_brute_force(kind):
    valid = _left_padded_valid()
    scattered = torch.rand(2, 12, generator=torch.Generator().manual_seed(0)) < 0.7
    for pattern in (valid, scattered):
        assert torch.equal(build_attention_mask(kind, pattern, N_DIGITS, dense=True),
                           _brute_force_mask(kind, pattern, N_DIGITS))
        if kind != "bidirectional":
            assert torch.equal(build_attention_mask(kind, pattern, N_DIGITS),
                               _brute_force_mask(kind, pattern, N_DIGITS))


def test_bidirectional_mask_is_the_key_padding_mask():
    """Every query (padding ones included) attends exactly the valid keys; an all-padding row attends all."""
    valid = torch.cat([_left_padded_valid(), torch.zeros(1, 12, dtype=torch.bool)])
    mask = build_attention_mask("bidirectional", valid, N_DIGITS)
    assert mask.shape == (4, 1, 1, 12)
    for b in range(4):
        for j in range(12):
            assert mask[b, 0, 0, j] == (valid[b, j] or not valid[b].any())
    dense = build_attention_mask("bidirectional", valid, N_DIGITS, dense=True)
    valid_query = valid[:, None, :, None].expand(-1, -1, -1, 12)
    assert torch.equal(_full_mask(mask)[valid_query], dense[valid_query])


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_padding_keys_are_never_attended_by_valid_queries(kind):
    valid = _left_padded_valid()
    mask = _full_mask(build_attention_mask(kind, valid, N_DIGITS))[:, 0]
    valid_query_to_padding_key = valid[:, :, None] & ~valid[:, None, :]
    assert not mask[valid_query_to_padding_key].any()
    assert torch.all(mask.sum(dim=-1) >= 1)  # every row has a key: no 0/0 softmax


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(ValueError, match="bidirectional"):
        build_attention_mask("sideways", torch.ones(1, 3, dtype=torch.bool), N_DIGITS)


def _encoder(dropout: float = 0.0) -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(n_layers=2, d_model=8, n_heads=2, mlp_ratio=2, dropout=dropout)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_encoder_output_at_valid_positions_ignores_padding_embeddings(kind):
    encoder = _encoder().eval()
    valid = _left_padded_valid()
    mask = build_attention_mask(kind, valid, N_DIGITS)
    x = torch.randn(3, 12, 8)
    x_other = torch.where(valid[:, :, None], x, 100 * torch.randn(3, 12, 8))
    out, out_other = encoder(x, mask), encoder(x_other, mask)
    assert not torch.isnan(out).any() and not torch.isnan(out_other).any()
    assert torch.allclose(out[valid], out_other[valid], atol=1e-5)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_encoder_respects_each_kind_functionally(kind):
    """Changing a valid token changes exactly the outputs of the queries allowed to see it."""
    encoder = _encoder().eval()
    valid = torch.ones(1, 12, dtype=torch.bool)
    mask = build_attention_mask(kind, valid, N_DIGITS)
    x = torch.randn(1, 12, 8)
    changed = 4  # the middle token of item 1
    x_other = x.clone()
    x_other[0, changed] += 3.0
    differs = (encoder(x, mask) - encoder(x_other, mask)).abs().amax(dim=-1)[0] > 1e-6
    # With two layers, information reaches i if i sees some k that sees `changed` (or i == changed).
    reach = _full_mask(mask)[0, 0].float()
    two_hop = (reach @ reach)[:, changed] > 0
    assert torch.equal(differs, two_hop)


@pytest.mark.parametrize("dense", [False, True])
def test_encoder_has_no_nan_in_training_mode_and_gradients(dense):
    encoder = _encoder(dropout=0.2).train()
    valid = _left_padded_valid()
    x = torch.randn(3, 12, 8, requires_grad=True)
    out = encoder(x, build_attention_mask("bidirectional", valid, N_DIGITS, dense=dense))
    out[valid].sum().backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters())
    assert torch.all(x.grad[~valid] == 0)


def test_key_padding_mask_gives_the_dense_mask_outputs_and_gradients_at_valid_positions():
    encoder = _encoder().eval()
    valid = _left_padded_valid()
    x = torch.randn(3, 12, 8)
    outputs, gradients = [], []
    for dense in (False, True):
        x_leaf = x.clone().requires_grad_()
        out = encoder(x_leaf, build_attention_mask("bidirectional", valid, N_DIGITS, dense=dense))
        out[valid].square().sum().backward()
        outputs.append(out[valid])
        gradients.append([x_leaf.grad] + [p.grad.clone() for p in encoder.parameters()])
        encoder.zero_grad()
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    for key_padding_grad, dense_grad in zip(*gradients):
        assert torch.allclose(key_padding_grad, dense_grad, atol=1e-5)


def test_swiglu_uses_the_full_mlp_ratio_hidden_size_and_rmsnorm_formula():
    ffn = SwiGLU(8, 4 * 8)
    assert ffn.gate.out_features == ffn.up.out_features == ffn.down.in_features == 32
    assert all(linear.bias is None for linear in (ffn.gate, ffn.up, ffn.down))
    x = torch.randn(5, 8)
    expected = ffn.down(torch.nn.functional.silu(ffn.gate(x)) * ffn.up(x))
    assert torch.allclose(ffn(x), expected)
    norm = RMSNorm(8)
    with torch.no_grad():
        norm.weight.uniform_()
    rms = x.pow(2).mean(dim=-1, keepdim=True).add(norm.eps).sqrt()
    assert torch.allclose(norm(x), norm.weight * x / rms, atol=1e-6)


def test_encoder_has_no_biases():
    encoder = _encoder()
    assert not any(name.endswith("bias") for name, _ in encoder.named_parameters())


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_encoder_computes_only_the_last_positions_exactly(kind):
    """n_outputs skips the last layer's other queries: same values and gradients as slicing the full output."""
    encoder = _encoder()
    valid = _left_padded_valid()
    mask = build_attention_mask(kind, valid, N_DIGITS)
    x = torch.randn(3, 12, 8)
    results = []
    for n_outputs in (None, N_DIGITS):
        x_leaf = x.clone().requires_grad_()
        out = encoder(x_leaf, mask, n_outputs)
        out = out[:, -N_DIGITS:] if n_outputs is None else out
        out.square().sum().backward()
        results.append([out.detach(), x_leaf.grad] + [p.grad.clone() for p in encoder.parameters()])
        encoder.zero_grad()
    assert results[1][0].shape == (3, N_DIGITS, 8)
    for last_only, full in zip(*results):
        assert torch.allclose(last_only, full, atol=1e-5)


def _llada_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LLaDA's RMSNorm written out: float32 normalisation, cast back to x's dtype, then the weight."""
    x_float = x.float()
    normed = x_float * torch.rsqrt(x_float.pow(2).mean(dim=-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)


def _rms_norm_and_input(d_model: int, scale: float, dtype: torch.dtype, device: str) -> tuple[RMSNorm, torch.Tensor]:
    norm = RMSNorm(d_model).to(device)
    with torch.no_grad():
        norm.weight.normal_()
    return norm, (scale * torch.randn(6, 21, d_model, device=device)).to(dtype)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d_model", [8, 100, 256])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 50.0])
def test_rms_norm_is_lladas_formula_in_float32(device, d_model, scale):
    """Bit for bit on CPU, forward and gradients (training and decoding results must not move); CUDA's fused kernels
    reduce in their own order, so there they agree to float32 rounding, relative to each tensor's scale."""
    torch.manual_seed(0)
    norm, x = _rms_norm_and_input(d_model, scale, torch.float32, device)
    outputs, gradients = [], []
    for function in (norm, lambda leaf: _llada_rms_norm(leaf, norm.weight, norm.eps)):
        leaf = x.clone().requires_grad_()
        out = function(leaf)
        outputs.append(out)
        gradients.append(torch.autograd.grad(out.square().sum(), (leaf, norm.weight)))
    assert outputs[0].dtype == torch.float32
    for ours, lladas in zip([outputs[0], *gradients[0]], [outputs[1], *gradients[1]]):
        if device == "cpu":
            assert torch.equal(ours, lladas)
        else:
            torch.testing.assert_close(ours, lladas, rtol=1e-5, atol=1e-5 * lladas.abs().max().item())


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")  # torch: no fused kernel for it
@pytest.mark.parametrize("d_model", [8, 100, 256])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 50.0])
def test_rms_norm_of_bf16_is_the_exact_value_rounded_once(d_model, scale):
    """A bf16 input is normalised in float32 and rounded to bf16 once, after the weight: within one bf16 rounding
    (2^-8 relative) of the exact value. LLaDA's order (round, then the float32 weight) is as close, from the other
    side, so the two stay within two roundings of each other."""
    torch.manual_seed(0)
    norm, x = _rms_norm_and_input(d_model, scale, torch.bfloat16, "cpu")
    with torch.no_grad():
        ours = norm(x)
        exact = _llada_rms_norm(x.double(), norm.weight.double(), norm.eps)
        lladas = _llada_rms_norm(x, norm.weight, norm.eps)
    assert ours.dtype == torch.bfloat16
    one_rounding = 2 ** -8 + 1e-6  # bf16's unit roundoff, plus float32's error in computing the value
    torch.testing.assert_close(ours.double(), exact, rtol=one_rounding, atol=0)
    torch.testing.assert_close(lladas.double(), exact, rtol=one_rounding, atol=0)


def test_rms_norm_keeps_its_state_dict():
    """Checkpoints of the hand-written RMSNorm load unchanged."""
    norm = RMSNorm(8, eps=1e-6)
    assert list(norm.state_dict()) == ["weight"]
    assert norm.eps == 1e-6


def test_cast_once_for_autocast_casts_only_inputs_without_gradients_under_autocast():
    x = torch.randn(2, 3)
    assert cast_once_for_autocast(x) is x
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(cast_once_for_autocast(x), x.to(torch.bfloat16))
        leaf = x.clone().requires_grad_()
        assert cast_once_for_autocast(leaf) is leaf


@pytest.mark.parametrize("n_outputs", [None, N_DIGITS])
def test_encoder_under_autocast_gives_the_same_values_with_one_shared_cast(n_outputs):
    """Without gradients each norm's output is cast once for all the Linear layers that read it; with gradients
    (per-layer casts, as autocast does) the encoder computes exactly the same values."""
    encoder = _encoder().eval()
    mask = build_attention_mask("bidirectional", _left_padded_valid(), N_DIGITS)
    x = torch.randn(3, 12, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            shared_casts = encoder(x, mask, n_outputs)
        per_layer_casts = encoder(x.clone().requires_grad_(), mask, n_outputs)
    assert torch.equal(shared_casts, per_layer_casts.detach())
