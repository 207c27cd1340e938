"""Tests of the opt-in compiled CPU kernel (``sklearn_gmnm.nn._cpu_kernel``).

The kernel is built once per session (about a minute the first time; torch caches the
build). Where no C++ compiler is found these tests skip; where one is, the build must
succeed.
"""

import math
import os
import shutil
import warnings

import pytest
import torch

from sklearn_gmnm.nn import GMNM, _cpu_kernel
from sklearn_gmnm.nn import functional as F


@pytest.fixture(scope="module")
def kernel():
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler to build the CPU kernel with")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed build warns: make it fail here
        module = _cpu_kernel.load()
    assert module is not None
    return module


@pytest.fixture
def kernel_on(kernel, monkeypatch):
    monkeypatch.setattr(F, "USE_CPU_KERNEL", True)
    return kernel


def torch_projections_grad(h, scale, phi, k):
    """The projections' gradient as functional._gmnm_torch_backward computes it."""
    s = scale * phi
    return (h.view(h.shape[0], k, -1) * s.unsqueeze(1)).view_as(h)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("m", [1, 8, 13, 64])  # 13: a tail after the vectors
def test_kernel_matches_torch_operations(kernel, k, m, dtype):
    torch.manual_seed(0)
    n = 197  # rows for several threads (at least 64 each), and not a multiple of 64
    h = torch.randn(n, k * m, dtype=dtype) * 3
    h[0] = 1e4  # far from every centre: the exponent's floor
    phi = kernel.responses(h, k, -F._HALF_LOG2E, F._exponent_floor2(dtype))
    torch_phi = F._gaussian_responses(h, k)
    eps = torch.finfo(dtype).eps
    # floored as torch floors it, not underflowed to 0
    torch.testing.assert_close(phi[0], torch_phi[0], rtol=4 * eps, atol=0)
    assert phi[0].min() > 0
    # exp's relative error grows with its exponent, which both forms round (in another
    # order): they agree to a few roundings of the exponent
    exponent = F._HALF_LOG2E * h.double().view(n, k, m).square().sum(1)
    tolerance = 4 * eps * (1 + exponent * math.log(2))
    assert ((phi - torch_phi) / torch_phi).abs().le(tolerance).all()

    scale = torch.randn(n, m, dtype=dtype)
    grad_h = kernel.projections_grad(h, scale, phi, k)
    # the same two products in the same order: bitwise torch's result
    assert torch.equal(grad_h, torch_projections_grad(h, scale, phi, k))


def test_kernel_results_do_not_depend_on_the_threads(kernel):
    """Rows are split over torch's threads; each row's arithmetic is the same."""
    torch.manual_seed(0)
    h, scale = torch.randn(300, 2 * 40), torch.randn(300, 40)
    floor = F._exponent_floor2(h.dtype)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        phi_one = kernel.responses(h, 2, -F._HALF_LOG2E, floor)
        grad_one = kernel.projections_grad(h, scale, phi_one, 2)
    finally:
        torch.set_num_threads(threads)
    phi = kernel.responses(h, 2, -F._HALF_LOG2E, floor)
    assert torch.equal(phi, phi_one)
    assert torch.equal(kernel.projections_grad(h, scale, phi, 2), grad_one)


