"""Tests of GMNM in host architectures: convolutions, attention, LSTMs and PINNs."""

import copy
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_gmnm.nn import (
    GMNM,
    GMNMLSTM,
    GMNMMLP,
    GaussianKernelAttention,
    GMNMConv2d,
    GMNMConvNet,
    GMNMFeedForward,
    GMNMLSTMCell,
    GMNMTransformerBlock,
)
from sklearn_gmnm.nn import functional as F
from sklearn_gmnm.nn.pinn import fit_pinn, gradient, laplacian

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)


def state_dict_round_trip(module, *inputs):
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    other = copy.deepcopy(module)
    for p in other.parameters():
        p.data.zero_()
    other.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(other(*inputs), module(*inputs))


# --------------------------------------------------------------------------- GMNMConv2d


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 3, "padding": 1},
        {"kernel_size": (3, 2), "stride": 2},
        {"kernel_size": 3, "dilation": 2, "padding": 2, "explicit_centers": False},
    ],
)
def test_conv_is_the_gmnm_of_every_patch(kwargs):
    torch.manual_seed(0)
    conv = GMNMConv2d(3, 4, n_components=5, n_projections=2, **kwargs).double()
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    out = conv(x)  # (N, C_out, H', W')
    g = conv.gaussians()
    per_patch = F.gmnm_reference(
        conv.patches(x), g["projections"], g["centers"], conv.mixture_weight, conv.bias
    )  # (N * H' * W', C_out)
    n, c_out, height, width = out.shape
    expected = per_patch.view(n, height, width, c_out).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected)
    responses = GMNM.basis(conv, conv.patches(x))  # (N * H' * W', m)
    torch.testing.assert_close(
        conv.basis(x), responses.view(n, height, width, -1).permute(0, 3, 1, 2)
    )


def test_conv_gradcheck():
    torch.manual_seed(0)
    conv = GMNMConv2d(2, 3, 3, n_components=4, padding=1).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    params = (conv.weight, conv.centers, conv.mixture_weight, conv.bias)

    def f(x, weight, centers, mixture_weight, bias):
        offset = F.gaussian_offsets(weight, centers, conv.n_projections)
        return F.gmnm_conv2d(
            x,
            weight.view(-1, 2, 3, 3),
            offset,
            mixture_weight,
            bias,
            n_projections=conv.n_projections,
            padding=1,
        )

    assert torch.autograd.gradcheck(f, (x, *params))


def test_conv_reset_state_dict_dtype_and_errors():
    torch.manual_seed(1)
    a = GMNMConv2d(2, 3, 3)
    torch.manual_seed(1)
    b = GMNMConv2d(2, 3, 3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    x = torch.randn(2, 2, 5, 5)
    state_dict_round_trip(a, x)
    assert a.double()(x.double()).dtype == torch.float64
    assert "kernel_size=(3, 3)" in repr(a)
    with pytest.raises(ValueError, match="in_channels=2"):
        a.double()(torch.randn(2, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="kernel_size"):
        GMNMConv2d(2, 3, (3, 3, 3))
    with pytest.raises(ValueError, match="stride"):
        GMNMConv2d(2, 3, 3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        GMNMConv2d(2, 3, 3, padding="same")
    # numpy integers (from a hyperparameter grid) are integers
    c = GMNMConv2d(np.int64(2), np.int64(3), np.int64(3), padding=np.int64(1))
    assert c.kernel_size == (3, 3) and type(c.kernel_size[0]) is int
    assert c(x).shape == (2, 3, 5, 5)


def test_conv_init_from_data_puts_centres_on_patches():
    images = torch.rand(20, 1, 6, 6) * 5 + 10  # pixel values in [10, 15]
    conv = GMNMConv2d(1, 2, 3, n_components=8).init_from_data(images, random_state=0)
    centers = conv.gaussians()["centers"]
    assert ((centers >= 10) & (centers <= 15)).all()


@pytest.mark.parametrize("placement", ["conv", "head", "both", None])
def test_conv_net_placements(placement):
    net = GMNMConvNet(1, 10, image_size=(8, 8), placement=placement, n_components=8)
    assert net(torch.randn(4, 1, 8, 8)).shape == (4, 10)
    kinds = {type(m) for m in net.modules()}
    assert (GMNMConv2d in kinds) == (placement in ("conv", "both"))
    assert (GMNM in kinds) == (placement in ("head", "both"))
    assert (nn.Conv2d in kinds) == (placement in ("head", None))


def test_conv_net_odd_image_size_and_bad_placement():
    net = GMNMConvNet(3, 2, image_size=(7, 5), channels=(4, 4, 4))
    assert net(torch.randn(2, 3, 7, 5)).shape == (2, 2)
    with pytest.raises(ValueError, match="placement"):
        GMNMConvNet(1, 10, placement="everywhere")
    # the head's width follows from image_size: other images are refused by name
    with pytest.raises(ValueError, match=r"image_size=\(7, 5\)"):
        net(torch.randn(2, 3, 8, 8))


def test_conv_net_learns_a_separable_task():
    torch.manual_seed(0)
    x = torch.randn(128, 1, 8, 8)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    net = GMNMConvNet(1, 2, placement="both", n_components=8, channels=(4,))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
    net.eval()
    assert (net(x).argmax(1) == y).float().mean() > 0.9


# ------------------------------------------------------------------------- attention


def explicit_gaussian_attention(q, k, v, temperature, mask=None):
    scores = -((q.unsqueeze(-2) - k.unsqueeze(-3)) ** 2).sum(-1) / (2 * temperature)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, -1) @ v


@pytest.mark.parametrize("masked", [False, True])
def test_gaussian_kernel_attention_matches_the_explicit_kernel(masked):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64) for _ in range(3))
    temperature = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64).view(3, 1, 1)
    mask = torch.ones(5, 5, dtype=torch.bool).tril() if masked else None
    torch.testing.assert_close(
        F.gaussian_kernel_attention(q, k, v, temperature, attn_mask=mask),
        explicit_gaussian_attention(q, k, v, temperature, mask),
    )


