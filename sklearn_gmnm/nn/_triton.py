"""GMNM forward and backward as Triton kernels that never write the hidden tensors.

Torch computes a GMNM layer as a chain of kernels that each read and write an (N, k*m)
or (N, m) tensor in GPU memory: the projections ``h``, their squared sum, the responses
``phi`` and, in backward, their gradients. At small ``in_features`` those passes over
memory, not the arithmetic, set the speed. The kernels below keep ``h`` and ``phi`` in
registers, a tile of rows and a block of Gaussians at a time:

- forward, one program per tile of rows: ``out = phi(x) @ Pi.T + b``, looping over the
  blocks of Gaussians;
- backward, two kernels, both recomputing ``h`` and ``phi`` from ``x`` (cheap: the
  projection GEMM has only ``in_features`` terms per element):

  - one program per tile of rows computes ``grad_x``, looping over the Gaussians;
  - one program per (block of Gaussians, group of row tiles) sums ``grad_weight``,
    ``grad_offset``, ``grad_mixture`` and ``grad_bias`` over its rows into one buffer;
    one torch reduction adds the groups' partial sums (in a fixed order: the result is
    deterministic).

Only ``x`` is kept for backward, and no tensor of N x m elements is ever written.

The end of the module holds a second, *hybrid* form (:class:`TritonResponsesGMNM`):
torch's matrix products, and one Triton kernel each for the Gaussian responses and their
gradient, at any size. It is on no default path yet (see its docstring).

Scope: float32 tensors on one CUDA device, ``n_projections`` 1 or 2, ``in_features`` and
``out_features`` at most 128 (:func:`supports` checks it; :func:`sklearn_gmnm.nn.functional.gmnm`
falls back to torch elsewhere). Matrix products inside the kernels follow torch's float32
matmul precision (``torch.get_float32_matmul_precision()``): full IEEE float32 at torch's
default "highest", TF32 otherwise. A second derivative (``create_graph=True``) goes
through differentiable torch operations.

Needs Triton 3 or later (torch 2.4 or later pins one). With ``TRITON_INTERPRET=1`` set
before Triton is imported, the kernels run on the CPU in
Triton's interpreter (slowly): the test suite checks them that way on machines without
a GPU.
"""

import contextlib
import functools
import math
import os
import warnings

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # Triton ships with torch's CUDA builds, not with its CPU builds
    triton = None

# The largest in_features / out_features the kernels handle: a tile of rows of x and of
# the output accumulator sits in registers.
MAX_FEATURES = 128
# Up to this many input features, functional.gmnm takes the kernels by default
# (USE_TRITON="auto"). On an H100 (benchmarks/results/layer_speed_gpu_h100.md, m=256,
# k=2, a training step at 4,096 and 65,536 rows) they ran 1.01-1.15x as fast as torch's
# fastest eager form at in_features 2 and 16, allocating 0.6-11% of its memory. On an
# H200 (layer_speed_gpu.md, layer_speed_gpu_large.md) they kept the GPU busy 0.86-0.92x
# as long as the ReLU block of the same size did, where torch's form took 1.3-1.5x.
AUTO_MAX_FEATURES = 32
# Up to this many input features, "auto" also takes them for batches of up to
# AUTO_FEW_ROWS rows. At 64 features the kernels do more GPU work than torch's form
# (2.2-2.6x its GPU busy time at 4,096-8,192 rows on an H200) but launch a third as
# many GPU operations, and a step on a few thousand rows is bound by the host's cost per
# launch: eager training steps ran 1.37-1.40x as fast as torch's form at 4,096-16,384
# rows on the H200 and 1.14x at 4,096 on an H100, but 0.93x at 32,768 rows and 0.50x
# at 65,536 (H200; 0.66x on the H100). AUTO_FEW_ROWS stays well below that crossing,
# since a faster host moves it down (results/layer_speed_gpu_d64_triton.md and
# layer_speed_gpu_d64_sweep.md, H200; layer_speed_gpu_h100.md).
AUTO_MAX_FEATURES_FEW_ROWS = 64
AUTO_FEW_ROWS = 8192
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
# Set to the error when the kernels failed to compile or launch on this machine: the
# process then uses torch's operations (see TritonGMNM).
_failure = None


_AVAILABLE = triton is not None and int(triton.__version__.split(".")[0]) >= 3


def available() -> bool:
    """Whether Triton 3 or later is importable (``tl.dot`` then takes the precision)."""
    return _AVAILABLE


