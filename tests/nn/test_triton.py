"""Tests of the Triton kernels of the GMNM layer (``sklearn_gmnm.nn._triton``).

They run on a CUDA GPU where Triton is installed, and on the CPU in Triton's
interpreter when ``TRITON_INTERPRET=1`` is set before Triton is imported (CI does so:
``TRITON_INTERPRET=1 python -m pytest tests/nn/test_triton.py``). Elsewhere they skip.
"""

import copy
import os

import pytest
import torch

from sklearn_gmnm.nn import GMNM, GMNMMLP, _triton
from sklearn_gmnm.nn import functional as F

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
ON_CUDA = torch.cuda.is_available() and not INTERPRET

pytestmark = [
    pytest.mark.skipif(not _triton.available(), reason="needs Triton 3 or later"),
    # A kernel that fails falls back to torch with this warning and the same results:
    # here it fails the test instead of passing it through torch.
    pytest.mark.filterwarnings("error:The GMNM Triton kernels failed:RuntimeWarning"),
    pytest.mark.skipif(
        not (ON_CUDA or INTERPRET), reason="needs CUDA, or TRITON_INTERPRET=1 set"
    ),
]
DEVICE = "cuda" if ON_CUDA else "cpu"

requires_gpu = pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def kernels_not_failed(monkeypatch):
    """Each test starts with the kernels on: one test's failure (and fallback to
    torch) must not send the later tests through torch."""
    monkeypatch.setattr(_triton, "_failure", None)


def random_layer_tensors(n, d, m, out, k, bias, seed=0):
    """x and the layer's tensors at scales where the Gaussians overlap the data."""
    gen = torch.Generator().manual_seed(seed)

    def draw(*shape, scale=1.0):
        t = torch.randn(*shape, generator=gen) * scale
        return t.to(DEVICE).requires_grad_()

    x = draw(n, d)
    weight = draw(k * m, d, scale=0.7 / d**0.5)
    offset = draw(k * m, scale=0.5)
    mixture_weight = draw(out, m)
    b = draw(out) if bias else None
    return x, weight, offset, mixture_weight, b


def random_centres_tensors(n, d, m, out, k, bias, seed=0):
    """As random_layer_tensors, with centres (m, d) in the place of the offsets."""
    x, weight, _, mixture_weight, b = random_layer_tensors(n, d, m, out, k, bias, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    centers = torch.randn(m, d, generator=gen).to(DEVICE).requires_grad_()
    return x, weight, centers, mixture_weight, b


def centres_reference(x, weight, centers, mixture_weight, bias, k):
    """torch's form on offsets that autograd differentiates."""
    offset = F.gaussian_offsets(weight, centers, k)
    return F._gmnm_autograd(x, weight, offset, mixture_weight, bias, k)


def node_inputs(node, n, d, m, out, k, bias):
    """Random inputs for ``node`` and torch's form of the layer on them."""
    if node is _triton.TritonGMNMFromCenters:
        return random_centres_tensors(n, d, m, out, k, bias), centres_reference
    return random_layer_tensors(n, d, m, out, k, bias), F._gmnm_autograd


SHAPES = [  # (N, in_features, n_components, out_features): none a multiple of a tile
    (70, 3, 20, 1),
    (130, 5, 33, 4),
    (64, 16, 64, 16),
    (100, 2, 130, 3),
    (33, 128, 17, 128),
    (1, 7, 5, 2),
]


@pytest.mark.parametrize("n, d, m, out", SHAPES)
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_kernels_match_torch(n, d, m, out, k, bias):
    assert_matches_torch(_triton.TritonGMNM, n, d, m, out, k, bias)


def assert_matches_torch(node, n, d, m, out, k, bias):
    """``node`` (an autograd Function) gives torch's values and gradients."""
    tensors, reference = node_inputs(node, n, d, m, out, k, bias)
    wanted = [t for t in tensors if t is not None]
    y = node.apply(*tensors, k)
    grad_out = torch.randn_like(y)
    grads = torch.autograd.grad(y, wanted, grad_out)

    y_ref = reference(*tensors, k)
    grads_ref = torch.autograd.grad(y_ref, wanted, grad_out)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    third = "centers" if node is _triton.TritonGMNMFromCenters else "offset"
    names = ["x", "weight", third, "mixture_weight", "bias"][: len(grads)]
    for name, got, expected in zip(names, grads, grads_ref, strict=True):
        scale = expected.abs().max().item()
        torch.testing.assert_close(
            got, expected, atol=1e-5 * scale, rtol=1e-4, msg=f"gradient of {name}"
        )


HYBRID_SHAPES = [  # (N, in_features, n_components, out_features, k)
    *((n, d, m, out, k) for n, d, m, out in SHAPES for k in (1, 2)),
    (90, 130, 20, 3, 2),  # wider than the kernels above take
    (50, 6, 300, 130, 1),  # more Gaussians than one tile, wide output
    (70, 4, 24, 2, 3),  # three projections
]


@pytest.mark.parametrize("n, d, m, out, k", HYBRID_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_hybrid_form_matches_torch(n, d, m, out, k, bias):
    """Torch's matrix products and Triton's responses: torch's values and gradients."""
    assert_matches_torch(_triton.TritonResponsesGMNM, n, d, m, out, k, bias)


@pytest.mark.parametrize("frozen", ["x", "offset", "mixture_weight"])
def test_hybrid_form_computes_the_needed_gradients(frozen):
    """Whatever needs no gradient (here one tensor) is skipped, the rest unchanged."""
    names = ["x", "weight", "offset", "mixture_weight", "bias"]
    tensors = dict(zip(names, random_layer_tensors(90, 4, 40, 2, 2, True), strict=True))
    tensors[frozen] = tensors[frozen].detach()
    wanted = [t for name, t in tensors.items() if name != frozen]
    y = _triton.TritonResponsesGMNM.apply(*tensors.values(), 2)
    grads = torch.autograd.grad(y.square().sum(), wanted)
    y_ref = F._gmnm_autograd(*tensors.values(), 2)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), wanted)
    for got, expected in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(
            got, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4
        )


