"""Pure functions behind the GMNM modules.

A GMNM layer maps ``x`` (``in_features`` wide) to ``out_features`` outputs through ``m``
Gaussian basis functions, each an *augmented Gaussian projection* (AGP) with ``k``
projections (arXiv 2510.06660)::

    h   = x @ W.T + c                          # (N, k*m)  all projections in one GEMM
    y2  = h.view(N, k, m).square().sum(1)      # (N, m)    squared Mahalanobis distances
    phi = exp(-0.5 * y2)                       # (N, m)    Gaussian responses
    out = phi @ Pi.T + b                       # (N, out)  unconstrained mixture

``c`` holds ``c_i = -A_i mu_i``: the *augmented* (fused) form of ``A_i (x - mu_i)``. The
``(N, m, in_features)`` tensor ``x - mu`` is never built.

Layout: ``W`` has shape (k*m, in_features) and is *projection-major*: row ``j*m + i`` is
projection j of Gaussian i, so ``W.view(k, m, d)[:, i]`` is ``A_i``. The sum over the k
projections then adds k contiguous (N, m) slices, which on the CPU is about ten times
faster than reducing over a trailing dimension of size k.
"""

import math
import os

import torch
from torch import Tensor

from . import _cpu_kernel, _triton

__all__ = [
    "gaussian_kernel_attention",
    "gaussian_offsets",
    "gmnm",
    "gmnm_basis",
    "gmnm_conv2d",
    "gmnm_conv2d_basis",
    "gmnm_from_centers",
    "gmnm_reference",
]


def gaussian_offsets(weight: Tensor, centers: Tensor, n_projections: int) -> Tensor:
    """Fused offsets ``c_i = -A_i mu_i`` from explicit centres.

    Parameters
    ----------
    weight : Tensor of shape (k * m, in_features)
        The projection matrices, projection-major (see the module docstring).
    centers : Tensor of shape (m, in_features)
        The Gaussian centres mu_i.
    n_projections : int
        k, the number of projections per Gaussian.

    Returns
    -------
    offsets : Tensor of shape (k * m,)

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn.functional import gaussian_offsets
    >>> # m=2 Gaussians, k=2, each A_i the identity; row j*m + i is projection j of A_i
    >>> weight = torch.eye(2).repeat_interleave(2, dim=0)
    >>> gaussian_offsets(weight, torch.tensor([[1.0, 2.0], [3.0, 4.0]]), 2)
    tensor([-1., -3., -2., -4.])
    """
    projections = weight.view(n_projections, centers.shape[0], -1)  # (k, m, d)
    return -(projections * centers).sum(-1).reshape(-1)  # (k*m,)


def _checking_shapes() -> bool:
    """Whether the layers check the shapes of their inputs in Python: always, but under
    :func:`torch.jit.trace`. There a shape is a traced tensor, and each comparison
    warns (``TracerWarning``) that the trace takes its result as a constant; a wrong
    shape is still refused by the operations themselves."""
    return not torch.jit.is_tracing()


def _check_projections(weight: Tensor, n_projections: int) -> None:
    """weight's first dimension holds k * m projections: a multiple of k."""
    if _checking_shapes() and weight.shape[0] % n_projections:
        raise ValueError(
            f"weight has {weight.shape[0]} projections (its first dimension), which is "
            f"not a multiple of n_projections={n_projections}."
        )


def _exponent_floor(dtype: torch.dtype) -> float:
    """Lowest exponent passed to ``exp``: 0.8 * log(smallest normal number).

    Far from every centre ``exp(-0.5 * y2)`` underflows into denormal numbers, which
    x86 processors handle about a hundred times slower than normal ones, in the exp and
    in every product that follows. Flooring the exponent keeps phi >= 4e-31 (float32)
    or 1e-246 (float64): zero for every practical purpose, and fast.
    """
    return 0.8 * math.log(torch.finfo(dtype).tiny)


# The torch forms compute exp(-0.5 * y2) as exp2(-0.5 * log2(e) * y2), the factor folded
# into the multiply-adds that form the exponent. On the CPU torch's exp2 kernel runs
# 2.5-3.0x as fast as its exp in float32 and 1.8-2.0x in float64, for the same accuracy
# (against float64, a mean relative error of 5.4e-7, exp: 4.1e-7, both set by the
# rounding of the exponent); a training step of a layer takes 0.95-0.99x the time it
# took through exp, a forward pass 0.71-0.98x (benchmarks/results/exp_kernels.md).
_HALF_LOG2E = 0.5 * math.log2(math.e)


def _exponent_floor2(dtype: torch.dtype) -> float:
    """:func:`_exponent_floor` in base 2: the lowest exponent passed to ``exp2``."""
    return _exponent_floor(dtype) * math.log2(math.e)


def _gaussian_exp(y2: Tensor) -> Tensor:
    """``exp(-0.5 * y2)``, floored as in :func:`_exponent_floor`, through ``exp2``.

    Under :func:`torch.jit.trace` through ``exp``: the TorchScript-based ONNX exporter
    (``torch.onnx.export(..., dynamo=False)``, the default before torch 2.9) has no
    ``exp2``. The two agree to float rounding.
    """
    if torch.jit.is_tracing():
        return torch.exp((-0.5 * y2).clamp(min=_exponent_floor(y2.dtype)))
    return torch.exp2((-_HALF_LOG2E * y2).clamp(min=_exponent_floor2(y2.dtype)))


