"""Tests of the GMNM layer, its functional form and GMNMMLP."""

import copy
import io

import numpy as np
import pytest
import torch

from sklearn_gmnm.nn import GMNM, GMNMMLP, CompiledOrEager
from sklearn_gmnm.nn import functional as F

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)


@pytest.fixture(params=["custom", "autograd"])
def path(request, monkeypatch):
    """Run a test through the custom autograd node and through plain autograd (on a GPU
    too, where the Triton kernels would otherwise take float32 inputs: they have their
    own tests in test_triton.py)."""
    threshold = 0 if request.param == "custom" else 2**62
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", threshold)
    monkeypatch.setattr(F, "USE_TRITON", False)
    return request.param


def reference(layer, x):
    """The explicit formula on the layer's own parameters."""
    g = layer.gaussians()
    return F.gmnm_reference(
        x, g["projections"], g["centers"], layer.mixture_weight, layer.bias
    )


@pytest.mark.parametrize("explicit_centers", [True, False])
@pytest.mark.parametrize("shape", [(7, 3), (4, 5, 3), (2, 2, 2, 3), (3,)])
def test_output_shape(shape, explicit_centers):
    layer = GMNM(3, 2, n_components=6, explicit_centers=explicit_centers)
    out = layer(torch.randn(*shape))
    assert out.shape == (*shape[:-1], 2)


@pytest.mark.parametrize("explicit_centers", [True, False])
@pytest.mark.parametrize("shape", [(0, 3), (4, 0, 3)])
def test_zero_rows_train(shape, explicit_centers, path):
    # an empty batch (a mask that selects no row) trains like nn.Linear: zero gradients
    layer = GMNM(3, 2, n_components=6, explicit_centers=explicit_centers)
    x = torch.randn(*shape, requires_grad=True)
    out = layer(x)
    assert out.shape == (*shape[:-1], 2)
    out.sum().backward()
    assert x.grad.shape == x.shape
    for name, parameter in layer.named_parameters():
        assert torch.equal(parameter.grad, torch.zeros_like(parameter)), name


def test_bad_last_dimension_is_a_value_error():
    with pytest.raises(ValueError, match="in_features=3"):
        GMNM(3, 2)(torch.randn(4, 5))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"in_features": 0}, "in_features"),
        ({"out_features": -1}, "out_features"),
        ({"n_components": 0}, "n_components"),
        ({"n_projections": 1.5}, "n_projections"),
    ],
)
def test_bad_sizes_are_named(kwargs, name):
    args = {"in_features": 3, "out_features": 2} | kwargs
    with pytest.raises(ValueError, match=name):
        GMNM(**args)