def test_hybrid_backward_takes_as_many_operations_as_a_relu_block():
    """Backward without the input's gradient: three matrix products (grad_out @ Pi,
    grad_weight, grad_mixture), the kernel, and two sums (grad_offset's partial sums,
    grad_bias), as a Linear+ReLU block's backward has three products (one for the
    hidden gradient, one per weight), its ReLU step and two bias sums."""
    names, grads, grads_ref = parameter_gradients_profiled(_triton.TritonResponsesGMNM)
    assert names.count("aten::mm") == 3
    assert names.count("aten::sum") == 2
    for got, expected in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(
            got, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4
        )


def test_hybrid_form_floors_the_exponent_as_torch_does():
    """Far from every centre the responses stop at torch's floor, not at 0 or a
    denormal number, and their gradients stay finite."""
    tensors = random_layer_tensors(40, 3, 10, 2, 2, True)
    x = (tensors[0].detach() * 1e3).requires_grad_()  # far outside every Gaussian
    h = torch.addmm(tensors[2], x, tensors[1].t()).detach().contiguous()
    phi = _triton._responses(h, 2)
    floor = F._gaussian_responses(torch.full((1, 2), 1e6), 2).item()  # torch's floor
    assert phi.min().item() == pytest.approx(floor, rel=1e-5)  # exp2 may differ by ulps
    torch.testing.assert_close(phi, F._gaussian_responses(h, 2), atol=0, rtol=1e-5)
    y = _triton.TritonResponsesGMNM.apply(x, *tensors[1:], 2)
    (grad_x,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(grad_x).all()


def test_hybrid_form_keeps_the_input_and_the_projections():
    n, d, m, k = 256, 3, 64, 2
    tensors = random_layer_tensors(n, d, m, 2, k, True)
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _triton.TritonResponsesGMNM.apply(*tensors, k)
    assert max(saved, key=lambda shape: shape[0] * shape[-1]) == (n, k * m)
    assert (n, m) not in saved  # phi is recomputed in backward, not kept


def test_only_needed_gradients_are_computed():
    x, weight, offset, mixture_weight, bias = random_layer_tensors(
        50, 4, 12, 2, 2, True
    )
    x = x.detach()  # no gradient for the input: the grad-input kernel is skipped
    y = _triton.TritonGMNM.apply(x, weight, offset, mixture_weight, bias, 2)
    (grad_pi,) = torch.autograd.grad(y.sum(), [mixture_weight])
    y_ref = F._gmnm_autograd(x, weight, offset, mixture_weight, bias, 2)
    (grad_pi_ref,) = torch.autograd.grad(y_ref.sum(), [mixture_weight])
    torch.testing.assert_close(grad_pi, grad_pi_ref, atol=1e-5, rtol=1e-4)


def test_backward_is_deterministic():
    tensors = random_layer_tensors(300, 6, 40, 3, 2, True)
    wanted = [t for t in tensors if t is not None]
    runs = []
    for _ in range(2):
        y = _triton.TritonGMNM.apply(*tensors, 2)
        runs.append(torch.autograd.grad(y.square().sum(), wanted))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def parameter_gradients_profiled(node):
    """The operations (names) that ``node``'s backward runs for the parameters'
    gradients alone (the input needs none), those gradients, and torch's."""
    tensors = random_layer_tensors(300, 6, 40, 3, 2, True)
    x, params = tensors[0].detach(), tensors[1:]
    y = node.apply(x, *params, 2)
    grad_out = torch.randn_like(y)
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU]
    ) as prof:
        grads = torch.autograd.grad(y, params, grad_out)
    y_ref = F._gmnm_autograd(x, *params, 2)
    grads_ref = torch.autograd.grad(y_ref, params, grad_out)
    return [e.name for e in prof.events()], grads, grads_ref