def _gaussian_responses(h: Tensor, n_projections: int) -> Tensor:
    """``exp(-0.5 * sum_j h_j**2)`` over the k contiguous (N, m) slices of h (N, k*m).

    k + 2 passes over (N, m) memory: the first ``addcmul`` starts from a broadcast 0-d
    zero, so the factor -0.5 * log2(e) (see ``_HALF_LOG2E``) costs no pass of its own.
    """
    slices = h.chunk(n_projections, dim=1)  # k tensors (N, m)
    y = torch.addcmul(  # (N, m)
        h.new_zeros(()), slices[0], slices[0], value=-_HALF_LOG2E
    )
    for h_j in slices[1:]:
        y.addcmul_(h_j, h_j, value=-_HALF_LOG2E)
    return y.clamp_(min=_exponent_floor2(h.dtype)).exp2_()  # (N, m)


_ON_OFF = {"1": True, "true": True, "0": False, "false": False}


def _read_setting(variable: str, value: str, choices: dict, spelled: str):
    """The environment variable ``variable``'s ``value`` through ``choices`` (keys in
    lower case), or a ValueError that names the variable and the values it takes."""
    try:
        return choices[value.strip().lower()]
    except KeyError:
        raise ValueError(f"{variable}={value!r} is not one of {spelled}.") from None


def _cpu_kernel_setting(value: str) -> bool:
    """``SKLEARN_GMNM_CPU_KERNEL`` read as True or False."""
    return _read_setting("SKLEARN_GMNM_CPU_KERNEL", value, _ON_OFF, "'1' or '0'")


#: Whether CPU layers compute their Gaussian responses and the projections' gradient
#: with the compiled kernel of ``sklearn_gmnm.nn._cpu_kernel`` (float32 and float64,
#: wherever no gradient is recorded through them: inference, and inside the custom
#: autograd node). Off by default: the kernel is compiled on first use (about 40 s on 2
#: cores, once; torch caches the build), which needs a C++ compiler and ninja; where
#: that fails a warning says so and torch's operations run. Side by side on 2 CPU cores
#: (``benchmarks/results/cpu_kernel.md``, two runs) a training step took 0.90-0.93x the
#: time at batch 256 and 2-16 inputs (m=256, k=2), 0.93-0.98x at 64-256 inputs,
#: 0.78-0.89x for the estimators' layer at 1-200 rows; estimator fits 0.91-0.96x. The
#: results agree with torch's operations to float rounding. Set it here, or with the
#: environment variable ``SKLEARN_GMNM_CPU_KERNEL`` (1 or 0) before the import.
USE_CPU_KERNEL = _cpu_kernel_setting(os.environ.get("SKLEARN_GMNM_CPU_KERNEL", "0"))

_CPU_KERNEL_DTYPES = (torch.float32, torch.float64)


def _kernel_for(h: Tensor):
    """The compiled CPU kernel where it is on and applies to ``h``, else None: a
    contiguous float32 or float64 CPU tensor through which no gradient is recorded,
    outside :func:`torch.compile` (which can't trace the kernel, and fuses torch's
    operations itself)."""
    if (
        USE_CPU_KERNEL
        and h.is_cpu
        and h.dtype in _CPU_KERNEL_DTYPES
        and not h.requires_grad
        and h.is_contiguous()
        and not _compiling()
    ):
        return _cpu_kernel.load()
    return None


def _responses(h: Tensor, n_projections: int, kernel=None) -> Tensor:
    """:func:`_gaussian_responses`, through the compiled CPU ``kernel`` if given."""
    if kernel is None:
        return _gaussian_responses(h, n_projections)
    return kernel.responses(h, n_projections, -_HALF_LOG2E, _exponent_floor2(h.dtype))


# When a gradient is wanted, inputs with at least this many elements in h (rows x k*m)
# go through the custom node below, smaller ones through autograd's op-by-op graph. The
# node, keeping phi, was as fast or faster at every size measured on 2 CPU cores
# (benchmarks/results/autograd_paths.md): 0.66-0.83x autograd's time for a training
# step at 1-200 rows with k=1 and 128 Gaussians (the estimators' layer; a fit took
# 0.89-0.95x the time), 0.67x at one row with k=2 and 256 Gaussians, a tie (1.01x) at 32
# rows with 16 inputs. So it takes every size: 0. (It was 2**17 at first, the size
# where the node had been measured first; raise it to send small inputs through the
# plain operations again.) Without a gradient (inference) the plain operations run at
# every size: no node is needed, their output is bitwise the node's, and they are faster
# for small inputs (28-35 vs 39-45 us at one row).
FUSED_MIN_ELEMENTS = 0

# Up to this many elements in phi (rows x m) the custom node keeps phi for backward
# instead of recomputing it from h: bitwise the same gradients, for at most 4 MiB
# (float32) more saved memory per call. Keeping it gave 2-20% faster steps at 8-1,024
# rows (benchmarks/results/autograd_paths.md), and on 2 CPU cores at 4,096 rows (m=256,
# k=2) 0.79x the step time at 16 inputs and 0.92x at 64 (equal at 2), while the peak
# memory of a step stayed 1.25-1.33x a Linear+ReLU block's, because the backward pass
# holds phi either way. Above it, recomputing keeps the saved memory that of a
# Linear+ReLU block of width k*m (deep stacks, long sequences).
SAVE_PHI_MAX_ELEMENTS = 2**20