def test_gaussian_attention_module_uses_its_projections_and_temperature():
    torch.manual_seed(0)
    attention = GaussianKernelAttention(8, num_heads=2).double()
    with torch.no_grad():
        attention.log_temperature.copy_(torch.tensor([0.0, 1.0]))
    x = torch.randn(3, 6, 8, dtype=torch.float64)
    q, k, v = (
        t.unflatten(-1, (2, 4)).transpose(1, 2)
        for t in attention.in_proj(x).chunk(3, -1)
    )
    expected = explicit_gaussian_attention(
        q, k, v, attention.log_temperature.exp().view(2, 1, 1)
    )
    expected = attention.out_proj(expected.transpose(1, 2).flatten(-2))
    torch.testing.assert_close(attention(x), expected)
    attention(x).sum().backward()
    assert attention.log_temperature.grad.abs().min() > 0
    with pytest.raises(ValueError, match="divide"):
        GaussianKernelAttention(8, num_heads=3)
    with pytest.raises(ValueError, match="key with last dimension embed_dim=8"):
        attention(x, torch.randn(3, 5, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="key and value of the same batch and length"):
        attention(x, x, torch.randn(3, 5, 8, dtype=torch.float64))


def test_feedforward_is_a_gmnm_per_token():
    block = GMNMFeedForward(6, n_components=5)
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(block(x), block.gmnm(x.reshape(-1, 6)).view(2, 4, 6))


def test_mlp_dot_block_is_the_standard_transformer_layer():
    torch.manual_seed(0)
    ours = GMNMTransformerBlock(8, 2, feedforward="mlp", attention="dot")
    theirs = nn.TransformerEncoderLayer(
        8, 2, dim_feedforward=32, dropout=0.0, batch_first=True, norm_first=True
    )
    theirs.self_attn.load_state_dict(ours.attention.state_dict())
    theirs.linear1.load_state_dict(ours.feedforward[0].state_dict())
    theirs.linear2.load_state_dict(ours.feedforward[2].state_dict())
    theirs.norm1.load_state_dict(ours.norm1.state_dict())
    theirs.norm2.load_state_dict(ours.norm2.state_dict())
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("attention", ["dot", "gaussian"])
@pytest.mark.parametrize("feedforward", ["gmnm", "mlp"])
def test_transformer_block_respects_a_causal_mask(attention, feedforward):
    torch.manual_seed(0)
    block = GMNMTransformerBlock(
        8, 2, feedforward=feedforward, attention=attention, n_components=8
    )
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    x = torch.randn(2, 5, 8)
    y = x.clone()
    y[:, 3:] = torch.randn(2, 2, 8)  # change only the last tokens
    out_x, out_y = block(x, attn_mask=causal), block(y, attn_mask=causal)
    assert out_x.shape == (2, 5, 8)
    torch.testing.assert_close(out_x[:, :3], out_y[:, :3])
    assert not torch.allclose(block(x)[:, :3], block(y)[:, :3])
    # the same mask as an additive float mask (-inf blocks) gives the same output
    additive = torch.zeros(5, 5).masked_fill(~causal, float("-inf"))
    torch.testing.assert_close(block(x, attn_mask=additive), out_x)
    state_dict_round_trip(block, x)


def test_transformer_block_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="feedforward"):
        GMNMTransformerBlock(8, 2, feedforward="kan")
    with pytest.raises(ValueError, match="attention"):
        GMNMTransformerBlock(8, 2, attention="linear")
    for attention in ("dot", "gaussian"):
        with pytest.raises(ValueError, match="nhead=3 does not divide d_model=10"):
            GMNMTransformerBlock(10, 3, attention=attention)