@pytest.mark.parametrize("explicit_centers", [True, False])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_fused_matches_explicit_formula(k, explicit_centers, path):
    torch.manual_seed(0)
    layer = GMNM(
        4, 3, n_components=9, n_projections=k, explicit_centers=explicit_centers
    )
    x = torch.randn(50, 4)
    torch.testing.assert_close(layer(x), reference(layer, x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_responses_far_from_every_centre_are_floored_at_a_normal_number(dtype, path):
    # exp(-0.5 * y2) would underflow into denormal numbers (slow on x86) or zero: the
    # exponent is floored at 0.8 * log(smallest normal), so phi = tiny ** 0.8 there, in
    # the layer's forward pass (custom node or plain autograd) and in its basis alike.
    torch.manual_seed(0)
    layer = GMNM(2, 1, n_components=3, n_projections=2).to(dtype)
    x = torch.full((4, 2), 1e3, dtype=dtype, requires_grad=True)
    phi = layer.basis(x)
    floor = torch.finfo(dtype).tiny ** 0.8
    torch.testing.assert_close(phi, torch.full_like(phi, floor), rtol=1e-5, atol=0)
    expected = phi @ layer.mixture_weight.t() + layer.bias
    torch.testing.assert_close(layer(x), expected)


def _float64_inputs(k, explicit_centers, bias=True):
    torch.manual_seed(1)
    layer = GMNM(
        3,
        2,
        n_components=4,
        n_projections=k,
        bias=bias,
        explicit_centers=explicit_centers,
    ).double()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    return layer, x


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("explicit_centers", [True, False])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_gradcheck(k, explicit_centers, bias, path):
    layer, x = _float64_inputs(k, explicit_centers, bias)
    params = tuple(p for p in layer.parameters())

    def fused(x, *params):
        return torch.func.functional_call(
            layer, dict(zip(names, params, strict=True)), (x,)
        )

    names = [n for n, _ in layer.named_parameters()]
    assert torch.autograd.gradcheck(fused, (x, *params))

    # The analytic gradients agree with autograd through the explicit (unfused) formula.
    out = layer(x)
    grad_out = torch.randn_like(out)
    fused_grads = torch.autograd.grad(out, (x, *params), grad_out)
    ref_grads = torch.autograd.grad(reference_graph(layer, x), (x, *params), grad_out)
    for a, b in zip(fused_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


def reference_graph(layer, x):
    """The explicit formula, differentiable with respect to the layer's parameters."""
    m, k = layer.n_components, layer.n_projections
    projections = layer.weight.view(k, m, -1).transpose(0, 1)
    if layer.explicit_centers:
        centers = layer.centers
    else:
        c = layer.offset.view(k, m).t().unsqueeze(-1)
        centers = -(torch.linalg.pinv(projections) @ c).squeeze(-1)
    return F.gmnm_reference(x, projections, centers, layer.mixture_weight, layer.bias)


@pytest.mark.parametrize("k", [1, 2])
def test_second_derivatives(k, path):
    """Laplacians (physics-informed losses) go through the fused backward exactly."""
    layer, x = _float64_inputs(k, explicit_centers=True)
    params = tuple(layer.parameters())
    names = [n for n, _ in layer.named_parameters()]

    def fused(x, *params):
        return torch.func.functional_call(
            layer, dict(zip(names, params, strict=True)), (x,)
        )

    assert torch.autograd.gradgradcheck(fused, (x, *params))


def test_reset_parameters_is_deterministic_under_a_seed():
    torch.manual_seed(3)
    a = GMNM(5, 2, n_components=8)
    torch.manual_seed(3)
    b = GMNM(5, 2, n_components=8)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=0, rtol=0)
    torch.manual_seed(3)
    a.reset_parameters()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=0, rtol=0)


def test_default_init_gives_informative_responses_on_standardised_inputs():
    """Without data, Gaussians neither vanish nor saturate on standard-normal inputs."""
    torch.manual_seed(0)
    for d, m, k in [(2, 64, 2), (10, 32, 2), (100, 32, 2), (5, 1, 1)]:
        layer = GMNM(d, 1, n_components=m, n_projections=k)
        phi = layer.basis(torch.randn(2000, d))
        mean_response = phi.mean().item()
        assert 0.02 < mean_response < 0.9, (d, m, k, mean_response)


def test_projections_are_orthonormal_directions_within_a_gaussian():
    layer = GMNM(6, 1, n_components=5, n_projections=3)
    a = layer.gaussians()["projections"]  # (m, k, d)
    gram = a @ a.transpose(1, 2) * layer.default_width() ** 2
    torch.testing.assert_close(gram, torch.eye(3).expand(5, 3, 3), atol=1e-5, rtol=0)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    a = GMNM(3, 2, n_components=5)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = GMNM(3, 2, n_components=5)
    b.load_state_dict(torch.load(buffer))
    x = torch.randn(10, 3)
    torch.testing.assert_close(a(x), b(x), atol=0, rtol=0)


def test_to_float64():
    layer = GMNM(3, 2, n_components=5).to(torch.float64)
    out = layer(torch.randn(4, 3, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in layer.parameters())


def test_factory_kwargs():
    layer = GMNM(3, 2, dtype=torch.float64, device="cpu")
    assert layer.weight.dtype == torch.float64


def test_extra_repr():
    text = repr(GMNM(3, 2, n_components=7, n_projections=4))
    assert "in_features=3" in text and "n_components=7" in text
    assert "n_projections=4" in text


def test_precisions_are_positive_semidefinite_with_rank_at_most_k():
    torch.manual_seed(0)
    layer = GMNM(6, 1, n_components=4, n_projections=2)
    with torch.no_grad():
        layer.weight.normal_()
    precisions = layer.gaussians()["precisions"].double()
    eigenvalues = torch.linalg.eigvalsh(precisions)
    assert (eigenvalues > -1e-6).all()
    assert ((eigenvalues > 1e-6).sum(-1) <= 2).all()


@pytest.mark.parametrize("method", ["kmeans", "sample"])
@pytest.mark.parametrize("explicit_centers", [True, False])
def test_data_aware_init_puts_centres_inside_the_data(method, explicit_centers):
    rng = np.random.default_rng(0)
    X = rng.uniform(low=[10, -5, 100], high=[20, -1, 300], size=(400, 3))
    layer = GMNM(
        3, 1, n_components=16, n_projections=3, explicit_centers=explicit_centers
    )
    layer.init_from_data(X, method=method, random_state=0)
    centers = layer.gaussians()["centers"].numpy()
    assert (centers >= X.min(0) - 1e-4).all() and (centers <= X.max(0) + 1e-4).all()
    # Every training point is seen by some Gaussian.
    phi = layer.basis(torch.as_tensor(X, dtype=torch.float32))
    assert (phi.max(1).values > 0.05).all()


def test_data_aware_init_widths_follow_the_spacing():
    """Tighter data gives narrower Gaussians (larger projections)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 2))
    wide = GMNM(2, 1, n_components=16).init_from_data(X * 10, random_state=0)
    narrow = GMNM(2, 1, n_components=16).init_from_data(X, random_state=0)
    ratio = narrow.weight.norm() / wide.weight.norm()
    assert 8 < ratio < 12


def test_data_aware_init_is_reproducible_and_handles_few_rows():
    X = np.random.default_rng(0).normal(size=(5, 2))
    a = GMNM(2, 1, n_components=8).init_from_data(X, random_state=1)
    b = GMNM(2, 1, n_components=8).init_from_data(X, random_state=1)
    torch.testing.assert_close(a.weight, b.weight, atol=0, rtol=0)
    assert torch.isfinite(a.weight).all()


def test_reflect_mirrors_the_rows_near_each_face():
    from sklearn_gmnm.nn.modules import _reflect_at_faces

    # 4 centres on the 4 x 1 box: spacing (4 * 1 / 4) ** (1 / 2) = 1, so the band is 1
    # along the first feature and half the side, 0.5, along the second.
    X = np.array([[0.0, 0.0, 7.0], [0.5, 0.25, 7.0], [2.0, 0.75, 7.0], [4.0, 1.0, 7.0]])
    w = np.array([1.0, 2.0, 3.0, 4.0])
    mirrored, weights = _reflect_at_faces(X, w, n_centers=4)
    np.testing.assert_array_equal(mirrored[:4], X)
    expected = [
        (0.0, 0.0, 7.0, 1.0),  # the first feature: rows 0 and 1 across x=0,
        (-0.5, 0.25, 7.0, 2.0),
        (4.0, 1.0, 7.0, 4.0),  # row 3 across x=4 (row 2 lies in neither band)
        (0.0, 0.0, 7.0, 1.0),  # the second: rows 0 and 1 across y=0,
        (0.5, -0.25, 7.0, 2.0),
        (2.0, 1.25, 7.0, 3.0),  # rows 2 and 3 across y=1
        (4.0, 1.0, 7.0, 4.0),
    ]
    got = np.column_stack([mirrored[4:], weights[4:]])
    assert sorted(map(tuple, got.tolist())) == sorted(expected)
    # the constant third feature is never mirrored; constant data comes back as is
    constant, constant_w = _reflect_at_faces(np.ones((3, 2)), np.ones(3), 4)
    assert constant.shape == (3, 2) and constant_w.shape == (3,)


def test_reflect_puts_centres_on_the_edge_of_the_data():
    """Without reflection k-means keeps centres well inside; with it, some sit on or
    beyond every face, and every training point is still seen by some Gaussian."""
    X = np.random.default_rng(0).uniform(-1, 1, size=(2000, 2))

    def outermost(boundary):
        layer = GMNM(2, 1, n_components=32).init_from_data(
            X, boundary=boundary, random_state=0
        )
        centers = layer.gaussians()["centers"].numpy()
        phi = layer.basis(torch.as_tensor(X, dtype=torch.float32))
        assert (phi.max(1).values > 0.05).all()
        return np.concatenate([-centers.min(0), centers.max(0)])  # one per face

    inside, reflected = outermost(None), outermost("reflect")
    assert (inside < 0.92).all()  # the spacing is (4 / 32) ** 0.5 = 0.35
    assert (reflected > 1.05).all()  # beyond the face, but within the mirrored band
    assert (reflected < 1 + 0.35).all()


def test_data_aware_init_rejects_bad_input():
    layer = GMNM(2, 1, n_components=4)
    with pytest.raises(ValueError, match="in_features=2"):
        layer.init_from_data(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="NaN"):
        layer.init_from_data(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="method"):
        layer.init_from_data(np.zeros((10, 2)), method="grid")
    with pytest.raises(ValueError, match="boundary"):
        layer.init_from_data(np.zeros((10, 2)), boundary="wrap")
    with pytest.raises(ValueError, match="no rows"):
        layer.init_from_data(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="sums to zero"):
        layer.init_from_data(np.zeros((3, 2)), sample_weight=np.zeros(3))


def test_layer_learns_a_bump():
    """A few hundred Adam steps fit a 2-D Gaussian bump far better than a constant."""
    torch.manual_seed(0)
    x = torch.rand(512, 2) * 4 - 2
    y = torch.exp(-((x - 0.5) ** 2).sum(1, keepdim=True)) - 0.3 * x[:, :1]
    layer = GMNM(2, 1, n_components=16).init_from_data(x, random_state=0)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(layer(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * y.var().item()


@pytest.mark.parametrize("explicit_centers", [True, False])
def test_relative_projections_give_the_same_layer_in_other_units(explicit_centers):
    """The same Gaussians as the plain layer; weight holds A / projection_scale."""
    X = np.random.default_rng(0).uniform(-3, 3, size=(300, 2))
    plain = GMNM(2, 3, n_components=8, explicit_centers=explicit_centers)
    relative = GMNM(
        2,
        3,
        n_components=8,
        explicit_centers=explicit_centers,
        relative_projections=True,
    )
    relative.load_state_dict(
        {**plain.state_dict(), "projection_scale": torch.tensor(1.0)}
    )
    plain.init_from_data(X, random_state=0)
    relative.init_from_data(X, random_state=0)
    # the buffer is the mean norm of A's rows, so weight's rows have mean norm 1
    scale = plain.weight.norm(dim=1).mean()
    torch.testing.assert_close(relative.projection_scale, scale)
    torch.testing.assert_close(relative.weight.norm(dim=1).mean(), torch.tensor(1.0))
    torch.testing.assert_close(relative.projections(), plain.weight)
    x = torch.as_tensor(X, dtype=torch.float32)
    torch.testing.assert_close(relative(x), plain(x))
    torch.testing.assert_close(relative.basis(x), plain.basis(x))
    for key, value in plain.gaussians().items():
        torch.testing.assert_close(relative.gaussians()[key], value)
    # the gradient reaches weight through the scale: scale * dL/dA
    plain(x).square().mean().backward()
    relative(x).square().mean().backward()
    torch.testing.assert_close(relative.weight.grad, scale * plain.weight.grad)
    assert not relative.projection_scale.requires_grad
    assert "relative_projections=True" in repr(relative)
    assert "relative_projections" not in repr(plain)


def test_relative_projections_state_dict_and_dtype():
    torch.manual_seed(0)
    a = GMNM(3, 2, n_components=5, relative_projections=True)
    # without data the scale is 1 / default_width()
    torch.testing.assert_close(
        a.projection_scale, torch.tensor(1.0 / a.default_width())
    )
    with torch.no_grad():
        a.projection_scale.fill_(2.5)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = GMNM(3, 2, n_components=5, relative_projections=True)
    b.load_state_dict(torch.load(buffer))
    x = torch.randn(10, 3)
    torch.testing.assert_close(a(x), b(x), atol=0, rtol=0)
    b = b.double()
    assert b.projection_scale.dtype == torch.float64
    assert b(x.double()).dtype == torch.float64
    with pytest.raises(RuntimeError, match="projection_scale"):
        GMNM(3, 2, n_components=5).load_state_dict(a.state_dict())


def test_relative_projections_change_adam_steps_on_the_projections():
    """Adam moves weight by about lr whatever its scale: A moves by scale * lr."""
    X = np.random.default_rng(0).uniform(-1, 1, size=(200, 2))
    x = torch.as_tensor(X, dtype=torch.float32)
    y = torch.sin(3 * x[:, :1])
    steps = {}
    for relative in (False, True):
        torch.manual_seed(0)
        layer = GMNM(2, 1, n_components=16, relative_projections=relative)
        layer.init_from_data(X, random_state=0)
        before = layer.projections().detach().clone()
        opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
        torch.nn.functional.mse_loss(layer(x), y).backward()
        opt.step()
        steps[relative] = (layer.projections().detach() - before).abs().max()
    # Adam's first step is lr * sign(gradient) wherever the gradient is not tiny
    torch.testing.assert_close(steps[False], torch.tensor(1e-3), rtol=1e-2, atol=0)
    torch.testing.assert_close(
        steps[True], 1e-3 * layer.projection_scale, rtol=1e-2, atol=0
    )
    assert layer.projection_scale > 3  # 16 Gaussians on [-1, 1]^2: narrow ones


def test_gmnm_mlp_passes_relative_projections_to_every_layer():
    net = GMNMMLP(3, 1, hidden_layer_sizes=(4,), relative_projections=True)
    assert all(layer.relative_projections for layer in net.layers)
    assert net(torch.randn(5, 3)).shape == (5, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"hidden_layer_sizes": (8, 8)},
        {"embedding_dim": 3},
        {"hidden_layer_sizes": (6, 6), "residual": True, "explicit_centers": False},
    ],
)
@pytest.mark.parametrize("shape", [(7, 6), (2, 3, 6)])
def test_gmnm_mlp_shapes(kwargs, shape):
    net = GMNMMLP(6, 4, n_components=5, **kwargs)
    assert net(torch.randn(*shape)).shape == (*shape[:-1], 4)


def test_gmnm_mlp_residual_adds_the_input():
    torch.manual_seed(0)
    net = GMNMMLP(4, 1, hidden_layer_sizes=(4,), residual=True, n_components=3)
    plain = copy.deepcopy(net)
    plain.residual = False
    x = torch.randn(5, 4)
    hidden = net.layers[0](x)
    torch.testing.assert_close(net(x), net.layers[1](x + hidden))
    torch.testing.assert_close(plain(x), plain.layers[1](hidden))


def test_gmnm_mlp_init_from_data_goes_through_the_embedding():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 10)) * 5
    net = GMNMMLP(10, 1, embedding_dim=2, n_components=8).init_from_data(
        X, random_state=0
    )
    with torch.no_grad():
        embedded = net.embedding(torch.as_tensor(X, dtype=torch.float32)).numpy()
    centers = net.layers[0].gaussians()["centers"].numpy()
    assert (centers >= embedded.min(0) - 1e-4).all()
    assert (centers <= embedded.max(0) + 1e-4).all()


def test_sizes_may_be_numpy_integers_and_hidden_sizes_an_int():
    layer = GMNM(np.int64(3), np.int32(2), n_components=np.int64(4))
    assert type(layer.n_components) is int and "n_components=4" in repr(layer)
    assert layer(torch.randn(5, 3)).shape == (5, 2)
    net = GMNMMLP(3, 1, hidden_layer_sizes=np.int64(8), embedding_dim=np.int64(2))
    assert [layer.out_features for layer in net.layers] == [8, 1]  # as (8,)
    with pytest.raises(ValueError, match="n_components"):
        GMNM(3, 2, n_components=4.0)


def test_gmnm_mlp_rejects_bad_widths():
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        GMNMMLP(3, 1, hidden_layer_sizes=(4, 0))
    with pytest.raises(ValueError, match="embedding_dim"):
        GMNMMLP(3, 1, embedding_dim=0)


@requires_cuda
@pytest.mark.parametrize("explicit_centers", [True, False])
def test_cuda_matches_cpu(explicit_centers, path):
    torch.manual_seed(0)
    layer = GMNM(5, 3, n_components=16, explicit_centers=explicit_centers)
    x = torch.randn(64, 5)
    cpu_out = layer(x)
    cpu_grads = torch.autograd.grad(cpu_out.sum(), tuple(layer.parameters()))
    gpu = copy.deepcopy(layer).cuda()
    gpu_out = gpu(x.cuda())
    gpu_grads = torch.autograd.grad(gpu_out.sum(), tuple(gpu.parameters()))
    torch.testing.assert_close(gpu_out.cpu(), cpu_out, atol=1e-5, rtol=1e-4)
    for a, b in zip(gpu_grads, cpu_grads, strict=True):
        torch.testing.assert_close(a.cpu(), b, atol=1e-4, rtol=1e-3)
    gpu.init_from_data(x.cuda(), random_state=0)
    assert gpu.weight.is_cuda


def test_compiled_or_eager_falls_back_with_a_warning(monkeypatch):
    def broken_compile(module, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no compiler on this machine")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    layer = GMNM(3, 2, n_components=4)
    wrapped = CompiledOrEager(layer)
    x = torch.randn(5, 3)
    with pytest.warns(RuntimeWarning, match="no compiler on this machine"):
        out = wrapped(x)
    assert wrapped.compiled is False
    torch.testing.assert_close(out, layer(x))
    torch.testing.assert_close(wrapped(x), layer(x))  # later calls: eager, no warning


def test_compiled_or_eager_compiles_where_it_can():
    torch.manual_seed(0)
    layer = GMNM(3, 2, n_components=4)
    wrapped = CompiledOrEager(layer, dynamic=False)
    x = torch.randn(16, 3, requires_grad=True)
    out = wrapped(x)
    if wrapped.compiled is False:
        pytest.skip("torch.compile is not available on this machine")
    torch.testing.assert_close(out, layer(x), atol=1e-6, rtol=1e-5)
    (grad,) = torch.autograd.grad(out.sum(), x)
    (expected,) = torch.autograd.grad(layer(x).sum(), x)
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-5)
    # compiling adds no state: a state_dict saved after the first call loads into a
    # wrapper that was never called, as into one saved before
    fresh = CompiledOrEager(GMNM(3, 2, n_components=4))
    assert list(wrapped.state_dict()) == list(fresh.state_dict())
    fresh.load_state_dict(wrapped.state_dict())
    torch.testing.assert_close(fresh(x), out, atol=1e-6, rtol=1e-5)


def custom_node(layer):
    """The custom autograd node a layer trains through on the CPU."""
    return F._FusedGMNMFromCenters if layer.explicit_centers else F._FusedGMNM


@pytest.mark.parametrize("explicit_centers", [True, False])
def test_compiling_on_the_cpu_keeps_the_custom_node(
    explicit_centers, monkeypatch, count_calls
):
    """Under torch.compile a CPU layer traces the custom node (compiled, the plain
    operations ran slower there: ``functional._leave_to_inductor``)."""
    layer = GMNM(
        8, 3, n_components=64, n_projections=2, explicit_centers=explicit_centers
    )
    x = torch.randn(2048, 8, requires_grad=True)  # above FUSED_MIN_ELEMENTS
    calls = count_calls(custom_node(layer))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    layer(x)
    assert len(calls) == 1


@requires_cuda
def test_compiling_on_cuda_leaves_the_plain_operations_to_inductor(
    monkeypatch, count_calls
):
    layer = GMNM(8, 3, n_components=64, n_projections=2).cuda()
    x = torch.randn(2048, 8, device="cuda", requires_grad=True)
    assert x.shape[0] * layer.weight.shape[0] >= F.FUSED_MIN_ELEMENTS  # else no node
    node_calls = count_calls(F._FusedGMNM)
    centres_node_calls = count_calls(F._FusedGMNMFromCenters)
    kernel_calls = count_calls(F._triton.TritonGMNM)
    centres_kernel_calls = count_calls(F._triton.TritonGMNMFromCenters)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    layer(x)
    calls = [node_calls, centres_node_calls, kernel_calls, centres_kernel_calls]
    assert not any(calls)  # the plain operations


@requires_cuda
def test_compiled_layer_on_cuda_matches_eager():
    torch.manual_seed(0)
    layer = GMNM(40, 3, n_components=64, n_projections=2).cuda()
    wrapped = CompiledOrEager(layer, dynamic=False)
    x = torch.randn(9000, 40, device="cuda", requires_grad=True)
    out = wrapped(x)
    if wrapped.compiled is False:
        pytest.skip("torch.compile is not available on this machine")
    grads = torch.autograd.grad(out.square().sum(), (x, *layer.parameters()))
    expected = layer(x)
    grads_ref = torch.autograd.grad(expected.square().sum(), (x, *layer.parameters()))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4 * b.abs().max().item(), rtol=1e-3)


def test_both_paths_agree_on_large_inputs(monkeypatch):
    torch.manual_seed(0)
    layer = GMNM(8, 3, n_components=64, n_projections=2)
    x = torch.randn(2048, 8, requires_grad=True)  # above FUSED_MIN_ELEMENTS
    assert x.shape[0] * layer.weight.shape[0] >= F.FUSED_MIN_ELEMENTS
    custom = layer(x)
    custom_grads = torch.autograd.grad(custom.square().sum(), (x, *layer.parameters()))
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 2**62)
    plain = layer(x)
    plain_grads = torch.autograd.grad(plain.square().sum(), (x, *layer.parameters()))
    torch.testing.assert_close(custom, plain, atol=1e-5, rtol=1e-5)
    for a, b in zip(custom_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize(
    "value, expected",
    [("auto", "auto"), ("1", True), ("TRUE", True), ("0", False), (" false ", False)],
)
def test_triton_setting_reads_the_environment_variable(value, expected):
    assert F._triton_setting(value) == expected


def test_triton_setting_rejects_other_values():
    with pytest.raises(ValueError, match="SKLEARN_GMNM_TRITON='yes'"):
        F._triton_setting("yes")


def test_triton_dispatch_follows_use_triton(monkeypatch):
    """'auto' takes the kernels up to AUTO_MAX_FEATURES inputs, and up to
    AUTO_MAX_FEATURES_FEW_ROWS inputs for batches of up to AUTO_FEW_ROWS rows; True
    wherever they apply, False never (here the kernels are said to apply to everything)."""
    monkeypatch.setattr(F._triton, "supports", lambda *args: True)
    T = F._triton
    assert (T.AUTO_MAX_FEATURES, T.AUTO_MAX_FEATURES_FEW_ROWS) == (32, 64)
    assert T.AUTO_FEW_ROWS == 8192
    taken = [
        torch.zeros(3, 32),
        torch.zeros(100_000, 32),
        torch.zeros(8192, 33),
        torch.zeros(8192, 64),
    ]
    left = [torch.zeros(8193, 33), torch.zeros(100_000, 64), torch.zeros(3, 65)]
    cases = [(x,) for x in taken + left]
    monkeypatch.setattr(F, "USE_TRITON", "auto")
    assert [F._use_triton(args) for args in cases] == [True] * 4 + [False] * 3
    monkeypatch.setattr(F, "USE_TRITON", True)
    assert all(F._use_triton(args) for args in cases)
    monkeypatch.setattr(F, "USE_TRITON", False)
    assert not any(F._use_triton(args) for args in cases)


def saved_sizes(fn):
    """Element counts of the tensors autograd keeps for backward while fn runs."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sizes


@pytest.mark.parametrize("explicit_centers", [True, False])
def test_both_layouts_of_the_projection_gradient_agree(explicit_centers, monkeypatch):
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 0)
    monkeypatch.setattr(F, "USE_TRITON", False)
    torch.manual_seed(0)
    layer = GMNM(5, 3, n_components=6, n_projections=2, dtype=torch.float64,
                 explicit_centers=explicit_centers)  # fmt: skip
    x = torch.randn(40, 5, dtype=torch.float64, requires_grad=True)
    grads = {}
    for threshold in (0, 2**62):  # every layer contiguous, then every one transposed
        monkeypatch.setattr(F, "CONTIGUOUS_GRAD_WEIGHT_MIN_FEATURES", threshold)
        monkeypatch.setattr(
            F, "CONTIGUOUS_GRAD_WEIGHT_MIN_FEATURES_FEW_ROWS", threshold
        )
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).square().sum().backward()
        grads[threshold] = [x.grad.clone()] + [
            p.grad.clone() for p in layer.parameters()
        ]
    for contiguous, transposed in zip(grads[0], grads[2**62], strict=True):
        torch.testing.assert_close(contiguous, transposed, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "n_rows, in_features, contiguous",
    [(256, 128, True), (8192, 256, True), (256, 64, True), (1024, 64, True),
     (1025, 64, False), (4096, 64, False), (256, 63, False), (256, 2, False)],
)  # fmt: skip
def test_projection_gradient_layout_follows_features_and_rows(
    n_rows, in_features, contiguous
):
    """Laid out as the weight from 128 features, and from 64 on up to 1,024 rows."""
    assert F._contiguous_grad_weight(torch.empty(n_rows, in_features)) == contiguous