# From this many input features on, backward computes the projections' gradient in
# the layout of ``weight`` (k*m, d), ``grad_h.t() @ x``; below it, as the transpose of
# ``x.t() @ grad_h``, whose matrix product is faster for few features, although
# autograd then copies the gradient (k*m*d elements, whatever the batch) into weight's
# layout. Side by side on 2 CPU cores, m=256, k=2, two runs
# (benchmarks/results/grad_weight_layout.md): the contiguous form took 0.87-0.93x the
# time of a training step at 128 and 256 features and 256 rows, 0.94-0.99x at 1,024
# rows, 0.98-1.03x at 4,096; at 64 features 0.92-0.96x at 256 rows but 1.02-1.08x at
# 4,096; at 2-32 features up to 1.23x.
CONTIGUOUS_GRAD_WEIGHT_MIN_FEATURES = 128
# ... and from this many features on batches of up to CONTIGUOUS_GRAD_WEIGHT_FEW_ROWS
# rows, where the copy weighs more against the matrix product: at 64 features, in two
# more runs (benchmarks/results/grad_weight_layout_rows.md), 0.93-0.96x at 256 rows,
# 0.96-0.99x at 512, 0.97-1.01x at 1,024; at 32 features no clear gain to take.
CONTIGUOUS_GRAD_WEIGHT_MIN_FEATURES_FEW_ROWS = 64
CONTIGUOUS_GRAD_WEIGHT_FEW_ROWS = 1024


def _contiguous_grad_weight(x: Tensor) -> bool:
    """Whether backward computes the projections' gradient for the (2-d) input ``x``
    in the weight's layout (see ``CONTIGUOUS_GRAD_WEIGHT_MIN_FEATURES``)."""
    n_rows, in_features = x.shape
    return in_features >= CONTIGUOUS_GRAD_WEIGHT_MIN_FEATURES or (
        in_features >= CONTIGUOUS_GRAD_WEIGHT_MIN_FEATURES_FEW_ROWS
        and n_rows <= CONTIGUOUS_GRAD_WEIGHT_FEW_ROWS
    )


def _triton_setting(value: str):
    """``SKLEARN_GMNM_TRITON`` read as "auto", True or False."""
    choices = {"auto": "auto", **_ON_OFF}
    return _read_setting("SKLEARN_GMNM_TRITON", value, choices, "'auto', '1' or '0'")


#: When :func:`gmnm` runs float32 CUDA inputs through the Triton kernels of
#: ``sklearn_gmnm.nn._triton`` (where Triton is installed and they apply): "auto" (the
#: default) for up to ``_triton.AUTO_MAX_FEATURES`` (32) input features, where they
#: measured no slower than torch's operations on an H100 and an H200 and took a small
#: fraction of the memory, and for up to ``_triton.AUTO_MAX_FEATURES_FEW_ROWS`` (64)
#: features on batches of up to ``_triton.AUTO_FEW_ROWS`` (8,192) rows, where they
#: launch fewer operations; True wherever they apply (up to 128 features; at 64
#: features and 65,536 rows they ran 0.50-0.66x as fast as torch's operations); False
#: never. Set it here, or with the environment variable ``SKLEARN_GMNM_TRITON`` (auto, 1
#: or 0) before the import.
USE_TRITON = _triton_setting(os.environ.get("SKLEARN_GMNM_TRITON", "auto"))


def _use_triton(args) -> bool:
    """Whether :func:`gmnm` takes the Triton kernels for these (2-d) arguments."""
    if USE_TRITON is False or not _triton.supports(*args):
        return False
    if USE_TRITON is True:
        return True
    n_rows, in_features = args[0].shape
    return in_features <= _triton.AUTO_MAX_FEATURES or (
        in_features <= _triton.AUTO_MAX_FEATURES_FEW_ROWS
        and n_rows <= _triton.AUTO_FEW_ROWS
    )


def _autocast_on_before_2_4(device_type: str) -> bool:
    """:func:`_autocast_on` where ``torch.is_autocast_enabled`` takes no device type
    (torch < 2.4) and answers for CUDA."""
    if device_type == "cpu":
        return torch.is_autocast_cpu_enabled()
    return device_type == "cuda" and torch.is_autocast_enabled()


def _takes_device_type(is_autocast_enabled) -> bool:
    """Whether torch's autocast test takes a device type (it does from torch 2.4)."""
    try:
        is_autocast_enabled("cpu")
    except TypeError:
        return False
    return True


#: Whether :func:`torch.autocast` is on for a device type (``"cpu"``, ``"cuda"``, ...):
#: torch's own test where it takes the device type, which :func:`gmnm` then calls
#: without a Python frame of ours on every forward pass.
_autocast_on = (
    torch.is_autocast_enabled
    if _takes_device_type(torch.is_autocast_enabled)
    else _autocast_on_before_2_4
)


#: Whether a :mod:`torch.func` transform (``vmap``, ``grad``, ``jacrev``, ``jvp``,
#: ``hessian``, ...) is running. The custom autograd nodes and the Triton nodes define
#: no ``setup_context``, ``vmap`` or ``jvp`` rule, so under a transform the layer runs
#: plain, out-of-place operations, which support every transform (physics-informed
#: losses often take derivatives through ``torch.func``). Torch's private test, used by
#: ``torch.autograd.Function`` itself; where it is missing, no transform is assumed.
_functorch_transforms_active = getattr(
    torch._C, "_are_functorch_transforms_active", lambda: False
)