# ---------------------------------------------------------------------------- LSTMs


@pytest.mark.parametrize("placement", ["candidate", "gates"])
def test_lstm_cell_computes_the_lstm_update(placement):
    torch.manual_seed(0)
    cell = GMNMLSTMCell(3, 4, n_components=6, placement=placement).double()
    x, h, c = (torch.randn(5, n, dtype=torch.float64) for n in (3, 4, 4))
    z = torch.cat([x, h], 1)
    if placement == "candidate":
        i, f, o = torch.sigmoid(cell.gates(z)).chunk(3, 1)
        g = cell.gmnm(z)
    else:
        i, f, g, o = cell.gmnm(z).chunk(4, 1)
        i, f, o, g = i.sigmoid(), f.sigmoid(), o.sigmoid(), g.tanh()
    c_new = f * c + i * g
    h_new, c_out = cell(x, (h, c))
    torch.testing.assert_close(c_out, c_new)
    torch.testing.assert_close(h_new, o * torch.tanh(c_new))


@pytest.mark.parametrize("placement", ["candidate", "gates"])
def test_lstm_unrolls_the_cell_like_torch_lstm(placement):
    torch.manual_seed(0)
    lstm = GMNMLSTM(3, 4, n_components=6, placement=placement).double()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    h0 = torch.randn(1, 2, 4, dtype=torch.float64)
    c0 = torch.randn(1, 2, 4, dtype=torch.float64)
    output, (h_n, c_n) = lstm(x, (h0, c0))
    assert output.shape == (2, 7, 4) and h_n.shape == c_n.shape == (1, 2, 4)
    state = (h0[0], c0[0])
    for t in range(7):
        state = lstm.cell(x[:, t], state)
        torch.testing.assert_close(output[:, t], state[0])
    torch.testing.assert_close(h_n[0], state[0])
    torch.testing.assert_close(c_n[0], state[1])
    assert torch.autograd.gradcheck(
        lambda x: lstm(x)[0], (x[:, :3].clone().requires_grad_(),)
    )


def test_lstm_errors_and_state_dict():
    with pytest.raises(ValueError, match="placement"):
        GMNMLSTMCell(3, 4, placement="forget")
    with pytest.raises(ValueError, match=r"hx = \(h, c\), each of shape \(2, 4\)"):
        GMNMLSTMCell(3, 4)(torch.randn(2, 3), (torch.zeros(4), torch.zeros(4)))
    lstm = GMNMLSTM(3, 4)
    with pytest.raises(ValueError, match="batch, time"):
        lstm(torch.randn(7, 3))
    with pytest.raises(ValueError, match="input_size=3"):
        lstm(torch.randn(2, 7, 2))
    x = torch.randn(2, 5, 3)
    # a two-layer state would silently lose its second layer; (N, H) is nn.LSTM's
    # unbatched form, not this batch-first one's
    for shape in [(2, 2, 4), (2, 4), (1, 1, 4), (1, 2, 5)]:
        with pytest.raises(ValueError, match=r"hx = \(h_0, c_0\)"):
            lstm(x, (torch.zeros(shape), torch.zeros(shape)))
    state_dict_round_trip(nn.Sequential(lstm.cell), x[:, 0])


# ----------------------------------------------------------------------------- PINNs