def test_parameter_gradients_take_one_reduction():
    """The groups' partial sums of all four parameter gradients (bias included) lie in
    one buffer, added by one torch operation: every launch costs host time."""
    names, grads, grads_ref = parameter_gradients_profiled(_triton.TritonGMNM)
    reductions = [name for name in names if name in ("aten::sum", "aten::add")]
    assert reductions == ["aten::sum"]
    for got, expected in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(
            got, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4
        )


def test_only_the_input_and_parameters_are_saved():
    """Nothing of N x m elements is kept for backward: the kernels recompute it."""
    n, d, m = 256, 3, 64
    tensors = random_layer_tensors(n, d, m, 2, 2, True)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _triton.TritonGMNM.apply(*tensors, 2)
    assert saved and max(saved) == n * d  # x is the largest: no (N, m) tensor


@pytest.mark.parametrize(
    "node",
    [_triton.TritonGMNM, _triton.TritonResponsesGMNM, _triton.TritonGMNMFromCenters],
)
def test_second_derivative_matches_torch(node):
    """create_graph=True (a physics-informed loss): the Laplacian of the output, and
    its gradient with respect to the parameters."""
    tensors, reference = node_inputs(node, 20, 2, 9, 1, 2, True)
    x = tensors[0]

    def laplacian(forward):
        y = forward(*tensors, 2)
        (grad,) = torch.autograd.grad(y.sum(), x, create_graph=True)  # (N, 2)
        second = [
            torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i]
            for i in range(2)
        ]
        lap = second[0] + second[1]  # (N,)
        return lap, torch.autograd.grad(lap.square().sum(), tensors[1:4])

    lap, grads = laplacian(node.apply)
    lap_ref, grads_ref = laplacian(reference)
    torch.testing.assert_close(lap, lap_ref, atol=1e-5, rtol=1e-4)
    for got, expected in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(
            got, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4
        )


@pytest.mark.parametrize(
    "node, failing",
    [
        (_triton.TritonGMNM, "_forward"),
        (_triton.TritonGMNM, "_backward"),
        (_triton.TritonResponsesGMNM, "_responses"),
        (_triton.TritonResponsesGMNM, "_responses_backward"),
        (_triton.TritonGMNMFromCenters, "_forward"),
        (_triton.TritonGMNMFromCenters, "_backward"),
    ],
)
def test_a_failing_kernel_falls_back_to_torch_with_a_warning(
    node, failing, monkeypatch
):
    """A GPU or Triton version the kernels do not run on must not stop a fit."""

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this GPU")

    monkeypatch.setattr(_triton, failing, broken)
    monkeypatch.setattr(_triton, "_failure", None)  # restored after the test
    tensors, reference = node_inputs(node, 40, 3, 10, 2, 2, True)
    with pytest.warns(RuntimeWarning, match="SKLEARN_GMNM_TRITON=0"):
        y = node.apply(*tensors, 2)
        grads = torch.autograd.grad(y.square().sum(), tensors)
    assert isinstance(_triton._failure, RuntimeError)
    y_ref = reference(*tensors, 2)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), tensors)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5 * b.abs().max().item(), rtol=1e-4)
    if ON_CUDA:  # from now on the layer does not even try the kernels
        assert not _triton.supports(*tensors, 2)