def _compiling() -> bool:
    """Whether :func:`torch.compile` is tracing (never, in a torch without the test: it
    came with torch 2.3). Looked up on each call, so tests can stand in for it."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return is_compiling is not None and is_compiling()


#: Whether :func:`torch.export.export` is tracing (never, in a torch without the test). An
#: exported program is a graph of torch's operations, with no place for the custom
#: autograd nodes; through the node, export also fixed a largest batch size (from
#: ``SAVE_PHI_MAX_ELEMENTS``).
_exporting = getattr(torch.compiler, "is_exporting", lambda: False)


def _forward_ad_active() -> bool:
    """Whether forward-mode differentiation (:mod:`torch.autograd.forward_ad`, inside
    ``dual_level()``) is on: the custom nodes define no ``jvp``, the plain operations
    do. The level is torch's module variable, -1 outside every ``dual_level()``."""
    return getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0


def _leave_to_inductor(x: Tensor) -> bool:
    """Whether :func:`torch.compile` is tracing a GPU layer: then :func:`gmnm` gives it
    the plain operations rather than the custom node, and Inductor fuses them and
    derives their backward itself. Compiled that way the layer's training step ran
    0.98-1.39x as fast as the compiled custom node on an H100 and an H200 (median 1.08x;
    1.06x the eager ReLU block's speed at 256 inputs and 65,536 rows on both), for
    1.20-1.38x the ReLU block's memory instead of 0.80-1.23x
    (``benchmarks/results/layer_speed_gpu*.md``, ``compiled_autograd`` vs ``compiled``).
    On the CPU, compiled, the plain operations ran 0.35-0.84x the ReLU block's speed and
    the custom node 0.69-1.07x (``layer_speed.md``; 0.36-0.81x and 0.63-1.08x in a later
    run): there the node stays."""
    return x.is_cuda and _compiling()


def _gmnm_autograd(x, weight, offset, mixture_weight, bias, n_projections):
    """The same maths as the custom node, left to autograd op by op (inference, and
    torch.compile on a GPU)."""
    h = torch.addmm(offset, x, weight.t())  # (N, k*m)
    phi = _responses(h, n_projections, _kernel_for(h))  # (N, m)
    return torch.nn.functional.linear(phi, mixture_weight, bias)  # (N, out)


class _FusedGMNM(torch.autograd.Function):
    """GMNM forward and backward in one autograd node.

    Autograd on the plain formula keeps ``h`` (N, k*m), its square, the sum and ``phi``
    alive until backward and launches one kernel per step. This node keeps the input,
    ``h`` and, for small inputs, ``phi`` (see ``SAVE_PHI_MAX_ELEMENTS``); for larger ones
    it recomputes ``phi`` from ``h`` in backward (one elementwise pass), so that its saved
    memory is that of a Linear+ReLU block whose hidden width is ``k*m``. (Keeping
    ``phi`` and recomputing ``h`` instead was slower at every size measured.)

    When a second derivative is asked for (``create_graph=True``, as physics-informed
    losses do), backward recomputes ``h`` and ``phi`` from the inputs with differentiable
    operations, so the graph through them is exact.
    """

    @staticmethod
    def forward(ctx, x, weight, offset, mixture_weight, bias, n_projections):
        out, h, keep_phi = _node_forward(
            ctx, x, weight, offset, mixture_weight, bias, n_projections
        )
        ctx.save_for_backward(x, weight, offset, mixture_weight, h, keep_phi)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, offset, mixture_weight, h, phi = ctx.saved_tensors
        return _gmnm_torch_backward(
            x,
            weight,
            offset,
            mixture_weight,
            h,
            grad_out,
            ctx.n_projections,
            ctx.has_bias,
            ctx.needs_input_grad,
            phi=phi,
            kernel=ctx.kernel,
        )


def _node_forward(ctx, x, weight, offset, mixture_weight, bias, n_projections):
    """The custom nodes' forward: the output, ``h`` and ``phi`` if it is to be kept."""
    h = torch.addmm(offset, x, weight.t())  # (N, k*m)
    # chosen here, for backward too: the same form both ways
    ctx.kernel = _kernel_for(h)
    phi = _responses(h, n_projections, ctx.kernel)  # (N, m)
    ctx.n_projections = n_projections
    ctx.has_bias = bias is not None
    keep_phi = phi if phi.numel() <= SAVE_PHI_MAX_ELEMENTS else None
    if bias is None:
        return phi @ mixture_weight.t(), h, keep_phi  # (N, out)
    return torch.addmm(bias, phi, mixture_weight.t()), h, keep_phi  # (N, out)


class _FusedGMNMFromCenters(torch.autograd.Function):
    """:class:`_FusedGMNM` with the offsets formed from explicit centres inside the node.

    ``GMNM(explicit_centers=True)``, the default, forms ``c_i = -A_i mu_i`` from its
    centres in every forward pass. Left to autograd, :func:`gaussian_offsets` adds five
    operations to the forward pass and as many nodes to the backward pass, each costing
    the host a few microseconds whatever the batch size. This node forms the offsets
    without recording them, and carries their gradient to ``weight`` and ``centers``
    itself (``dc_i / dA_i = -mu_i``, ``dc_i / dmu_i = -A_i``).
    """

    @staticmethod
    def forward(ctx, x, weight, centers, mixture_weight, bias, n_projections):
        offset = gaussian_offsets(weight, centers, n_projections)  # (k*m,)
        out, h, keep_phi = _node_forward(
            ctx, x, weight, offset, mixture_weight, bias, n_projections
        )
        ctx.save_for_backward(x, weight, centers, mixture_weight, h, keep_phi)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, centers, mixture_weight, h, phi = ctx.saved_tensors
        k = ctx.n_projections
        # With grad mode on (a second derivative), backward rebuilds h from the
        # offsets: differentiable in weight and centers here.
        offset = (
            gaussian_offsets(weight, centers, k) if torch.is_grad_enabled() else None
        )
        needs = _needs_through_offsets(ctx.needs_input_grad)
        grads = _gmnm_torch_backward(
            x,
            weight,
            offset,
            mixture_weight,
            h,
            grad_out,
            k,
            ctx.has_bias,
            needs,
            phi=phi,
            kernel=ctx.kernel,
        )
        return _offsets_backward(grads, weight, centers, k, ctx.needs_input_grad)