def test_gradient_and_laplacian_of_a_known_field():
    x = torch.rand(10, 2, dtype=torch.float64, requires_grad=True)
    u = (torch.sin(x[:, :1]) * torch.sin(x[:, 1:])).sum(1, keepdim=True)
    du = gradient(u, x)
    torch.testing.assert_close(du[:, 0], torch.cos(x[:, 0]) * torch.sin(x[:, 1]))
    torch.testing.assert_close(du[:, 1], torch.sin(x[:, 0]) * torch.cos(x[:, 1]))
    torch.testing.assert_close(laplacian(u, x), -2 * u)


@pytest.mark.parametrize("threshold", [0, 2**62], ids=["custom-node", "autograd"])
def test_laplacian_through_gmnm_matches_finite_differences(threshold, monkeypatch):
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", threshold)
    torch.manual_seed(0)
    model = GMNMMLP(2, 1, n_components=8).double()
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    lap = laplacian(model(x), x)
    eps = 1e-4
    with torch.no_grad():
        fd = -4 * model(x)
        for j in range(2):
            step = torch.zeros(2, dtype=torch.float64)
            step[j] = eps
            fd += model(x + step) + model(x - step)
        fd /= eps**2
    torch.testing.assert_close(lap, fd, atol=1e-5, rtol=1e-5)


def test_fit_pinn_solves_a_poisson_problem():
    torch.manual_seed(0)
    x = torch.rand(256, 2)
    t = torch.linspace(0, 1, 32)
    edges = [
        torch.stack([t, torch.zeros_like(t)], 1),
        torch.stack([t, torch.ones_like(t)], 1),
        torch.stack([torch.zeros_like(t), t], 1),
        torch.stack([torch.ones_like(t), t], 1),
    ]
    boundary = torch.cat(edges)

    def exact(p):
        return torch.sin(math.pi * p[:, :1]) * torch.sin(math.pi * p[:, 1:])

    def residual(model, p):  # -laplace(u) = f with f = 2 pi^2 u_exact
        return laplacian(model(p), p) + 2 * math.pi**2 * exact(p)

    model = GMNMMLP(2, 1, n_components=32)
    model.init_from_data(x, overlap=1.0, random_state=0)
    losses = fit_pinn(
        model,
        residual,
        x,
        boundary,
        exact(boundary),
        max_iter=400,
        learning_rate=1e-2,
        boundary_weight=100.0,
    )
    grid = torch.rand(500, 2)
    with torch.no_grad():
        error = (model(grid) - exact(grid)).norm() / exact(grid).norm()
    assert losses[-1] < 1e-2 * losses[0]
    assert error < 0.05


def test_fit_pinn_stops_on_callback_and_reports_divergence():
    model = GMNMMLP(1, 1, n_components=4)
    x = torch.rand(8, 1)
    boundary, values = torch.zeros(1, 1), torch.zeros(1, 1)

    def residual(model, p):
        return laplacian(model(p), p)

    losses = fit_pinn(
        model, residual, x, boundary, values, max_iter=50, callback=lambda s, _: s == 3
    )
    assert len(losses) == 3
    with pytest.raises(FloatingPointError, match="learning_rate"):
        fit_pinn(
            model,
            lambda model, p: model(p) * float("inf"),
            x,
            boundary,
            values,
            max_iter=5,
        )
    with pytest.raises(ValueError, match="boundary_values"):
        fit_pinn(model, residual, x, boundary, torch.zeros(2, 1))


