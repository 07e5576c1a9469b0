// The CUDA kernels of ghost_ops.cu, run on the CPU thread by thread (tests only).
//
// Compiling this file compiles ghost_ops.cu itself (device code included, see the CUDA
// registration at the end) against the installed torch. HostExecutor below replaces CudaExecutor: it runs each kernel's own block
// code for every block of the launch, every phase for every thread in turn (shared memory
// filled with NaN bytes first, so a read of an unwritten slot shows), so the index math,
// tiling, bounds, layouts and barriers that the GPU runs are checked on the CPU. Every global
// load and store is counted per element address. Registered as torch.ops.ghostsr_emulated.*
// (CPU tensors), with:
//   configure(wave, force_64bit): the blocks in one "wave" (how many blocks share a reduction)
//                                 and whether to take the 64-bit index path on small sizes;
//   traffic(t) -> (loads, stores): per element of t, in memory order, since the last op call;
//   launches() -> int:            kernel launches of the last op call.
#include <c10/macros/Macros.h>

#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {
std::unordered_map<uintptr_t, std::pair<int64_t, int64_t>> traced;  // address -> (loads, stores)

C10_HOST_DEVICE inline void trace(bool is_store, const void* p, int count, size_t size) {
#ifndef __CUDA_ARCH__
  for (int u = 0; u < count; ++u) {
    auto& entry = traced[reinterpret_cast<uintptr_t>(p) + u * size];
    ++(is_store ? entry.second : entry.first);
  }
#endif
}
}  // namespace

#define GHOSTSR_TRACE(is_store, ptr, count) trace(is_store, ptr, count, sizeof(*(ptr)))
#define GHOSTSR_NO_CUDA_REGISTRATION
#include "../../ghostsr_plugin/ops/csrc/ghost_ops.cu"

namespace {

int64_t wave_blocks = 3;
bool force_64bit = false;
int64_t launches = 0;

template <typename State>
struct HostBlock {
  unsigned char* shared;
  int block, blocks;
  std::vector<State> states;

  int index() const { return block; }
  int count() const { return blocks; }
  template <typename F>
  void threads(const F& f) {
    for (int t = 0; t < kThreads; ++t) f(t, states[t]);
  }
  void sync() const {}
};

struct HostExecutor {
  static bool on_device(const at::Tensor& t) { return t.is_cpu(); }
  static bool force_64bit_index() { return force_64bit; }

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
      HostBlock<typename Job::State> block{reinterpret_cast<unsigned char*>(shared.data()), static_cast<int>(b),
                                           static_cast<int>(blocks),
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

void configure(int64_t wave, bool wide) {
  TORCH_CHECK(wave >= 1, "wave must be >= 1");
  wave_blocks = wave;
  force_64bit = wide;
}

std::tuple<at::Tensor, at::Tensor> traffic(const at::Tensor& t) {
  at::Tensor loads = at::zeros({t.numel()}, at::kLong), stores = at::zeros({t.numel()}, at::kLong);
  const auto base = reinterpret_cast<uintptr_t>(t.const_data_ptr());
  for (int64_t i = 0; i < t.numel(); ++i) {
    const auto found = traced.find(base + i * t.element_size());
    if (found != traced.end()) {
      loads[i] = found->second.first;
      stores[i] = found->second.second;
    }
  }
  return {loads, stores};
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
  m.def("configure(int wave, bool force_64bit) -> ()", &configure);
  m.def("traffic(Tensor t) -> (Tensor, Tensor)", &traffic);
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