def _needs_through_offsets(needs_input_grad):
    """A centres node's ``needs_input_grad`` (x, weight, centers, mixture_weight, bias,
    k) as the offsets' node sees it: the offsets need a gradient when the projections
    or the centres do."""
    needs = list(needs_input_grad)
    needs[2] = needs[1] or needs[2]
    return tuple(needs)


def _offsets_backward(grads, weight, centers, n_projections, needs_input_grad):
    """A node's gradients for (x, weight, offset, mixture_weight, bias, k) turned into
    those for (x, weight, centers, mixture_weight, bias, k), through the offsets
    ``c_i = -A_i mu_i``: ``dc_i / dA_i = -mu_i`` and ``dc_i / dmu_i = -A_i``.
    ``needs_input_grad`` is the centres node's."""
    grad_x, grad_weight, grad_offset, grad_mixture, grad_bias, _ = grads
    need_weight, need_centers = needs_input_grad[1:3]
    grad_centers = None
    if grad_offset is not None:
        k, m = n_projections, centers.shape[0]
        grad_c = grad_offset.view(k, m, 1)
        if need_weight:  # (k*m, d): -g_{j,i} * mu_i on row j*m + i
            grad_weight = torch.addcmul(
                grad_weight.view(k, m, -1), grad_c, centers, value=-1
            ).view(k * m, -1)
        if need_centers:  # (m, d): -sum_j g_{j,i} * A_{j,i}
            grad_centers = (grad_c * weight.view(k, m, -1)).sum(0).neg()
    return grad_x, grad_weight, grad_centers, grad_mixture, grad_bias, None


def _gmnm_torch_backward(
    x,
    weight,
    offset,
    mixture_weight,
    h,
    grad_out,
    n_projections,
    has_bias,
    needs,
    phi=None,
    kernel=None,
):
    """Gradients of a GMNM layer for (x, weight, offset, mixture_weight, bias, k).

    ``h`` is the saved projection tensor (N, k*m), or None to recompute it; ``phi`` the
    saved responses (N, m), or None to recompute them from ``h``. With grad
    mode on (a second derivative is asked for, ``create_graph=True``, as physics-informed
    losses do), ``h`` and ``phi`` are rebuilt from the inputs with differentiable
    operations, so the graph through them is exact. ``needs`` is the autograd node's
    ``needs_input_grad``. ``kernel``: the compiled CPU kernel the forward pass took
    (see ``USE_CPU_KERNEL``), or None for torch's operations.
    """
    k = n_projections
    n = x.shape[0]
    if h is None or torch.is_grad_enabled():
        h = torch.addmm(offset, x, weight.t())  # (N, k*m)
        phi = None
        kernel = None  # the graph through h and phi needs torch's operations
    # The fused gradient below holds phi until grad_h is allocated. A kept phi is held
    # by the node anyway; a recomputed one would raise the peak of memory by (N, m)
    # (1.25-1.30x a Linear+ReLU block's at 32,768 rows instead of 1.04-1.09x), so then
    # phi is freed first, as torch's operations do.
    fuse_gradient = kernel is not None and phi is not None
    if phi is None:
        phi = _responses(h, k, kernel)  # (N, m)

    grad_mixture = grad_out.t() @ phi if needs[3] else None  # (out, m)
    grad_bias = grad_out.sum(0) if has_bias and needs[4] else None

    # d out / d h_j = -(grad_out @ Pi) * phi * h_j for each projection slice j; the
    # sign goes on the small (out, m) matrix rather than on an (N, m) tensor.
    scale = grad_out @ mixture_weight.neg()  # (N, m)
    if fuse_gradient:  # the same products in one pass
        grad_h = kernel.projections_grad(h, scale, phi, k)  # (N, k*m)
        del phi, scale
    else:
        scale.mul_(phi)
        del phi  # free it before grad_h is allocated: a lower peak of memory
        # explicit sizes, not -1: a view of an empty batch (N = 0) can't infer them
        grad_h = (h.view(n, k, scale.shape[1]) * scale.unsqueeze(1)).view_as(h)
        del scale

    # Both GEMMs are skinny when in_features is small; these operand orders are the
    # fast ones on the CPU (up to 10x at in_features=2, equal at 64).
    grad_x = None
    if needs[0]:
        grad_x = torch.nn.functional.linear(grad_h, weight.t().contiguous())  # (N, d)
    grad_weight = None
    if needs[1]:
        if _contiguous_grad_weight(x):
            grad_weight = grad_h.t() @ x  # (k*m, d), laid out as weight
        else:  # (k*m, d), transposed: autograd copies it into weight's layout
            grad_weight = (x.t() @ grad_h).t()
    grad_offset = grad_h.sum(0) if needs[2] else None  # (k*m,)
    return grad_x, grad_weight, grad_offset, grad_mixture, grad_bias, None