@pytest.mark.parametrize("keep_phi", [True, False])
def test_custom_node_keeps_phi_only_for_small_inputs(keep_phi, monkeypatch):
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 0)  # the custom node
    monkeypatch.setattr(F, "SAVE_PHI_MAX_ELEMENTS", 2**62 if keep_phi else 0)
    torch.manual_seed(0)
    n, m = 64, 12
    layer = GMNM(3, 2, n_components=m, n_projections=2)  # h: n * 2m, phi: n * m
    x = torch.randn(n, 3, requires_grad=True)
    out, sizes = saved_sizes(lambda: layer(x))
    assert (n * m in sizes) == keep_phi
    grads = torch.autograd.grad(out.square().sum(), (x, *layer.parameters()))
    monkeypatch.setattr(F, "SAVE_PHI_MAX_ELEMENTS", 0 if keep_phi else 2**62)
    grads_other = torch.autograd.grad(layer(x).square().sum(), (x, *layer.parameters()))
    for a, b in zip(grads, grads_other, strict=True):  # phi recomputed is phi kept
        assert torch.equal(a, b)


@pytest.mark.parametrize("explicit_centers", [True, False])
def test_inference_takes_the_plain_operations(
    explicit_centers, monkeypatch, count_calls
):
    """Without a gradient no autograd node is needed: the plain operations run."""
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 0)
    layer = GMNM(3, 2, n_components=8, explicit_centers=explicit_centers)
    calls = count_calls(custom_node(layer))
    x = torch.randn(32, 3)
    with torch.no_grad():
        expected = layer(x)
    assert not calls
    assert torch.equal(layer(x), expected)  # with a gradient: the node, same output
    assert calls