def _autocast_on() -> bool:
    """Whether CUDA autocast is on: then torch's operations run in its lower precision."""
    try:
        return torch.is_autocast_enabled("cuda")
    except TypeError:  # torch < 2.4 takes no device type and answers for CUDA
        return torch.is_autocast_enabled()


def supports_responses(x, weight, offset, mixture_weight, bias, n_projections) -> bool:
    """Whether Triton kernels may run on these tensors at all, and so whether
    :class:`TritonResponsesGMNM` runs its kernels (at any ``in_features``,
    ``out_features`` and ``n_projections``: its matrix products are torch's): a
    non-empty batch of float32 tensors on one CUDA device, outside of
    :func:`torch.compile` (which fuses the torch form itself) and of CUDA autocast
    (whose lower precision torch's operations honour), and no kernel failed in this
    process."""
    if not (x.is_cuda and _AVAILABLE) or _failure is not None:
        return False
    if torch.compiler.is_compiling():
        return False
    tensors = [x, weight, offset, mixture_weight] + ([] if bias is None else [bias])
    return (
        x.shape[0] > 0
        and all(t.dtype == torch.float32 and t.device == x.device for t in tensors)
        and not _autocast_on()
    )


def supports(x, weight, offset, mixture_weight, bias, n_projections) -> bool:
    """Whether the Triton kernels handle these tensors (else torch computes the layer).

    They do for a non-empty batch of float32 tensors on one CUDA device, with
    ``n_projections`` 1 or 2 and ``in_features`` and ``out_features`` up to
    ``MAX_FEATURES``, outside of :func:`torch.compile` (which fuses the torch form
    itself) and of CUDA autocast (whose lower precision torch's operations honour).
    """
    return (
        n_projections in (1, 2)
        and x.shape[-1] <= MAX_FEATURES
        and mixture_weight.shape[0] <= MAX_FEATURES
        and supports_responses(x, weight, offset, mixture_weight, bias, n_projections)
    )


def _block(size: int, least: int = 16) -> int:
    """A power of two >= size and >= least (``tl.dot`` needs dimensions of 16 or more)."""
    return max(least, 1 << max(0, math.ceil(math.log2(max(size, 1)))))


def _precision() -> str:
    """``tl.dot``'s input precision matching torch's float32 matmul setting."""
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


# Tile settings Triton's autotuner tries, once per shape (in_features, n_components,
# out_features, k) and process: (rows per tile, Gaussians per block, warps). Small tiles
# keep the recomputed (rows x Gaussians) blocks in registers; spilling them costs more
# than anything else here: fixed 64 x 64 tiles ran 4-20x slower on an H100
# (benchmarks/results/layer_speed_gpu_fixed_tiles.md). These four are the settings the
# autotuner chose there out of six, at in_features 2, 16 and 64.
TILES = [(64, 32, 4), (64, 16, 4), (32, 64, 4), (128, 32, 8)]
INTERPRETER_TILES = (64, 32, 4)


def _tuned(kernel):
    """The kernel under Triton's autotuner (one setting in the interpreter)."""
    tiles = [INTERPRETER_TILES] if INTERPRET else TILES
    configs = [
        triton.Config({"BLOCK_N": n, "BLOCK_M": m}, num_warps=warps, num_stages=2)
        for n, m, warps in tiles
    ]
    return triton.autotune(configs, key=["D", "M", "OUT", "K"])(kernel)