def gmnm_basis(x: Tensor, weight: Tensor, offset: Tensor, n_projections: int) -> Tensor:
    """Gaussian responses ``phi`` of shape (..., m) for inputs of shape (..., in_features).

    Parameters are those of :func:`gmnm`; each response lies in (0, 1].

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn.functional import gmnm_basis
    >>> weight, offset = torch.eye(2), torch.zeros(2)  # one Gaussian at 0, k=2
    >>> gmnm_basis(torch.zeros(1, 2), weight, offset, n_projections=2)
    tensor([[1.]])
    """
    h = torch.nn.functional.linear(x, weight, offset)  # (*, k*m)
    y2 = h.unflatten(-1, (n_projections, -1)).square().sum(-2)  # (*, m)
    return _gaussian_exp(y2)


def gmnm(
    x: Tensor,
    weight: Tensor,
    offset: Tensor,
    mixture_weight: Tensor,
    bias: Tensor | None = None,
    n_projections: int = 1,
) -> Tensor:
    """Apply a GMNM layer in the fused augmented form.

    Float32 inputs on a CUDA GPU go through Triton kernels that keep the hidden tensors
    in registers (``sklearn_gmnm.nn._triton``; where Triton is installed, for
    ``n_projections`` 1 or 2, by default up to 32 input features: see ``USE_TRITON``).
    Otherwise, when a gradient is wanted, inputs go through a custom autograd node (one
    node, a hand-written backward that keeps ``x``, ``h`` and, up to
    ``SAVE_PHI_MAX_ELEMENTS``, ``phi``; ``FUSED_MIN_ELEMENTS`` can send small inputs
    through plain autograd operations instead); inference always takes the plain
    operations, and so do :func:`torch.autocast` (with the responses in float32), the
    transforms of :mod:`torch.func` and forward-mode differentiation, for which the
    nodes define no rules. On the CPU, ``USE_CPU_KERNEL`` (off by default) computes the
    Gaussian responses and their gradient in a compiled kernel wherever no gradient is
    recorded through them. All compute the same values. :func:`torch.compile` traces
    the torch forms: on a GPU the plain operations, which Inductor fuses, on the CPU the
    custom node.

    Parameters
    ----------
    x : Tensor of shape (..., in_features)
        Input; any number of leading dimensions.
    weight : Tensor of shape (k * m, in_features)
        The projection matrices, projection-major: ``weight.view(k, m, d)[:, i]`` is
        ``A_i``.
    offset : Tensor of shape (k * m,)
        The fused offsets ``c_i = -A_i mu_i`` (see :func:`gaussian_offsets`).
    mixture_weight : Tensor of shape (out_features, m)
        The unconstrained mixture weights ``Pi``.
    bias : Tensor of shape (out_features,), default=None
        Output bias.
    n_projections : int, default=1
        k, the number of projections per Gaussian.

    Returns
    -------
    out : Tensor of shape (..., out_features)

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn.functional import gmnm
    >>> x = torch.randn(5, 3)
    >>> weight, offset = torch.randn(8, 3), torch.zeros(8)  # m=4 Gaussians, k=2
    >>> gmnm(x, weight, offset, torch.randn(1, 4), n_projections=2).shape
    torch.Size([5, 1])
    """
    _check_projections(weight, n_projections)
    # 2-d inputs go through as they are: the reshapes cost a few microseconds of the
    # host's time per call, which shows in small batches
    x2d = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])  # (N, d)
    args = (x2d, weight, offset, mixture_weight, bias, n_projections)
    out = _run(_path(args), args)
    return out if x.dim() == 2 else out.view(*x.shape[:-1], out.shape[-1])


def _path(args) -> str:
    """Which form :func:`gmnm` computes these (2-d) arguments in: "triton" (the Triton
    kernels), "plain" (operations left to autograd: inference, small inputs, and
    :func:`torch.compile` on a GPU), "out_of_place" (the plain operations without
    in-place steps, under a :mod:`torch.func` transform, forward-mode automatic
    differentiation, :func:`torch.jit.trace` or :func:`torch.export.export`),
    "autocast" (the plain operations with the responses in float32, under
    :func:`torch.autocast`) or "node" (the custom autograd node).

    :func:`torch.jit.trace` records a custom node as a Python call, which a traced
    module can't be saved with, and the Triton kernels not at all; the plain
    operations trace into a graph that saves, loads and differentiates as the layer
    does, and export into a program for any batch size.

    ``args[2]`` may be the offsets or the centres: only its dtype, device and whether
    it requires a gradient are read.
    """
    # Called on every forward pass: the host's time here shows in small batches (see
    # benchmarks/results/host_overhead.md).
    x, weight, offset, mixture_weight, bias, _ = args
    if (
        _functorch_transforms_active()
        or _forward_ad_active()
        or torch.jit.is_tracing()
        or _exporting()
    ):
        return "out_of_place"
    # (x.device builds a device object: several microseconds of the host's time in a
    # training step, more than every other test here together)
    if _autocast_on("cuda" if x.is_cuda else "cpu" if x.is_cpu else x.device.type):
        return "autocast"
    if x.is_cuda and _use_triton(args):
        return "triton"
    wants_grad = torch.is_grad_enabled() and (
        x.requires_grad
        or weight.requires_grad
        or offset.requires_grad
        or mixture_weight.requires_grad
        or (bias is not None and bias.requires_grad)
    )
    if (
        not wants_grad
        or x.shape[0] * weight.shape[0] < FUSED_MIN_ELEMENTS
        or _leave_to_inductor(x)
    ):
        return "plain"
    return "node"


