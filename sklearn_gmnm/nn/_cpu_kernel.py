"""An opt-in compiled CPU kernel for the two elementwise passes of a GMNM layer.

Torch computes the Gaussian responses ``phi = exp(-0.5 * sum_j h_j**2)`` as k + 2
operations (k ``addcmul``, a ``clamp_`` and an ``exp2_``) and, in backward, the
projections' gradient as two more. Each is a pass over memory and a few microseconds of
the host's time, which show at small batches. ``_cpu_kernel.cpp`` fuses each of the two
into one vectorised loop over the rows, split over torch's threads: on 2 CPU cores a
training step took 0.78-0.98x the time (``benchmarks/results/cpu_kernel.md``).

It is compiled on first use with :func:`torch.utils.cpp_extension.load_inline`, which
needs a C++ compiler and ninja (``pip install "sklearn-gmnm[cpu-kernel]"`` brings ninja)
and takes about 40 seconds on 2 cores, once: torch caches the build
(``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``) for later
processes. So it is off by default: :data:`sklearn_gmnm.nn.functional.USE_CPU_KERNEL`
turns it on (or the environment variable ``SKLEARN_GMNM_CPU_KERNEL=1`` before the
import). Where the build fails, a warning names the reason once and the layer keeps
torch's operations.
"""

import platform
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("_cpu_kernel.cpp")
NAME = "sklearn_gmnm_cpu_kernel"

# The module once built, None before the first try, False where the build failed.
_module = None


def compiler_flags() -> list[str]:
    """Flags for this machine: AVX2 vectors where the CPU has them (ATen's Vectorized
    then compiles to AVX2 instructions, and its ``exp2`` to Sleef's vectorised one,
    which torch's library carries), OpenMP threads where torch uses OpenMP."""
    flags = ["-O3"]
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")()
    if platform.machine().lower() in ("x86_64", "amd64") and capability in (
        "AVX2",
        "AVX512",
    ):
        flags += ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    if torch.backends.openmp.is_available():
        flags.append("-fopenmp")
    return flags


def load():
    """The compiled module (built on the first call), or None where it can't be built."""
    global _module
    if _module is None:
        try:
            _module = _build()
        except Exception as error:  # no compiler, no ninja, a failed build, ...
            _module = False
            warnings.warn(
                "sklearn_gmnm could not build its CPU kernel (USE_CPU_KERNEL / "
                f"SKLEARN_GMNM_CPU_KERNEL is on), so it uses torch's operations: "
                f"{type(error).__name__}: {error}. The kernel needs a C++ compiler and "
                "ninja (pip install 'sklearn-gmnm[cpu-kernel]'); "
                "SKLEARN_GMNM_CPU_KERNEL=0 turns it off.",
                RuntimeWarning,
                stacklevel=2,
            )
    return _module or None


def _build():
    from torch.utils.cpp_extension import load_inline

    flags = compiler_flags()
    return load_inline(
        NAME,
        cpp_sources=[SOURCE.read_text()],
        functions=["responses", "projections_grad"],
        extra_cflags=flags,
        extra_ldflags=["-fopenmp"] if "-fopenmp" in flags else [],
    )