def test_running_out_of_memory_is_not_a_kernel_failure(monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(_triton, "_forward", out_of_memory)
    monkeypatch.setattr(_triton, "_failure", None)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        _triton.TritonGMNM.apply(*random_layer_tensors(8, 2, 4, 1, 1, True), 1)
    assert _triton._failure is None


def test_precision_follows_torch_matmul_setting():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert _triton._precision() == "ieee"
        torch.set_float32_matmul_precision("high")
        assert _triton._precision() == "tf32"
    finally:
        torch.set_float32_matmul_precision(before)


def kernel_node(layer):
    """The Triton node a float32 CUDA layer trains through."""
    if layer.explicit_centers:
        return _triton.TritonGMNMFromCenters
    return _triton.TritonGMNM


@requires_gpu
def test_supports_only_what_the_kernels_handle():
    x, weight, offset, mixture_weight, bias = random_layer_tensors(8, 4, 6, 2, 2, True)
    args = (x, weight, offset, mixture_weight, bias)
    assert _triton.supports(*args, 2)
    assert _triton.supports(*args[:4], None, 1)
    assert not _triton.supports(*args, 3)  # three projections: torch
    assert not _triton.supports(x.double(), *args[1:], 2)  # float64: torch
    assert not _triton.supports(x.cpu(), *args[1:], 2)  # the CPU: torch
    assert not _triton.supports(x[:0], *args[1:], 2)  # an empty batch: torch
    wide = torch.randn(8, 129, device="cuda")
    assert not _triton.supports(wide, torch.randn(12, 129, device="cuda"), *args[2:], 2)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert not _triton.supports(*args, 2)
        assert not _triton.supports_responses(*args, 2)
    # the hybrid form: any width and number of projections, the same tensors otherwise
    assert _triton.supports_responses(*args, 3)
    assert _triton.supports_responses(
        wide, torch.randn(12, 129, device="cuda"), *args[2:], 2
    )
    assert not _triton.supports_responses(x.double(), *args[1:], 2)
    assert not _triton.supports_responses(x.cpu(), *args[1:], 2)
    assert not _triton.supports_responses(x[:0], *args[1:], 2)


@requires_gpu
@pytest.mark.parametrize("explicit_centers", [True, False])
def test_layer_on_cuda_takes_the_kernels_and_matches_torch(
    explicit_centers, monkeypatch, count_calls
):
    torch.manual_seed(0)
    layer = GMNM(5, 3, n_components=40, explicit_centers=explicit_centers).cuda()
    x = torch.randn(1000, 7, 5, device="cuda")  # (N, T, d): flattened for the kernels
    monkeypatch.setattr(F, "USE_TRITON", "auto")  # the default: 5 features take them
    calls = count_calls(kernel_node(layer))
    out = layer(x)
    grads = torch.autograd.grad(out.square().sum(), tuple(layer.parameters()))
    assert calls, "the CUDA float32 layer did not run through the Triton kernels"

    monkeypatch.setattr(F, "USE_TRITON", False)
    out_ref = layer(x)
    grads_ref = torch.autograd.grad(out_ref.square().sum(), tuple(layer.parameters()))
    assert len(calls) == 1
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4 * b.abs().max().item(), rtol=1e-3)


@requires_gpu
def test_wide_inputs_take_the_kernels_only_when_asked(monkeypatch, count_calls):
    layer = GMNM(40, 2, n_components=16).cuda()
    few_rows = torch.randn(100, 40, device="cuda")
    many_rows = torch.randn(_triton.AUTO_FEW_ROWS + 1, 40, device="cuda")
    calls = count_calls(kernel_node(layer))
    monkeypatch.setattr(F, "USE_TRITON", "auto")
    layer(many_rows)
    assert not calls  # 40 > AUTO_MAX_FEATURES on many rows: torch's operations
    layer(few_rows)
    assert len(calls) == 1  # 40 <= AUTO_MAX_FEATURES_FEW_ROWS on few rows: the kernels
    monkeypatch.setattr(F, "USE_TRITON", True)
    layer(many_rows)
    assert len(calls) == 2


@requires_gpu
def test_training_a_network_on_cuda_matches_the_torch_path(monkeypatch):
    """A few Adam steps of a GMNM MLP: the two paths stay together."""
    torch.manual_seed(0)
    x = torch.randn(512, 6, device="cuda")
    y = torch.sin(x.sum(1, keepdim=True))

    def train(use_triton):
        monkeypatch.setattr(F, "USE_TRITON", use_triton)
        torch.manual_seed(1)
        net = GMNMMLP(6, 1, hidden_layer_sizes=(16,), n_components=32).cuda()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(20):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            opt.step()
        return loss.item()

    loss_triton, loss_torch = train(True), train(False)
    assert loss_triton == pytest.approx(loss_torch, rel=1e-3)