def _run(path, args):
    """:func:`gmnm` on (2-d) arguments in the form :func:`_path` picked."""
    if path == "triton":
        return _triton.TritonGMNM.apply(*args)
    if path == "plain":
        return _gmnm_autograd(*args)
    if path == "out_of_place":
        return _gmnm_out_of_place(*args)
    if path == "autocast":
        return _gmnm_autocast(*args)
    return _FusedGMNM.apply(*args)


def _gmnm_autocast(x, weight, offset, mixture_weight, bias, n_projections):
    """The plain operations under :func:`torch.autocast`. The custom nodes' backward
    runs outside autocast and would mix its lower precision with float32; autograd
    replays each operation's casts. The responses are computed in float32 from the
    lower-precision projections (as CUDA autocast does for ``exp``); both matrix
    products run in autocast's precision."""
    h = torch.addmm(offset, x, weight.t())  # (N, k*m), autocast's dtype
    if h.dtype in (torch.float16, torch.bfloat16):  # float64 stays float64
        h = h.float()
    phi = _gaussian_responses(h, n_projections)  # (N, m), float32 or float64
    return torch.nn.functional.linear(phi, mixture_weight, bias)  # (N, out)


def _gmnm_out_of_place(x, weight, offset, mixture_weight, bias, n_projections):
    """The plain operations with no in-place step, for :mod:`torch.func` transforms
    and forward-mode differentiation: ``vmap`` has no batching rule for the in-place
    ``addcmul_`` and ``clamp_`` of :func:`_gaussian_responses` and would loop over the
    batch, with a warning."""
    phi = gmnm_basis(x, weight, offset, n_projections)  # (N, m)
    return torch.nn.functional.linear(phi, mixture_weight, bias)  # (N, out)


def gmnm_from_centers(
    x: Tensor,
    weight: Tensor,
    centers: Tensor,
    mixture_weight: Tensor,
    bias: Tensor | None = None,
    n_projections: int = 1,
) -> Tensor:
    """:func:`gmnm` with its offsets formed from explicit centres, ``c_i = -A_i mu_i``.

    The same as ``gmnm(x, weight, gaussian_offsets(weight, centers, n_projections),
    mixture_weight, bias, n_projections)``, which it computes where :func:`gmnm` would
    take plain operations (inference, autocast, :mod:`torch.func` transforms,
    :func:`torch.compile` on a GPU). Where
    :func:`gmnm` would take its custom autograd node or the Triton kernels, a node of
    their own forms the offsets inside and carries their gradient to ``weight`` and
    ``centers`` itself: autograd then records one node rather than six. On 2 CPU cores
    that made a training step of a layer 0.90-0.96x as long at up to 256 rows, and no
    different at 4,096 (``benchmarks/results/centres_node.md``); on a GPU, where eager
    steps of up to 65,536 rows are bound by the host's time per operation, it has not
    been timed yet.

    Parameters
    ----------
    x : Tensor of shape (..., in_features)
        Input; any number of leading dimensions.
    weight : Tensor of shape (k * m, in_features)
        The projection matrices, projection-major: ``weight.view(k, m, d)[:, i]`` is
        ``A_i``.
    centers : Tensor of shape (m, in_features)
        The Gaussian centres ``mu_i``.
    mixture_weight : Tensor of shape (out_features, m)
        The unconstrained mixture weights ``Pi``.
    bias : Tensor of shape (out_features,), default=None
        Output bias.
    n_projections : int, default=1
        k, the number of projections per Gaussian.

    Returns
    -------
    out : Tensor of shape (..., out_features)

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn.functional import gmnm_from_centers
    >>> weight = torch.eye(2)  # one Gaussian, k=2, A = I
    >>> gmnm_from_centers(torch.ones(1, 2), weight, torch.ones(1, 2), torch.ones(1, 1),
    ...                   n_projections=2)
    tensor([[1.]])
    """
    _check_projections(weight, n_projections)
    x2d = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])  # (N, d)
    args = (x2d, weight, centers, mixture_weight, bias, n_projections)
    path = _path(args)
    if path == "node":
        out = _FusedGMNMFromCenters.apply(*args)
    elif path == "triton":
        out = _triton.TritonGMNMFromCenters.apply(*args)
    else:
        offset = gaussian_offsets(weight, centers, n_projections)
        out = _run(path, (x2d, weight, offset, mixture_weight, bias, n_projections))
    return out if x.dim() == 2 else out.view(*x.shape[:-1], out.shape[-1])


def gmnm_reference(
    x: Tensor,
    projections: Tensor,
    centers: Tensor,
    mixture_weight: Tensor,
    bias: Tensor | None = None,
) -> Tensor:
    """The explicit (unfused) GMNM formula, for tests and benchmarks only.

    Builds the (N, m, in_features) tensor ``x - mu``: m times the memory of the fused
    form. ``projections`` has shape (m, k, in_features), ``centers`` (m, in_features).

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn import GMNM
    >>> from sklearn_gmnm.nn.functional import gmnm_reference
    >>> layer = GMNM(3, 1, n_components=4).double()
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> g = layer.gaussians()
    >>> explicit = gmnm_reference(
    ...     x, g["projections"], g["centers"], g["mixture_weights"], layer.bias
    ... )
    >>> torch.allclose(explicit, layer(x))
    True
    """
    z = x.unsqueeze(-2) - centers  # (*, m, d)
    y = torch.einsum("...md,mkd->...mk", z, projections)  # (*, m, k)
    phi = torch.exp(-0.5 * y.square().sum(-1))  # (*, m)
    return torch.nn.functional.linear(phi, mixture_weight, bias)