@pytest.mark.parametrize(
    "value, expected", [("0", "False"), ("1", "True"), (None, "auto")]
)
def test_sklearn_gmnm_triton_environment_variable_sets_use_triton(
    value, expected, setting_at_import
):
    """The variable is read once, at import (here in a fresh interpreter)."""
    got, stderr = setting_at_import("SKLEARN_GMNM_TRITON", value, "USE_TRITON")
    assert got == expected, stderr


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "frozen", [(), ("x",), ("weight",), ("centers",), ("weight", "centers", "bias")]
)
def test_centres_node_matches_offsets_left_to_autograd(k, bias, frozen, monkeypatch):
    """gmnm_from_centers's node (offsets formed inside, their gradient carried to the
    projections and centres by hand) gives the values and gradients of gmnm on offsets
    that autograd differentiates, whichever inputs want a gradient."""
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 0)
    monkeypatch.setattr(F, "USE_TRITON", False)
    torch.manual_seed(k)
    m, d = 5, 4
    tensors = {
        "x": torch.randn(3, 7, d, dtype=torch.float64),
        "weight": torch.randn(k * m, d, dtype=torch.float64),
        "centers": torch.randn(m, d, dtype=torch.float64),
        "mixture_weight": torch.randn(2, m, dtype=torch.float64),
        "bias": torch.randn(2, dtype=torch.float64) if bias else None,
    }
    for name, t in tensors.items():
        if t is not None and name not in frozen:
            t.requires_grad_(True)
    args = list(tensors.values())
    wanted = [t for t in args if t is not None and t.requires_grad]

    calls = []
    original = F._FusedGMNMFromCenters.apply
    monkeypatch.setattr(
        F._FusedGMNMFromCenters, "apply", lambda *a: calls.append(1) or original(*a)
    )
    out = F.gmnm_from_centers(*args, n_projections=k)
    assert calls  # the node ran
    x, weight, centers, mixture_weight, bias_ = args
    offsets = F.gaussian_offsets(weight, centers, k)
    expected = F.gmnm(x, weight, offsets, mixture_weight, bias_, n_projections=k)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, wanted, grad_out)
    expected_grads = torch.autograd.grad(expected, wanted, grad_out)
    for a, b in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_centres_node_leaves_inference_and_small_inputs_to_gmnm(monkeypatch):
    """Where gmnm would not take its node, gmnm_from_centers computes gmnm itself."""
    monkeypatch.setattr(F, "USE_TRITON", False)
    node_calls = []
    original = F._FusedGMNMFromCenters.apply
    monkeypatch.setattr(
        F._FusedGMNMFromCenters,
        "apply",
        lambda *a: node_calls.append(1) or original(*a),
    )
    layer = GMNM(3, 2, n_components=8)
    x = torch.randn(4, 3)
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 2**62)
    plain = layer(x)
    with torch.no_grad():
        monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 0)
        inference = layer(x)
    assert not node_calls
    torch.testing.assert_close(layer(x), plain)
    assert torch.equal(inference, plain)
    assert node_calls