def test_fit_pinn_keeps_finite_weights_when_the_loss_diverges():
    model = GMNMMLP(1, 1, n_components=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(8, 1)
    with pytest.raises(FloatingPointError, match="keeps the weights"):
        fit_pinn(
            model,
            lambda model, p: model(p) * float("inf"),
            x,
            torch.zeros(1, 1),
            torch.zeros(1, 1),
            max_iter=5,
        )
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_fit_pinn_refuses_shapes_that_would_broadcast():
    # (2, 1) predictions minus (2,) values is a (2, 2) matrix: a wrong loss that trains
    model = GMNMMLP(1, 1, n_components=4)
    x = torch.rand(8, 1)
    boundary = torch.tensor([[0.0], [1.0]])

    def residual(model, p):
        return laplacian(model(p), p)

    with pytest.raises(ValueError, match=r"boundary_values has shape \(2,\)"):
        fit_pinn(model, residual, x, boundary, torch.zeros(2))
    with pytest.raises(ValueError, match="residual returned shape"):
        fit_pinn(
            model,
            lambda model, p: residual(model, p).mean(),
            x,
            boundary,
            torch.zeros(2, 1),
        )


# ----------------------------------------------------------------------------- GPU


@requires_cuda
def test_blocks_on_cuda_match_cpu():
    torch.manual_seed(0)
    cases = [
        (
            GMNMConvNet(1, 3, placement="both", n_components=8),
            (torch.randn(4, 1, 8, 8),),
        ),
        (GMNMTransformerBlock(8, 2, attention="gaussian"), (torch.randn(2, 5, 8),)),
        (GMNMLSTM(3, 4, placement="gates"), (torch.randn(2, 5, 3),)),
    ]
    for module, inputs in cases:
        module.eval()
        expected = module(*inputs)
        expected = expected[0] if isinstance(expected, tuple) else expected
        got = module.cuda()(*(t.cuda() for t in inputs))
        got = got[0] if isinstance(got, tuple) else got
        torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------- common module behaviour, all blocks

BLOCKS = {
    "conv": (lambda: GMNMConv2d(2, 3, 3, padding=1, n_components=4), (2, 2, 5, 5)),
    "convnet": (
        lambda: GMNMConvNet(1, 3, placement="both", n_components=4),
        (2, 1, 8, 8),
    ),
    "feedforward": (lambda: GMNMFeedForward(8, n_components=6), (2, 5, 8)),
    "attention": (lambda: GaussianKernelAttention(8, 2), (2, 5, 8)),
    "transformer": (
        lambda: GMNMTransformerBlock(8, 2, attention="gaussian", n_components=6),
        (2, 5, 8),
    ),
    "lstm_cell": (lambda: GMNMLSTMCell(3, 4, n_components=6), (2, 3)),
    "lstm": (lambda: GMNMLSTM(3, 4, n_components=6, placement="gates"), (2, 5, 3)),
}


def first_output(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", BLOCKS)
def test_block_init_is_deterministic_under_a_seed_and_round_trips(name):
    factory, shape = BLOCKS[name]
    torch.manual_seed(3)
    a = factory().eval()
    torch.manual_seed(3)
    b = factory().eval()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    x = torch.randn(*shape)
    torch.testing.assert_close(first_output(a(x)), first_output(b(x)))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(4)
    c = factory().eval()
    c.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(first_output(c(x)), first_output(a(x)))


@pytest.mark.parametrize("name", BLOCKS)
def test_block_moves_to_float64_and_back_propagates(name):
    factory, shape = BLOCKS[name]
    module = factory().double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    out = first_output(module(x))
    assert out.dtype == torch.float64
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for p in module.parameters():
        assert p.grad is not None, "a parameter gets no gradient"


def test_gaussian_kernel_attention_gradcheck():
    torch.manual_seed(0)
    q, k, v = (
        torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
        for _ in range(3)
    )
    temperature = torch.tensor([0.7, 2.0], dtype=torch.float64).view(2, 1, 1)
    temperature.requires_grad_(True)
    assert torch.autograd.gradcheck(F.gaussian_kernel_attention, (q, k, v, temperature))


@pytest.mark.filterwarnings("error::UserWarning")
@pytest.mark.parametrize("masked", [False, True])
def test_gaussian_attention_under_vmap_and_per_sample_gradients(masked):
    """Under vmap torch sends scaled_dot_product_attention to a CPU kernel that
    refuses a score with a gradient; the attention then runs in plain operations: the
    batched call's output, and per-sample gradients (vmap of grad) that sum to the
    batch's gradient."""
    torch.manual_seed(0)
    attention = GaussianKernelAttention(8, num_heads=2).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    mask = torch.ones(5, 5, dtype=torch.bool).tril() if masked else None

    def run(params, sample):
        out = torch.func.functional_call(
            attention, params, (sample.unsqueeze(0),), {"attn_mask": mask}
        )
        return out.squeeze(0)

    params = {name: p.detach() for name, p in attention.named_parameters()}
    batched = torch.func.vmap(run, in_dims=(None, 0))(params, x)
    torch.testing.assert_close(batched, attention(x, attn_mask=mask))

    def loss(params, sample):
        return run(params, sample).square().sum()

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x)
    total = torch.autograd.grad(
        attention(x, attn_mask=mask).square().sum(), tuple(attention.parameters())
    )
    for (name, grads), expected in zip(per_sample.items(), total, strict=True):
        torch.testing.assert_close(grads.sum(0), expected, msg=name)