if triton is not None:

    @triton.jit
    def _load_tile(ptr, rows, row_ok, cols, col_ok, WIDTH):
        """Rows ``rows`` and columns ``cols`` of a row-major matrix WIDTH wide; zero
        where masked."""
        return tl.load(
            ptr + rows[:, None] * WIDTH + cols[None, :],
            mask=row_ok[:, None] & col_ok[None, :],
            other=0.0,
        )

    @triton.jit
    def _projections(
        x,
        w_ptr,
        c_ptr,
        comps,
        m_ok,
        cols_d,
        d_ok,
        D,
        M,
        j: tl.constexpr,
        PREC: tl.constexpr,
    ):
        """h_j = x @ A_j.T + c_j for a block of Gaussians: (BLOCK_N, BLOCK_M)."""
        rows = j * M + comps
        w = _load_tile(w_ptr, rows, m_ok, cols_d, d_ok, D)  # (BLOCK_M, BLOCK_D)
        c = tl.load(c_ptr + rows, mask=m_ok, other=0.0)  # (BLOCK_M,)
        return tl.dot(x, tl.trans(w), input_precision=PREC) + c[None, :]

    @triton.jit
    def _block_responses(
        x,
        w_ptr,
        c_ptr,
        pi_ptr,
        comps,
        m_ok,
        cols_d,
        d_ok,
        cols_o,
        o_ok,
        D,
        M,
        K: tl.constexpr,
        FLOOR: tl.constexpr,
        PREC: tl.constexpr,
    ):
        """For a block of Gaussians: the projections h_0 and h_1 (h_1 = h_0 when k=1),
        phi = exp(-0.5 * sum_j h_j**2) with the exponent floored as in torch's path,
        all (BLOCK_N, BLOCK_M), and the block's mixture weights (BLOCK_OUT, BLOCK_M),
        zero past M so that padded Gaussians add nothing."""
        h0 = _projections(x, w_ptr, c_ptr, comps, m_ok, cols_d, d_ok, D, M, 0, PREC)
        y = h0 * h0
        h1 = h0
        if K == 2:
            h1 = _projections(x, w_ptr, c_ptr, comps, m_ok, cols_d, d_ok, D, M, 1, PREC)
            y += h1 * h1
        phi = tl.exp(tl.maximum(-0.5 * y, FLOOR))
        pi = _load_tile(pi_ptr, cols_o, o_ok, comps, m_ok, M)
        return h0, h1, phi, pi

    @_tuned
    @triton.jit
    def _forward_kernel(
        x_ptr,
        w_ptr,
        c_ptr,
        pi_ptr,
        b_ptr,
        out_ptr,
        N,
        D,
        M,
        OUT,
        K: tl.constexpr,
        HAS_BIAS: tl.constexpr,
        FLOOR: tl.constexpr,
        PREC: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_OUT: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        cols_d = tl.arange(0, BLOCK_D)
        d_ok = cols_d < D
        cols_o = tl.arange(0, BLOCK_OUT)
        o_ok = cols_o < OUT
        x = _load_tile(x_ptr, rows, row_ok, cols_d, d_ok, D)  # (BLOCK_N, BLOCK_D)
        acc = tl.zeros((BLOCK_N, BLOCK_OUT), dtype=tl.float32)
        for m0 in range(0, M, BLOCK_M):
            comps = m0 + tl.arange(0, BLOCK_M)
            m_ok = comps < M
            _h0, _h1, phi, pi = _block_responses(
                x, w_ptr, c_ptr, pi_ptr, comps, m_ok, cols_d, d_ok, cols_o, o_ok,
                D, M, K, FLOOR, PREC,
            )  # fmt: skip
            acc += tl.dot(phi, tl.trans(pi), input_precision=PREC)
        if HAS_BIAS:
            acc += tl.load(b_ptr + cols_o, mask=o_ok, other=0.0)[None, :]
        tl.store(
            out_ptr + rows[:, None] * OUT + cols_o[None, :],
            acc,
            mask=row_ok[:, None] & o_ok[None, :],
        )

    @triton.jit
    def _grad_scale(
        x,
        g_out,
        w_ptr,
        c_ptr,
        pi_ptr,
        comps,
        m_ok,
        cols_d,
        d_ok,
        cols_o,
        o_ok,
        D,
        M,
        K: tl.constexpr,
        FLOOR: tl.constexpr,
        PREC: tl.constexpr,
    ):
        """Recompute h_j and phi for a block of Gaussians, and the factor
        s = -(grad_out @ Pi) * phi with d loss / d h_j = s * h_j."""
        h0, h1, phi, pi = _block_responses(
            x, w_ptr, c_ptr, pi_ptr, comps, m_ok, cols_d, d_ok, cols_o, o_ok,
            D, M, K, FLOOR, PREC,
        )  # fmt: skip
        s = -tl.dot(g_out, pi, input_precision=PREC) * phi  # (BLOCK_N, BLOCK_M)
        return h0, h1, phi, s

    @_tuned
    @triton.jit
    def _grad_input_kernel(
        x_ptr,
        w_ptr,
        c_ptr,
        pi_ptr,
        g_ptr,
        gx_ptr,
        N,
        D,
        M,
        OUT,
        K: tl.constexpr,
        FLOOR: tl.constexpr,
        PREC: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_OUT: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        cols_d = tl.arange(0, BLOCK_D)
        d_ok = cols_d < D
        cols_o = tl.arange(0, BLOCK_OUT)
        o_ok = cols_o < OUT
        x = _load_tile(x_ptr, rows, row_ok, cols_d, d_ok, D)  # (BLOCK_N, BLOCK_D)
        g_out = _load_tile(
            g_ptr, rows, row_ok, cols_o, o_ok, OUT
        )  # (BLOCK_N, BLOCK_OUT)
        gx = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        for m0 in range(0, M, BLOCK_M):
            comps = m0 + tl.arange(0, BLOCK_M)
            m_ok = comps < M
            h0, h1, _phi, s = _grad_scale(
                x, g_out, w_ptr, c_ptr, pi_ptr, comps, m_ok, cols_d, d_ok, cols_o,
                o_ok, D, M, K, FLOOR, PREC,
            )  # fmt: skip
            w0 = _load_tile(w_ptr, comps, m_ok, cols_d, d_ok, D)  # (BLOCK_M, BLOCK_D)
            gx += tl.dot(s * h0, w0, input_precision=PREC)
            if K == 2:
                w1 = _load_tile(w_ptr, M + comps, m_ok, cols_d, d_ok, D)
                gx += tl.dot(s * h1, w1, input_precision=PREC)
        tl.store(
            gx_ptr + rows[:, None] * D + cols_d[None, :],
            gx,
            mask=row_ok[:, None] & d_ok[None, :],
        )

    @_tuned
    @triton.jit
    def _grad_params_kernel(
        x_ptr,
        w_ptr,
        c_ptr,
        pi_ptr,
        g_ptr,
        partial_ptr,
        N,
        D,
        M,
        OUT,
        GROUPS,
        WIDTH,
        K: tl.constexpr,
        BIAS_GRAD: tl.constexpr,
        FLOOR: tl.constexpr,
        PREC: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_OUT: tl.constexpr,
    ):
        comps = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        m_ok = comps < M
        group = tl.program_id(1)
        cols_d = tl.arange(0, BLOCK_D)
        d_ok = cols_d < D
        cols_o = tl.arange(0, BLOCK_OUT)
        o_ok = cols_o < OUT
        gw0 = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
        gw1 = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
        gc0 = tl.zeros((BLOCK_M,), dtype=tl.float32)
        gc1 = tl.zeros((BLOCK_M,), dtype=tl.float32)
        gpi = tl.zeros((BLOCK_OUT, BLOCK_M), dtype=tl.float32)
        gb = tl.zeros((BLOCK_OUT,), dtype=tl.float32)
        for tile in range(group, tl.cdiv(N, BLOCK_N), GROUPS):  # every GROUPS-th tile
            rows = tile * BLOCK_N + tl.arange(0, BLOCK_N)
            row_ok = rows < N
            x = _load_tile(x_ptr, rows, row_ok, cols_d, d_ok, D)  # (BLOCK_N, BLOCK_D)
            # (BLOCK_N, BLOCK_OUT); zero on padded rows, so that they add nothing
            g_out = _load_tile(g_ptr, rows, row_ok, cols_o, o_ok, OUT)
            h0, h1, phi, s = _grad_scale(
                x, g_out, w_ptr, c_ptr, pi_ptr, comps, m_ok, cols_d, d_ok, cols_o,
                o_ok, D, M, K, FLOOR, PREC,
            )  # fmt: skip
            gpi += tl.dot(tl.trans(g_out), phi, input_precision=PREC)
            if BIAS_GRAD:
                gb += tl.sum(g_out, axis=0)
            gh0 = s * h0  # (BLOCK_N, BLOCK_M)
            gw0 += tl.dot(tl.trans(gh0), x, input_precision=PREC)
            gc0 += tl.sum(gh0, axis=0)
            if K == 2:
                gh1 = s * h1
                gw1 += tl.dot(tl.trans(gh1), x, input_precision=PREC)
                gc1 += tl.sum(gh1, axis=0)
        # This group's partial sums: row [group] of the (groups, width) buffer holds
        # grad_weight (K*M*D), grad_offset (K*M), grad_mixture (OUT*M) and, with
        # BIAS_GRAD, grad_bias (OUT), one after the other: WIDTH in all.
        base = partial_ptr + group * WIDTH
        w_mask = m_ok[:, None] & d_ok[None, :]
        tl.store(base + comps[:, None] * D + cols_d[None, :], gw0, mask=w_mask)
        gc_base = base + K * M * D
        tl.store(gc_base + comps, gc0, mask=m_ok)
        if K == 2:
            tl.store(
                base + (M + comps)[:, None] * D + cols_d[None, :], gw1, mask=w_mask
            )
            tl.store(gc_base + M + comps, gc1, mask=m_ok)
        gpi_base = gc_base + K * M
        tl.store(
            gpi_base + cols_o[:, None] * M + comps[None, :],
            gpi,
            mask=o_ok[:, None] & m_ok[None, :],
        )
        if BIAS_GRAD:  # every block of Gaussians summed the same rows: the first stores
            if tl.program_id(0) == 0:
                tl.store(gpi_base + OUT * M + cols_o, gb, mask=o_ok)


def _cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for the host's launch arithmetic (``triton.cdiv`` is a Triton
    constexpr function, several times as slow to call from Python)."""
    return -(-a // b)


def _constants(x, n_projections, d, out_features):
    """The kernels' compile-time constants other than the tuned tile sizes."""
    return _constants_for(x.dtype, n_projections, d, out_features, _precision())


@functools.lru_cache(maxsize=256)
def _constants_for(dtype, n_projections, d, out_features, precision):
    # Computed once per layer shape: every launch costs host time, which can be most of
    # a step's time on a GPU (benchmarks/results/layer_speed_gpu.md).
    from .functional import _exponent_floor

    return {
        "K": n_projections,
        "FLOOR": _exponent_floor(dtype),
        "PREC": precision,
        "BLOCK_D": _block(d),
        "BLOCK_OUT": _block(out_features),
    }


def _forward(x, weight, offset, mixture_weight, bias, n_projections):
    n, d = x.shape
    m = weight.shape[0] // n_projections
    out_features = mixture_weight.shape[0]
    out = torch.empty(n, out_features, device=x.device, dtype=x.dtype)
    _forward_kernel[lambda meta: (_cdiv(n, meta["BLOCK_N"]),)](
        x,
        weight,
        offset,
        mixture_weight,
        bias if bias is not None else offset,
        out,
        n,
        d,
        m,
        out_features,
        HAS_BIAS=bias is not None,
        **_constants(x, n_projections, d, out_features),
    )
    return out


def _row_groups(n, m, device):
    """How many groups of row tiles the parameter-gradient kernel splits the rows into
    (each program takes every groups-th tile): enough programs to fill the GPU about
    four times over with blocks of 32 Gaussians, no more than tiles of 32 rows."""
    if device.type == "cuda":
        sms = _multiprocessors(device.index)
    else:  # the interpreter
        sms = 4
    return max(1, min(_cdiv(n, 32), _cdiv(4 * sms, _cdiv(m, 32))))


@functools.cache
def _multiprocessors(index: int) -> int:
    """The number of streaming multiprocessors of CUDA device ``index``."""
    return torch.cuda.get_device_properties(index).multi_processor_count


def _backward(
    x, weight, offset, mixture_weight, grad_out, n_projections, has_bias, needs
):
    """Gradients for (x, weight, offset, mixture_weight, bias); None where not needed
    (``needs`` is the autograd node's ``needs_input_grad``)."""
    n, d = x.shape
    m = weight.shape[0] // n_projections
    out_features = mixture_weight.shape[0]
    const = _constants(x, n_projections, d, out_features)
    grad_out = grad_out.contiguous()
    grad_x = None
    if needs[0]:
        grad_x = torch.empty_like(x)
        _grad_input_kernel[lambda meta: (_cdiv(n, meta["BLOCK_N"]),)](
            x,
            weight,
            offset,
            mixture_weight,
            grad_out,
            grad_x,
            n,
            d,
            m,
            out_features,
            **const,
        )
    grad_weight = grad_offset = grad_mixture = grad_bias = None
    bias_grad = has_bias and needs[4]
    if any(needs[1:4]):
        # One buffer for every group's partial sums and one reduction over the groups:
        # each kernel launch costs host time, which at these sizes can cost more than
        # the work itself (benchmarks/results/layer_speed_gpu.md).
        sizes = [weight.numel(), offset.numel(), mixture_weight.numel()]
        sizes += [out_features] if bias_grad else []
        groups = _row_groups(n, m, x.device)
        partial = torch.empty(groups, sum(sizes), device=x.device, dtype=x.dtype)
        _grad_params_kernel[lambda meta: (_cdiv(m, meta["BLOCK_M"]), groups)](
            x,
            weight,
            offset,
            mixture_weight,
            grad_out,
            partial,
            n,
            d,
            m,
            out_features,
            groups,
            partial.shape[1],
            BIAS_GRAD=bias_grad,
            **const,
        )
        sums = partial.sum(0).split_with_sizes(sizes)  # a fixed order: deterministic
        grad_weight = sums[0].view_as(weight) if needs[1] else None
        grad_offset = sums[1].view_as(offset) if needs[2] else None
        grad_mixture = sums[2].view_as(mixture_weight) if needs[3] else None
        grad_bias = sums[3] if bias_grad else None
    elif bias_grad:
        grad_bias = grad_out.sum(0)
    return grad_x, grad_weight, grad_offset, grad_mixture, grad_bias


def chosen_tiles() -> dict:
    """The tile setting the autotuner chose last for each kernel, for reports."""
    if triton is None:
        return {}
    kernels = {
        "forward": _forward_kernel,
        "grad_input": _grad_input_kernel,
        "grad_params": _grad_params_kernel,
    }
    return {name: str(getattr(k, "best_config", None)) for name, k in kernels.items()}


def _on_device(x):
    """Launch on x's GPU (Triton launches on the current device); nothing to switch
    when it is the current device already (the common case: a switch costs host time
    at every launch)."""
    if x.is_cuda and x.device.index != torch.cuda.current_device():
        return torch.cuda.device(x.device)
    return contextlib.nullcontext()


def _run_or_fall_back(kernels, torch_form):
    """``kernels()``, or ``torch_form()`` with a warning if the kernels fail here.

    A GPU, driver or Triton version the kernels do not compile or run on (or a bug in
    them) must not stop a fit: the first failure is reported once, and this process
    uses torch's operations from then on. Running out of GPU memory is not such a
    failure and is raised as it is.
    """
    global _failure
    if _failure is None:
        try:
            return kernels()
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as error:
            _failure = error
            warnings.warn(
                f"The GMNM Triton kernels failed on this machine ({type(error).__name__}: "
                f"{error}); sklearn_gmnm uses torch's operations instead for the rest of "
                "this process. Set the environment variable SKLEARN_GMNM_TRITON=0 to "
                "skip the kernels from the start.",
                RuntimeWarning,
                stacklevel=4,
            )
    return torch_form()


class TritonGMNM(torch.autograd.Function):
    """A GMNM layer through the Triton kernels: keeps only ``x`` for backward.

    Where the kernels fail (see ``_run_or_fall_back``) the same node computes the layer
    and its gradients with torch's operations.
    """

    @staticmethod
    def forward(ctx, x, weight, offset, mixture_weight, bias, n_projections):
        out, tensors = _node_forward(
            ctx, x, weight, offset, mixture_weight, bias, n_projections
        )
        ctx.save_for_backward(*tensors)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        return _node_backward(ctx, ctx.saved_tensors, grad_out, ctx.needs_input_grad)


def _node_forward(ctx, x, weight, offset, mixture_weight, bias, n_projections):
    """The Triton nodes' forward: the output, and the contiguous (x, weight, offset,
    mixture_weight) that backward needs."""
    from .functional import _gmnm_autograd

    x, weight, offset, mixture_weight = (
        t.contiguous() for t in (x, weight, offset, mixture_weight)
    )
    ctx.n_projections = n_projections
    ctx.has_bias = bias is not None
    args = (x, weight, offset, mixture_weight, bias, n_projections)

    def kernels():
        with _on_device(x):
            return _forward(*args)

    out = _run_or_fall_back(kernels, lambda: _gmnm_autograd(*args))
    return out, (x, weight, offset, mixture_weight)


def _node_backward(ctx, tensors, grad_out, needs):
    """The Triton nodes' backward: gradients for (x, weight, offset, mixture_weight,
    bias, n_projections), None where ``needs`` (as ``needs_input_grad``) says none."""
    from .functional import _gmnm_torch_backward

    k, has_bias = ctx.n_projections, ctx.has_bias
    x = tensors[0]

    def torch_form():  # differentiable when grad mode is on (a second derivative)
        return _gmnm_torch_backward(*tensors, None, grad_out, k, has_bias, needs)

    if torch.is_grad_enabled():
        return torch_form()

    def kernels():
        with _on_device(x):
            return (*_backward(*tensors, grad_out, k, has_bias, needs), None)

    return _run_or_fall_back(kernels, torch_form)


class TritonGMNMFromCenters(torch.autograd.Function):
    """:class:`TritonGMNM` with the offsets formed from explicit centres inside the
    node, as ``functional._FusedGMNMFromCenters`` does for torch's node: the offsets'
    five operations are not recorded by autograd, and their gradient reaches the
    projections and centres through four small operations in this node's backward."""

    @staticmethod
    def forward(ctx, x, weight, centers, mixture_weight, bias, n_projections):
        from .functional import gaussian_offsets

        offset = gaussian_offsets(weight, centers, n_projections)  # (k*m,)
        out, tensors = _node_forward(
            ctx, x, weight, offset, mixture_weight, bias, n_projections
        )
        ctx.save_for_backward(*tensors, centers)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        from .functional import (
            _needs_through_offsets,
            _offsets_backward,
            gaussian_offsets,
        )

        x, weight, offset, mixture_weight, centers = ctx.saved_tensors
        k, needs = ctx.n_projections, ctx.needs_input_grad
        if torch.is_grad_enabled():  # a second derivative: offsets that autograd sees
            offset = gaussian_offsets(weight, centers, k)
        tensors = (x, weight, offset, mixture_weight)
        grads = _node_backward(ctx, tensors, grad_out, _needs_through_offsets(needs))
        return _offsets_backward(grads, weight, centers, k, needs)


# The hybrid form: torch's matrix products (cuBLAS on a GPU) for the projections and the
# mixture, and between them one Triton kernel for the Gaussian responses (forward) and
# one for their gradient (backward). Where the kernels above recompute the projections
# inside every program, which costs more than torch's form from about 64 inputs up
# (results/layer_speed_gpu_d64_sweep.md), this form writes h (N, k*m) like torch's form
# does, but passes over it once per direction instead of k + 2 times (the backward
# kernel also sums grad_offset over its tile of rows), and launches as many GPU
# operations as a Linear+ReLU block: three forward, six backward. It applies at any
# in_features, out_features and n_projections.
# Tile of an elementwise program: up to RESPONSE_TILE elements, Gaussians along its
# fast dimension (contiguous in h and phi)
RESPONSE_TILE = 2048
RESPONSE_MAX_BLOCK_M = 128

if triton is not None:

    @triton.jit
    def _tile_responses(
        h_ptr,
        N,
        M,
        K: tl.constexpr,
        SCALE: tl.constexpr,
        FLOOR2: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_M: tl.constexpr,
    ):
        """This program's tile: its rows, Gaussians, mask, the address of projection
        0 of the tile in h, and phi = exp2(max(SCALE * sum_j h_j**2, FLOOR2)), the
        exponent formed as torch's form does."""
        rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        comps = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
        mask = (rows < N)[:, None] & (comps < M)[None, :]
        h_at = h_ptr + rows[:, None] * (K * M) + comps[None, :]
        y = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        for j in tl.static_range(K):
            h = tl.load(h_at + j * M, mask=mask, other=0.0)
            y += SCALE * h * h
        phi = tl.exp2(tl.maximum(y, FLOOR2))
        return rows, comps, mask, h_at, phi

    @triton.jit
    def _responses_kernel(
        h_ptr,
        phi_ptr,
        N,
        M,
        K: tl.constexpr,
        SCALE: tl.constexpr,
        FLOOR2: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_M: tl.constexpr,
    ):
        """phi = exp2(max(SCALE * sum_j h_j**2, FLOOR2)): torch's form in one pass."""
        rows, comps, mask, _h_at, phi = _tile_responses(
            h_ptr, N, M, K, SCALE, FLOOR2, BLOCK_N, BLOCK_M
        )
        tl.store(phi_ptr + rows[:, None] * M + comps[None, :], phi, mask=mask)

    @triton.jit
    def _responses_backward_kernel(
        h_ptr,
        g_ptr,
        phi_ptr,
        gh_ptr,
        partial_ptr,
        N,
        M,
        K: tl.constexpr,
        SCALE: tl.constexpr,
        FLOOR2: tl.constexpr,
        OFFSET_GRAD: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_M: tl.constexpr,
    ):
        """From h and g = grad_out @ Pi: phi again (for grad_mixture) and
        grad_h_j = -g * phi * h_j, the gradient torch's custom node computes; with
        OFFSET_GRAD, also the tile's column sums of grad_h (row program_id(0) of the
        partial sums of grad_offset), so that no pass over grad_h is needed for them."""
        rows, comps, mask, h_at, phi = _tile_responses(
            h_ptr, N, M, K, SCALE, FLOOR2, BLOCK_N, BLOCK_M
        )
        at = rows[:, None] * M + comps[None, :]
        tl.store(phi_ptr + at, phi, mask=mask)
        s = -tl.load(g_ptr + at, mask=mask, other=0.0) * phi
        gh_at = gh_ptr + rows[:, None] * (K * M) + comps[None, :]
        partial_at = partial_ptr + tl.program_id(0) * (K * M) + comps
        for j in tl.static_range(K):
            gh = s * tl.load(h_at + j * M, mask=mask, other=0.0)  # 0 where masked
            tl.store(gh_at + j * M, gh, mask=mask)
            if OFFSET_GRAD:
                tl.store(partial_at + j * M, tl.sum(gh, axis=0), mask=comps < M)


@functools.lru_cache(maxsize=256)
def _response_launch(n_components: int, n_projections: int, dtype) -> dict:
    """The elementwise kernels' tile and constants for m Gaussians and k projections."""
    from .functional import _HALF_LOG2E, _exponent_floor2

    block_m = min(_block(n_components), RESPONSE_MAX_BLOCK_M)
    return {
        "K": n_projections,
        "SCALE": -_HALF_LOG2E,
        "FLOOR2": _exponent_floor2(dtype),
        "BLOCK_N": RESPONSE_TILE // block_m,
        "BLOCK_M": block_m,
    }


def _responses(h, n_projections):
    """phi (N, m) from the projections h (N, k*m), contiguous."""
    n, width = h.shape
    m = width // n_projections
    launch = _response_launch(m, n_projections, h.dtype)
    phi = torch.empty(n, m, device=h.device, dtype=h.dtype)
    grid = (_cdiv(n, launch["BLOCK_N"]), _cdiv(m, launch["BLOCK_M"]))
    _responses_kernel[grid](h, phi, n, m, **launch)
    return phi


def _responses_backward(h, g, n_projections, offset_grad):
    """(phi, grad_h, grad_offset) from h (N, k*m) and g = grad_out @ Pi (N, m), both
    contiguous; grad_offset (the column sums of grad_h) None unless ``offset_grad``."""
    n, width = h.shape
    m = width // n_projections
    launch = _response_launch(m, n_projections, h.dtype)
    phi = torch.empty_like(g)
    grad_h = torch.empty_like(h)
    grid = (_cdiv(n, launch["BLOCK_N"]), _cdiv(m, launch["BLOCK_M"]))
    # one row of partial sums per tile of rows: 1/BLOCK_N of grad_h's size
    partial = torch.empty(
        grid[0] if offset_grad else 1, width, device=h.device, dtype=h.dtype
    )
    _responses_backward_kernel[grid](
        h, g, phi, grad_h, partial, n, m, OFFSET_GRAD=offset_grad, **launch
    )
    grad_offset = partial.sum(0) if offset_grad else None  # a fixed order
    return phi, grad_h, grad_offset


class TritonResponsesGMNM(torch.autograd.Function):
    """A GMNM layer in the hybrid form: torch's matrix products, Triton's responses.

    Keeps ``x`` and ``h`` for backward, as torch's custom node does for large inputs.
    Where the kernels fail (see ``_run_or_fall_back``) the same node computes the
    layer and its gradients with torch's operations. Not on any default path yet: its
    speed on a GPU against torch's form and the kernels above is the open question of
    ``benchmarks/layer_speed.py``'s ``hybrid`` variant.
    """

    @staticmethod
    def forward(ctx, x, weight, offset, mixture_weight, bias, n_projections):
        from .functional import _gaussian_responses

        h = torch.addmm(offset, x, weight.t())  # (N, k*m)

        def kernels():
            with _on_device(x):
                return _responses(h, n_projections)

        phi = _run_or_fall_back(kernels, lambda: _gaussian_responses(h, n_projections))
        ctx.n_projections = n_projections
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight, offset, mixture_weight, h)
        return torch.nn.functional.linear(phi, mixture_weight, bias)  # (N, out)

    @staticmethod
    def backward(ctx, grad_out):
        from .functional import _gmnm_torch_backward

        x, weight, offset, mixture_weight, h = ctx.saved_tensors
        needs = ctx.needs_input_grad
        k, has_bias = ctx.n_projections, ctx.has_bias

        def torch_form():  # differentiable when grad mode is on (a second derivative)
            return _gmnm_torch_backward(
                x, weight, offset, mixture_weight, h, grad_out, k, has_bias, needs
            )

        if torch.is_grad_enabled():
            return torch_form()

        def kernels():
            g = grad_out @ mixture_weight  # (N, m)
            with _on_device(x):
                phi, grad_h, grad_offset = _responses_backward(h, g, k, needs[2])
            return (
                grad_h @ weight if needs[0] else None,  # (N, d)
                grad_h.t() @ x if needs[1] else None,  # (k*m, d)
                grad_offset,  # (k*m,)
                grad_out.t() @ phi if needs[3] else None,  # (out, m)
                grad_out.sum(0) if has_bias and needs[4] else None,
                None,
            )

        return _run_or_fall_back(kernels, torch_form)