def test_centres_node_records_one_autograd_node(monkeypatch):
    """The default layer's offsets are not recorded by autograd: the output's graph
    holds the node, then the parameters' gradient accumulators."""
    monkeypatch.setattr(F, "USE_TRITON", False)
    layer = GMNM(3, 2, n_components=8, n_projections=2)
    out = layer(torch.randn(16, 3))
    parents = [fn for fn, _ in out.grad_fn.next_functions if fn is not None]
    assert type(out.grad_fn).__name__ == "_FusedGMNMFromCentersBackward"
    assert [type(fn).__name__ for fn in parents] == ["AccumulateGrad"] * 4


def _per_sample(model):
    """``model`` on one sample (in_features,) -> (out_features,)."""
    return lambda x1: model(x1.unsqueeze(0)).squeeze(0)


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. vmap looping over the batch
@pytest.mark.parametrize("explicit_centers", [True, False])
def test_torch_func_transforms_match_autograd(explicit_centers, monkeypatch):
    """jacrev, hessian, jvp and grad of torch.func run through the layer (its autograd
    nodes define no rules for them: it gives them its plain operations) and agree with
    derivatives taken by autograd through the custom node."""
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 0)  # outside the transforms: the node
    torch.manual_seed(0)
    model = GMNMMLP(
        2, 2, hidden_layer_sizes=(3,), n_components=6, explicit_centers=explicit_centers
    ).double()
    x = torch.randn(4, 2, dtype=torch.float64)
    f = _per_sample(model)

    jac = torch.func.vmap(torch.func.jacrev(f))(x)  # (N, out, d)
    hess = torch.func.vmap(torch.func.hessian(f))(x)  # (N, out, d, d)
    _, tangent = torch.func.jvp(f, (x[0],), (torch.ones(2, dtype=torch.float64),))
    params = dict(model.named_parameters())
    grads = torch.func.grad(
        lambda p: torch.func.functional_call(model, p, (x,)).square().sum()
    )(params)

    xr = x.clone().requires_grad_()
    out = model(xr)  # the custom node
    assert "_FusedGMNM" in type(model.layers[0](xr).grad_fn).__name__
    jac_ref = torch.stack(
        [
            torch.autograd.grad(out[:, j].sum(), xr, create_graph=True)[0]
            for j in range(2)
        ],
        dim=1,
    )
    hess_ref = torch.stack(
        [
            torch.stack(
                [
                    torch.autograd.grad(jac_ref[:, j, i].sum(), xr, retain_graph=True)[
                        0
                    ]
                    for i in range(2)
                ],
                dim=-2,
            )
            for j in range(2)
        ],
        dim=1,
    )
    grads_ref = torch.autograd.grad(model(x).square().sum(), tuple(params.values()))
    torch.testing.assert_close(jac, jac_ref)
    torch.testing.assert_close(hess, hess_ref)
    torch.testing.assert_close(tangent, jac_ref[0].sum(-1))
    for name, expected in zip(params, grads_ref, strict=True):
        torch.testing.assert_close(grads[name], expected, msg=name)