def gmnm_conv2d_basis(
    x: Tensor,
    weight: Tensor,
    offset: Tensor,
    n_projections: int = 1,
    stride=1,
    padding=0,
    dilation=1,
) -> Tensor:
    """Gaussian responses of every patch, shape (N, m, H_out, W_out), each in (0, 1].

    Parameters are those of :func:`gmnm_conv2d`.

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn.functional import gmnm_conv2d_basis
    >>> weight, offset = torch.randn(8, 3, 3, 3), torch.zeros(8)  # m=4, k=2
    >>> gmnm_conv2d_basis(torch.randn(2, 3, 5, 5), weight, offset, 2).shape
    torch.Size([2, 4, 3, 3])
    """
    _check_projections(weight, n_projections)
    h = torch.nn.functional.conv2d(
        x, weight, offset, stride, padding, dilation
    )  # (N, k*m, H', W')
    y2 = h.unflatten(1, (n_projections, -1)).square().sum(1)  # (N, m, H', W')
    return _gaussian_exp(y2)


def gmnm_conv2d(
    x: Tensor,
    weight: Tensor,
    offset: Tensor,
    mixture_weight: Tensor,
    bias: Tensor | None = None,
    n_projections: int = 1,
    stride=1,
    padding=0,
    dilation=1,
) -> Tensor:
    """Apply a GMNM convolution: the GMNM of every patch, as two convolutions.

    Parameters
    ----------
    x : Tensor of shape (N, C_in, H, W)
        Input images.
    weight : Tensor of shape (k * m, C_in, kh, kw)
        The projections as a convolution kernel, projection-major as in :func:`gmnm`.
    offset : Tensor of shape (k * m,)
        The fused offsets ``c_i = -A_i mu_i`` (patch space).
    mixture_weight : Tensor of shape (C_out, m)
        The mixture weights.
    bias : Tensor of shape (C_out,), default=None
        Output bias.
    n_projections : int, default=1
        k, the number of projections per Gaussian.
    stride, padding, dilation
        As for :func:`torch.nn.functional.conv2d`.

    Returns
    -------
    out : Tensor of shape (N, C_out, H_out, W_out)

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn.functional import gmnm_conv2d
    >>> weight, offset = torch.randn(8, 3, 3, 3), torch.zeros(8)  # m=4, k=2
    >>> gmnm_conv2d(torch.randn(2, 3, 5, 5), weight, offset, torch.randn(6, 4),
    ...             n_projections=2, padding=1).shape
    torch.Size([2, 6, 5, 5])
    """
    phi = gmnm_conv2d_basis(
        x, weight, offset, n_projections, stride, padding, dilation
    )  # (N, m, H', W')
    # The mixture is a 1x1 convolution: Pi (C_out, m) at every position.
    return torch.nn.functional.conv2d(
        phi, mixture_weight[:, :, None, None], bias
    )  # (N, C_out, H', W')


def gaussian_kernel_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    temperature: Tensor | float,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    r"""Attention whose scores are a Gaussian kernel of the query-key distance.

    .. math::

        \operatorname{softmax}_j\left(-\frac{\lVert q_i - k_j \rVert^2}{2\tau}\right) v_j

    in place of ``softmax_j(q_i . k_j / sqrt(E))``. Since
    ``-||q - k||^2 = 2 q.k - ||q||^2 - ||k||^2`` and the softmax over ``j`` ignores the
    ``||q_i||^2`` term, this is dot-product attention with queries scaled by ``1/tau``
    and an additive score ``-||k_j||^2 / (2 tau)``; it runs through
    :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels included).

    Parameters
    ----------
    query : Tensor of shape (..., L, E)
    key : Tensor of shape (..., S, E)
    value : Tensor of shape (..., S, Ev)
    temperature : Tensor broadcastable to (..., 1, 1), or float
        The kernel's variance ``tau`` (positive), e.g. one per head of shape (H, 1, 1).
    attn_mask : Tensor, default=None
        Boolean (True = attend) or additive float mask, broadcastable to (..., L, S).
    dropout_p : float, default=0.0
        Dropout on the attention weights.

    Returns
    -------
    out : Tensor of shape (..., L, Ev)

    Examples
    --------
    >>> import torch
    >>> from sklearn_gmnm.nn.functional import gaussian_kernel_attention
    >>> q = k = v = torch.randn(2, 4, 5, 8)  # (batch, heads, length, head dim)
    >>> gaussian_kernel_attention(q, k, v, temperature=8 ** 0.5).shape
    torch.Size([2, 4, 5, 8])
    """
    if not isinstance(temperature, Tensor):
        temperature = torch.tensor(temperature, dtype=query.dtype, device=query.device)
    key_score = -0.5 * key.square().sum(-1).unsqueeze(-2) / temperature  # (..., 1, S)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill(
                ~attn_mask, float("-inf")
            )
        key_score = key_score + attn_mask  # (..., L, S)
    if _functorch_transforms_active():
        # Under vmap, torch's batching rule sends scaled_dot_product_attention to a
        # fused CPU kernel that refuses a score (attn_mask) with a gradient: the same
        # attention in plain operations.
        scores = (query / temperature) @ key.transpose(-2, -1) + key_score
        weights = scores.softmax(-1)
        if dropout_p > 0:
            weights = torch.nn.functional.dropout(weights, dropout_p)
        return weights @ value
    return torch.nn.functional.scaled_dot_product_attention(
        query / temperature,
        key,
        value,
        attn_mask=key_score.to(query.dtype),
        dropout_p=dropout_p,
        scale=1.0,
    )