def test_kernel_refuses_bad_arguments(kernel):
    h = torch.randn(4, 6)
    with pytest.raises(RuntimeError, match="contiguous"):
        kernel.responses(h.t().contiguous().t(), 2, -1.0, -100.0)
    with pytest.raises(RuntimeError, match=r"shape \(N, k\*m\)"):
        kernel.responses(h, 4, -1.0, -100.0)
    with pytest.raises(RuntimeError, match="dtype"):
        kernel.projections_grad(h, torch.randn(4, 3, dtype=torch.float64), h[:, :3], 2)
    with pytest.raises(RuntimeError, match="scale must have shape"):
        kernel.projections_grad(h, torch.randn(3, 3), h[:, :3].contiguous(), 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("explicit_centers", [True, False])
@pytest.mark.parametrize("shape", [(300, 5), (3, 7, 5), (0, 5)])
def test_layer_with_kernel_matches_torch(
    kernel, shape, explicit_centers, dtype, monkeypatch
):
    torch.manual_seed(0)
    layer = GMNM(
        5, 3, n_components=21, n_projections=2, explicit_centers=explicit_centers
    ).to(dtype)
    x = torch.randn(*shape, dtype=dtype, requires_grad=True)
    results = {}
    for on in (False, True):
        monkeypatch.setattr(F, "USE_CPU_KERNEL", on)
        out = layer(x)
        grads = torch.autograd.grad(out.square().sum(), (x, *layer.parameters()))
        with torch.no_grad():
            inference = layer(x)
        assert torch.equal(inference, out)  # inference takes the same form
        results[on] = (out, *grads)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(results[False], results[True], strict=True):
        scale = a.abs().amax().item() if a.numel() else 0.0
        torch.testing.assert_close(b, a, rtol=rtol, atol=rtol * scale)


class CountingKernel:
    """The kernel module, counting calls of each function."""

    def __init__(self, module):
        self.module = module
        self.calls = {"responses": 0, "projections_grad": 0}

    def __getattr__(self, name):
        function = getattr(self.module, name)

        def counted(*args):
            self.calls[name] += 1
            return function(*args)

        return counted


@pytest.fixture
def counting(kernel_on, monkeypatch):
    counter = CountingKernel(kernel_on)
    monkeypatch.setattr(_cpu_kernel, "_module", counter)
    return counter


def test_training_step_takes_the_kernel_both_ways(counting, monkeypatch):
    layer = GMNM(4, 2, n_components=16, n_projections=2)
    out = layer(torch.randn(32, 4))
    assert counting.calls == {"responses": 1, "projections_grad": 0}
    # backward follows the forward pass's choice, whatever the setting is by then
    monkeypatch.setattr(F, "USE_CPU_KERNEL", False)
    out.sum().backward()
    assert counting.calls == {"responses": 1, "projections_grad": 1}


def test_recomputed_responses_take_the_kernel(counting, monkeypatch):
    """Where backward recomputes phi, it frees phi before the projections' gradient is
    allocated (torch's operations): the fused gradient would hold it, a higher peak."""
    monkeypatch.setattr(F, "SAVE_PHI_MAX_ELEMENTS", 0)  # backward recomputes phi
    layer = GMNM(4, 2, n_components=16, n_projections=2)
    layer(torch.randn(32, 4)).sum().backward()
    assert counting.calls == {"responses": 2, "projections_grad": 0}


@pytest.mark.parametrize(
    "case", ["off", "bfloat16", "recorded", "non-contiguous", "cuda-like"]
)
def test_kernel_applies_only_where_it_can(kernel_on, case, monkeypatch):
    h = torch.randn(8, 6)
    if case == "off":
        monkeypatch.setattr(F, "USE_CPU_KERNEL", False)
    elif case == "bfloat16":
        h = h.bfloat16()
    elif case == "recorded":  # autograd records through h: torch's operations
        h.requires_grad_()
    elif case == "non-contiguous":
        h = h.t()
    else:
        monkeypatch.setattr(torch.Tensor, "is_cpu", property(lambda self: False))
    assert F._kernel_for(h) is None
    if case == "off":
        monkeypatch.setattr(F, "USE_CPU_KERNEL", True)
        assert F._kernel_for(h) is kernel_on


def test_plain_autograd_path_keeps_torch_operations(counting, monkeypatch):
    monkeypatch.setattr(F, "FUSED_MIN_ELEMENTS", 2**62)  # plain operations, recorded
    layer = GMNM(4, 2, n_components=16, n_projections=2)
    x = torch.randn(8, 4, requires_grad=True)
    layer(x).sum().backward()
    assert counting.calls == {"responses": 0, "projections_grad": 0}
    assert x.grad is not None


def test_torch_compile_traces_torch_operations(counting):
    """Dynamo can't trace the kernel (it would break the graph and warn): compiled, the
    layer gives Inductor torch's operations."""
    torch.manual_seed(0)
    layer = GMNM(4, 2, n_components=16, n_projections=2)
    x = torch.randn(32, 4, requires_grad=True)
    compiled = torch.compile(layer)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*Dynamo does not know how to trace")
        out = compiled(x)
        grad = torch.autograd.grad(out.sum(), x)[0]
    assert counting.calls == {"responses": 0, "projections_grad": 0}
    eager = layer(x)  # the kernel, eagerly
    assert counting.calls["responses"] == 1
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(grad, torch.autograd.grad(eager.sum(), x)[0])


def test_second_derivative_with_kernel_on(kernel_on):
    """create_graph: backward rebuilds h and phi with torch's operations."""
    torch.manual_seed(0)
    layer = GMNM(3, 2, n_components=5, n_projections=2).double()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x: layer(x), (x,))


def test_failed_build_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(F, "USE_CPU_KERNEL", True)
    monkeypatch.setattr(_cpu_kernel, "_module", None)

    def no_compiler():
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(_cpu_kernel, "_build", no_compiler)
    layer = GMNM(4, 2, n_components=16, n_projections=2)
    x = torch.randn(8, 4)
    with pytest.warns(
        RuntimeWarning, match=r"could not build its CPU kernel.*no C.*cpu-kernel\]"
    ):
        out = layer(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: not again
        again = layer(x)
    monkeypatch.setattr(F, "USE_CPU_KERNEL", False)
    assert torch.equal(out, layer(x))
    assert torch.equal(again, out)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("0", False), (" FALSE", False)],
)
def test_cpu_kernel_setting(value, expected):
    assert F._cpu_kernel_setting(value) is expected


def test_cpu_kernel_setting_refuses_other_values():
    with pytest.raises(ValueError, match="SKLEARN_GMNM_CPU_KERNEL='auto'"):
        F._cpu_kernel_setting("auto")


@pytest.mark.parametrize(("value", "expected"), [(None, "False"), ("1", "True")])
def test_environment_variable_sets_use_cpu_kernel(value, expected, setting_at_import):
    """Read once, at import (here in a fresh interpreter); off by default."""
    got, stderr = setting_at_import("SKLEARN_GMNM_CPU_KERNEL", value, "USE_CPU_KERNEL")
    assert got == expected, stderr