@pytest.mark.filterwarnings("error::UserWarning")
def test_vmap_over_a_batch_of_inputs_matches_the_batched_call():
    torch.manual_seed(0)
    layer = GMNM(3, 2, n_components=5, n_projections=2)
    x = torch.randn(4, 7, 3)
    torch.testing.assert_close(torch.func.vmap(layer)(x), layer(x))


@pytest.mark.parametrize("explicit_centers", [True, False])
def test_training_under_cpu_autocast_matches_float32(explicit_centers, monkeypatch):
    """Under torch.autocast (here bfloat16 on the CPU) the layer trains through plain
    operations, with autocast's precision in its matrix products and float32 responses:
    its gradients are float32 and close to those of a float32 step. (The custom node's
    backward runs outside autocast and failed on mixed dtypes.)"""
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 0)  # outside autocast: the node
    torch.manual_seed(0)
    layer = GMNM(
        4, 3, n_components=16, n_projections=2, explicit_centers=explicit_centers
    )
    x = torch.randn(64, 4)
    target = torch.randn(64, 3)

    def grads(autocast):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = layer(x)
        loss = torch.nn.functional.mse_loss(out.float(), target)
        return out.dtype, torch.autograd.grad(loss, tuple(layer.parameters()))

    dtype, low = grads(autocast=True)
    dtype_ref, full = grads(autocast=False)
    assert (dtype, dtype_ref) == (torch.bfloat16, torch.float32)
    for got, expected in zip(low, full, strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(
            got, expected, atol=2e-2 * expected.abs().max().item(), rtol=0
        )


def test_float64_under_autocast_stays_float64():
    layer = GMNM(3, 2, n_components=8).double()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    expected = layer(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected)


# the fallback calls the tests torch >= 2.4 deprecates
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_autocast_test_for_torch_before_2_4_agrees_with_torch():
    """``_autocast_on`` is torch's own test where it takes a device type (torch >=
    2.4), else a fallback; the fallback, which this torch never picks, answers as
    torch does inside and outside autocast."""
    assert F._takes_device_type(torch.is_autocast_enabled)
    assert not F._takes_device_type(lambda: False)  # a test without a device type
    assert F._autocast_on is torch.is_autocast_enabled
    for enabled in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            for device_type in ("cpu", "cuda"):
                expected = torch.is_autocast_enabled(device_type)
                assert F._autocast_on_before_2_4(device_type) == expected
            assert F._autocast_on_before_2_4("cpu") is enabled


@pytest.mark.parametrize("explicit_centers", [True, False])
def test_forward_mode_differentiation_matches_reverse_mode(
    explicit_centers, monkeypatch
):
    """torch.autograd.forward_ad (dual tensors): the custom node has no jvp, so inside
    a dual level the layer runs its plain operations; the tangent is the Jacobian-vector
    product that reverse mode gives through the node."""
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 0)
    torch.manual_seed(0)
    layer = GMNM(
        3, 2, n_components=8, n_projections=2, explicit_centers=explicit_centers
    ).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    tangent = torch.randn(6, 3, dtype=torch.float64)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x, tangent)
        out, jvp = torch.autograd.forward_ad.unpack_dual(layer(dual))
    _, jvp_ref = torch.autograd.functional.jvp(layer, (x,), (tangent,))
    torch.testing.assert_close(out, layer(x))
    torch.testing.assert_close(jvp, jvp_ref)
