// The CUDA kernels of ghost_ops.cu, run on the CPU thread by thread (tests only).
//
// Compiling this file compiles ghost_ops.cu itself (device code included, see the CUDA
// registration at the end) against the installed torch. HostExecutor below replaces CudaExecutor:
// it runs each kernel's own block code for every block of the launch, every phase for every
// thread in turn (shared memory filled with NaN bytes first, so a read of an unwritten slot
// shows), so the index math, tiling, bounds, layouts and barriers that the GPU runs are checked
// on the CPU. Every global load and store is counted per element address. Registered as torch.ops.ghostsr_emulated.*
// (CPU tensors), with:
//   configure(wave, max_items, block_work): the blocks in one "wave" (the grids are a few waves),
//                                 the most items one launch may index (small: several launches,
//                                 as tensors of 2^31 items and more take on a GPU), and the
//                                 items a training-backward block aims for (small: many bands);
//   traffic(t) -> (loads, stores, vector loads, vector stores): per element of t, in memory
//                                 order, since the last op call (vector: by a 16-byte access);
//   launches() -> int:            kernel launches of the last op call.
#include <c10/macros/Macros.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {
// address -> (loads, stores, loads by 16-byte vectors, stores by 16-byte vectors)
std::unordered_map<uintptr_t, std::array<int64_t, 4>> traced;

C10_HOST_DEVICE inline void trace(bool is_store, const void* p, int count, size_t size) {
#ifndef __CUDA_ARCH__
  for (int u = 0; u < count; ++u) {
    auto& entry = traced[reinterpret_cast<uintptr_t>(p) + u * size];
    ++entry[is_store];
    if (count * size == 16) ++entry[2 + is_store];
  }
#endif
}
}  // namespace

#define GHOSTSR_TRACE(is_store, ptr, count) trace(is_store, ptr, count, sizeof(*(ptr)))
#define GHOSTSR_NO_CUDA_REGISTRATION
#include "../../ghostsr_plugin/ops/csrc/ghost_ops.cu"

namespace {

int64_t wave_blocks = 3;
int64_t max_launch_items = std::numeric_limits<int32_t>::max();
int64_t block_items = 2048;
int64_t launches = 0;

template <typename State>
struct HostBlock {
  unsigned char* shared;
  int64_t block, blocks;
  std::vector<State> states;

  int64_t index() const { return block; }
  int64_t count() const { return blocks; }
  template <typename F>
  void threads(const F& f) {
    for (int t = 0; t < kThreads; ++t) f(t, states[t]);
  }
  void sync() const {}
};

struct HostExecutor {
  static bool on_device(const at::Tensor& t) { return t.is_cpu(); }
  static int64_t max_items() { return max_launch_items; }
  static int64_t block_work() { return block_items; }

  template <typename Job>
  static int64_t wave(const Job&, const at::Tensor&) {
    return wave_blocks;
  }

  template <typename Job>
  static void launch(const Job& job, int64_t blocks) {
    ++launches;
    std::vector<double> shared(job.shared_bytes / sizeof(double) + 2);
    for (int64_t b = 0; b < blocks; ++b) {
      std::memset(shared.data(), 0xff, shared.size() * sizeof(double));  // NaN in every float type
      HostBlock<typename Job::State> block{reinterpret_cast<unsigned char*>(shared.data()), b, blocks,
                                           std::vector<typename Job::State>(kThreads)};
      job(block);
    }
  }
};

// `Fn`, with the counts of the previous call cleared first.
template <auto Fn>
struct Traced;

template <typename R, typename... Args, R (*Fn)(Args...)>
struct Traced<Fn> {
  static R call(Args... args) {
    traced.clear();
    launches = 0;
    return Fn(args...);
  }
};

void configure(int64_t wave, int64_t max_items, int64_t work) {
  TORCH_CHECK(wave >= 1 && max_items >= 1 && work >= 1, "configure: every value must be >= 1");
  wave_blocks = wave;
  max_launch_items = std::min<int64_t>(max_items, std::numeric_limits<int32_t>::max());
  block_items = work;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> traffic(const at::Tensor& t) {
  at::Tensor counts = at::zeros({4, t.numel()}, at::kLong);
  auto table = counts.accessor<int64_t, 2>();
  const auto base = reinterpret_cast<uintptr_t>(t.const_data_ptr());
  for (int64_t i = 0; i < t.numel(); ++i) {
    const auto found = traced.find(base + i * t.element_size());
    if (found == traced.end()) continue;
    for (int kind = 0; kind < 4; ++kind) table[kind][i] = found->second[kind];
  }
  return {counts[0], counts[1], counts[2], counts[3]};
}

int64_t launch_count() { return launches; }

}  // namespace

// The public schemas (library.py), copied: tests/test_cuda_kernels.py checks that they agree.
TORCH_LIBRARY(ghostsr_emulated, m) {
  m.def("shift(Tensor x, int[] offset) -> Tensor");
  m.def("ghost_features(Tensor x1, int num_ghost, Tensor offsets) -> Tensor");
  m.def("ghost_features_backward(Tensor grad_out, int num_ghost, Tensor offsets) -> Tensor");
  m.def("ghost_features_train(Tensor x1, int num_ghost, Tensor selection, int max_shift) -> Tensor");
  m.def("ghost_features_train_backward(Tensor grad_out, Tensor x1, int num_ghost, Tensor selection, "
        "int max_shift) -> (Tensor, Tensor)");
  m.def("configure(int wave, int max_items, int block_work) -> ()", &configure);
  m.def("traffic(Tensor t) -> (Tensor, Tensor, Tensor, Tensor)", &traffic);
  m.def("launches() -> int", &launch_count);
}

// The real CUDA kernels too (CudaExecutor), so that building this compiles their device code
// for sm_90: the CI build test. (On a GPU they are torch.ops.ghostsr's, tested there.)
TORCH_LIBRARY_IMPL(ghostsr_emulated, CUDA, m) { register_kernels<CudaExecutor>(m); }

TORCH_LIBRARY_IMPL(ghostsr_emulated, CPU, m) {
  m.impl("shift", &Traced<&shift<HostExecutor>>::call);
  m.impl("ghost_features", &Traced<&ghost_features<HostExecutor>>::call);
  m.impl("ghost_features_backward", &Traced<&ghost_features_backward<HostExecutor>>::call);
  m.impl("ghost_features_train", &Traced<&ghost_features_train<HostExecutor>>::call);
  m.impl("ghost_features_train_backward", &Traced<&ghost_features_train_backward<HostExecutor>>::call);
}