@requires_gpu
def test_layer_captured_as_cuda_graphs_matches_eager(monkeypatch, count_calls):
    """The kernels can be captured as CUDA graphs (``torch.cuda.make_graphed_callables``),
    which take the host's cost per launch out of a step: on new inputs the graphed
    layer gives the eager layer's outputs and gradients."""
    torch.manual_seed(0)
    monkeypatch.setattr(F, "USE_TRITON", "auto")  # the default: 4 features take them
    layer = GMNM(4, 3, n_components=40).cuda()
    graphed = copy.deepcopy(layer)
    calls = count_calls(kernel_node(layer))
    graphed = torch.cuda.make_graphed_callables(
        graphed, (torch.zeros(2048, 4, device="cuda"),)
    )
    assert calls, "warm-up and capture did not run through the Triton kernels"
    for _ in range(2):
        x = torch.randn(2048, 4, device="cuda")
        out = graphed(x)
        grads = torch.autograd.grad(out.square().sum(), tuple(graphed.parameters()))
        out_ref = layer(x)
        grads_ref = torch.autograd.grad(
            out_ref.square().sum(), tuple(layer.parameters())
        )
        torch.testing.assert_close(out, out_ref)
        for a, b in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("n, d, m, out", SHAPES)
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_centres_node_matches_torch(n, d, m, out, k, bias):
    """The offsets formed inside the node, their gradient carried to the projections
    and centres by hand: the values and gradients of torch's form."""
    assert_matches_torch(_triton.TritonGMNMFromCenters, n, d, m, out, k, bias)


@pytest.mark.parametrize(
    "frozen", [("x",), ("weight",), ("centers",), ("weight", "centers", "bias")]
)
def test_centres_node_computes_the_needed_gradients(frozen):
    names = ["x", "weight", "centers", "mixture_weight", "bias"]
    tensors = dict(
        zip(names, random_centres_tensors(90, 4, 40, 2, 2, True), strict=True)
    )
    for name in frozen:
        tensors[name] = tensors[name].detach()
    wanted = [t for name, t in tensors.items() if name not in frozen]
    y = _triton.TritonGMNMFromCenters.apply(*tensors.values(), 2)
    grads = torch.autograd.grad(y.square().sum(), wanted)
    y_ref = centres_reference(*tensors.values(), 2)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), wanted)
    for got, expected in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(
            got, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4
        )


def test_centres_node_records_one_autograd_node():
    """The offsets' operations are not recorded: the output's graph holds the node and
    the parameters' gradient accumulators, nothing between them."""
    tensors = random_centres_tensors(30, 3, 8, 2, 2, True)
    y = _triton.TritonGMNMFromCenters.apply(*tensors, 2)
    parents = [fn for fn, _ in y.grad_fn.next_functions if fn is not None]
    assert {type(fn).__name__ for fn in parents} == {"AccumulateGrad"}
    assert len(parents) == 5
    y_before = F._triton.TritonGMNM.apply(
        tensors[0], tensors[1], F.gaussian_offsets(*tensors[1:3], 2), *tensors[3:], 2
    )
    names = {type(fn).__name__ for fn, _ in y_before.grad_fn.next_functions if fn}
    assert names != {"AccumulateGrad"}  # the offsets' own nodes, before


@requires_gpu
def test_torch_func_transforms_run_on_the_cuda_layer(monkeypatch):
    """Under a torch.func transform the CUDA layer gives up its Triton node (which has
    no rules for transforms) for torch's plain operations: jacrev runs and matches the
    CPU layer's."""
    monkeypatch.setattr(F, "USE_TRITON", "auto")  # 3 features take the kernels
    torch.manual_seed(0)
    layer = GMNM(3, 2, n_components=8, n_projections=2)
    x = torch.randn(5, 3)

    def jacobians(model, inputs):
        per_sample = lambda x1: model(x1.unsqueeze(0)).squeeze(0)  # noqa: E731
        return torch.func.vmap(torch.func.jacrev(per_sample))(inputs)

    expected = jacobians(layer, x)
    got = jacobians(copy.deepcopy(layer).cuda(), x.cuda())
    torch.testing.assert_close(got.cpu(), expected, atol=1e-5, rtol=1e-4)


@requires_gpu
def test_training_under_cuda_autocast_matches_float32(monkeypatch):
    """Under CUDA autocast (float16) the layer leaves the kernels and its custom node
    for plain operations: a training step runs and its gradients are close to a float32
    step's."""
    monkeypatch.setattr(F, "USE_TRITON", "auto")
    torch.manual_seed(0)
    layer = GMNM(4, 3, n_components=16, n_projections=2).cuda()
    x = torch.randn(256, 4, device="cuda")
    target = torch.randn(256, 3, device="cuda")

    def grads(autocast):
        with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
            out = layer(x)
        loss = torch.nn.functional.mse_loss(out.float(), target)
        return out.dtype, torch.autograd.grad(loss, tuple(layer.parameters()))

    dtype, low = grads(autocast=True)
    _, full = grads(autocast=False)
    assert dtype == torch.float16
    for got, expected in zip(low, full, strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(
            got, expected, atol=2e-2 * expected.abs().max().item(), rtol=0
        )
