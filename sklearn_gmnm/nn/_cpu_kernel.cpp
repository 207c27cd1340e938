// The two elementwise passes of a GMNM layer on the CPU, each fused into one loop.
//
// Torch computes them as a chain of operations, each a pass over (N, m) or (N, k*m)
// memory and a few microseconds of dispatch: forward ``addcmul``, ``addcmul_`` (k times
// in all), ``clamp_``, ``exp2_``; backward ``mul_`` and a broadcast ``mul``. Here each is
// one pass over the rows, vectorised with ATen's Vectorized and split over torch's
// threads. Built on first use by sklearn_gmnm/nn/_cpu_kernel.py (torch's
// cpp_extension); functional.py calls it only where USE_CPU_KERNEL is on.
//
// Layout (see functional.py): h is (N, k*m), projection-major: row n holds the k
// contiguous slices h[n, j*m : (j+1)*m], one per projection.

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace {

using at::vec::Vectorized;

// Rows per thread at least: below it one thread does the whole batch.
constexpr int64_t kMinRowsPerThread = 64;

// body(row) for every row in [0, n_rows), split over at most torch's number of threads.
// (The OpenMP loop names its thread count: the runtime's default would be every core,
// not what torch.set_num_threads says.)
template <typename Body>
void for_each_row(int64_t n_rows, const Body& body) {
#ifdef _OPENMP
  const int64_t threads = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), n_rows / kMinRowsPerThread));
  if (threads > 1 && !at::in_parallel_region()) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t row = 0; row < n_rows; ++row) body(row);
    return;
  }
#endif
  for (int64_t row = 0; row < n_rows; ++row) body(row);
}

// Checks that h is (N, k*m) and gives N and m.
std::pair<int64_t, int64_t> rows_and_gaussians(const torch::Tensor& h,
                                                int64_t n_projections) {
  TORCH_CHECK(n_projections >= 1, "n_projections must be at least 1");
  TORCH_CHECK(h.dim() == 2 && h.size(1) % n_projections == 0,
              "h must have shape (N, k*m), got ", h.sizes());
  return {h.size(0), h.size(1) / n_projections};
}

void check(const torch::Tensor& t, const char* name, int64_t n_rows, int64_t n_cols,
           const torch::Tensor& like) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.dim() == 2 && t.size(0) == n_rows && t.size(1) == n_cols, name,
              " must have shape (", n_rows, ", ", n_cols, "), got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, " must have dtype ",
              like.scalar_type(), ", got ", t.scalar_type());
}

}  // namespace

// phi[n, i] = exp2(max(factor * sum_j h[n, j*m + i]^2, floor)): the Gaussian responses,
// with factor = -0.5 * log2(e) and floor the lowest exponent (see functional.py).
torch::Tensor responses(const torch::Tensor& h, int64_t n_projections, double factor,
                        double floor) {
  const auto sizes = rows_and_gaussians(h, n_projections);
  const int64_t n = sizes.first, m = sizes.second, k = n_projections;
  check(h, "h", n, k * m, h);
  auto phi = torch::empty({n, m}, h.options());
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "gmnm_responses", [&] {
    using Vec = Vectorized<scalar_t>;
    const scalar_t* h_data = h.data_ptr<scalar_t>();
    scalar_t* phi_data = phi.data_ptr<scalar_t>();
    const scalar_t f = static_cast<scalar_t>(factor);
    const scalar_t lowest = static_cast<scalar_t>(floor);
    for_each_row(n, [&](int64_t row) {
      const scalar_t* h_row = h_data + row * k * m;
      scalar_t* phi_row = phi_data + row * m;
      int64_t i = 0;
      for (; i + Vec::size() <= m; i += Vec::size()) {
        Vec sum(0);
        for (int64_t j = 0; j < k; ++j) {
          const Vec a = Vec::loadu(h_row + j * m + i);
          sum = at::vec::fmadd(a, a, sum);
        }
        at::vec::maximum(sum * Vec(f), Vec(lowest)).exp2().store(phi_row + i);
      }
      for (; i < m; ++i) {
        scalar_t sum = 0;
        for (int64_t j = 0; j < k; ++j) sum += h_row[j * m + i] * h_row[j * m + i];
        phi_row[i] = std::exp2(std::max(sum * f, lowest));
      }
    });
  });
  return phi;
}

// grad_h[n, j*m + i] = h[n, j*m + i] * scale[n, i] * phi[n, i]: the gradient reaching
// the projections, where scale = -(grad_out @ Pi) is the gradient reaching phi times -1.
torch::Tensor projections_grad(const torch::Tensor& h, const torch::Tensor& scale,
                               const torch::Tensor& phi, int64_t n_projections) {
  const auto sizes = rows_and_gaussians(h, n_projections);
  const int64_t n = sizes.first, m = sizes.second, k = n_projections;
  check(h, "h", n, k * m, h);
  check(scale, "scale", n, m, h);
  check(phi, "phi", n, m, h);
  auto grad_h = torch::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "gmnm_projections_grad", [&] {
    using Vec = Vectorized<scalar_t>;
    const scalar_t* h_data = h.data_ptr<scalar_t>();
    const scalar_t* scale_data = scale.data_ptr<scalar_t>();
    const scalar_t* phi_data = phi.data_ptr<scalar_t>();
    scalar_t* grad_data = grad_h.data_ptr<scalar_t>();
    for_each_row(n, [&](int64_t row) {
      const scalar_t* h_row = h_data + row * k * m;
      const scalar_t* scale_row = scale_data + row * m;
      const scalar_t* phi_row = phi_data + row * m;
      scalar_t* grad_row = grad_data + row * k * m;
      int64_t i = 0;
      for (; i + Vec::size() <= m; i += Vec::size()) {
        const Vec s = Vec::loadu(scale_row + i) * Vec::loadu(phi_row + i);
        for (int64_t j = 0; j < k; ++j) {
          (Vec::loadu(h_row + j * m + i) * s).store(grad_row + j * m + i);
        }
      }
      for (; i < m; ++i) {
        const scalar_t s = scale_row[i] * phi_row[i];
        for (int64_t j = 0; j < k; ++j) grad_row[j * m + i] = h_row[j * m + i] * s;
      }
    });
  });
  return grad_h;
}
