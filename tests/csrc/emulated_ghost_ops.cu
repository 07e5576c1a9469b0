// The CUDA kernels of ghost_ops.cu, run on the CPU thread by thread (tests only).
//
// Compiling this file compiles ghost_ops.cu itself (device code included) against the
// installed torch; its ops are registered as torch.ops.ghostsr_cuda_test.* so that they never
// collide with the real ghostsr_cuda library. HostExecutor below replaces CudaExecutor: it calls
// the kernels' own per-thread functions (fill_tile, SelectionGrad::accumulate) for every block
// and thread of the launch, so the index math, tiling, bounds and layouts that the GPU runs are
// checked on the CPU, registered as torch.ops.ghostsr_emulated.* (CPU tensors).
#define GHOSTSR_CUDA_NAMESPACE ghostsr_cuda_test
#include "../../ghostsr_plugin/ops/csrc/ghost_ops.cu"

namespace {

struct HostExecutor {
  static bool on_device(const at::Tensor& t) { return t.is_cpu(); }

  // Few "SMs", so that a group's reduction is split over several blocks.
  static int64_t busy_blocks(const at::Tensor&) { return 3; }

  template <bool kChannelsLast, typename scalar_t, typename Value>
  static void fill(scalar_t* out, const Tiling& tiling, const Value& value) {
    for (int64_t tile = 0; tile < tiling.tiles; ++tile) {
      for (int thread = 0; thread < kThreads; ++thread) {
        fill_tile<scalar_t, kChannelsLast>(out, tiling, value, tile, thread);
      }
    }
  }

  template <typename Job>
  static void selection_grad(const Job& job, dim3 grid, typename Job::opmath_t* partials, int num_k) {
    using opmath_t = typename Job::opmath_t;
    using index_t = decltype(job.group_numel);
    for (unsigned z = 0; z < grid.z; ++z) {
      for (unsigned group = 0; group < grid.y; ++group) {
        for (unsigned block = 0; block < grid.x; ++block) {
          opmath_t sums[kChunk] = {};
          for (int thread = 0; thread < kThreads; ++thread) {
            opmath_t acc[kChunk] = {};
            job.accumulate(acc, static_cast<int>(group), static_cast<int>(z) * kChunk,
                           static_cast<index_t>(block) * kThreads + thread, static_cast<index_t>(grid.x) * kThreads);
            for (int u = 0; u < kChunk; ++u) sums[u] += acc[u];
          }
          for (int u = 0; u < kChunk; ++u) {
            const int k = static_cast<int>(z) * kChunk + u;
            if (k < num_k) partials[(static_cast<int64_t>(group) * num_k + k) * grid.x + block] = sums[u];
          }
        }
      }
    }
  }
};

}  // namespace

TORCH_LIBRARY(ghostsr_emulated, m) { GHOSTSR_SCHEMAS(m); }

TORCH_LIBRARY_IMPL(ghostsr_emulated, CPU, m) { GHOSTSR_IMPLS(m, HostExecutor); }
