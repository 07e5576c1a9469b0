// Fused CUDA kernels of GhostSR's shift ops: the CUDA implementations of torch.ops.ghostsr.*.
//
// ghostsr_plugin/ops/library.py defines each op's schema once (namespace ghostsr) with its CPU
// kernel (the pure-PyTorch reference, ghostsr_plugin/ops/reference.py), fake kernel and autograd;
// this file only registers CUDA kernels against those schemas. What every kernel must reproduce:
//   shift by (dy, dx):  out[..., i, j] = x[..., i - dy, j - dx] inside the image, else 0;
//   ghost features:     out = concat(x1, ghost); ghost channel j is x1[:, j % c_i] shifted by
//                       the offset of its orientation group j / (num_ghost / G);
//   learned shift:      ghost j = sum over the nonzero selection[g, k] of
//                       selection[g, k] * shift(x1[:, j % c_i], offset_k), offset_k row-major
//                       over [-d, d]^2: (k / (2d+1) - d, k % (2d+1) - d).
// Every tensor is read and written in its own memory order: contiguous NCHW, or NHWC when the
// input is channels_last (and not also NCHW-contiguous); any other strides are made contiguous.
// Arithmetic (learned shift, gradient sums) runs in at::opmath_type: float for half/bfloat16.
//
// One pass over memory. The forward reads each x1 element once (16-byte vectors where aligned)
// and scatters it: its intrinsic copy, and every ghost made from it at the ghost's offset; each
// ghost element whose source lies outside the image is written as zero by the thread at its own
// position, so every output element is written exactly once. The backward gathers: a source
// element's gradient is its own upstream gradient plus each of its ghosts' at the shifted place.
// The training backward also sums the selection gradient in the same kernel: a block owns
// a band of rows of one source plane and stages x1 and the upstream gradient of its ghosts in a
// ring of rows in shared memory, so both are read from global memory once (the rows next to a
// band owned by another block once more). It works on NCHW: channels_last tensors are converted
// around it (three more copies; a channels_last kernel is still to be written).
//
// Blocks are written as a sequence of phases, each run by every thread (Block::threads),
// separated by barriers (Block::sync), and global memory is only touched through load/store.
// CudaExecutor launches them; tests/csrc/emulated_ghost_ops.cu runs the same block code thread
// by thread on the CPU and counts every global load and store (GHOSTSR_TRACE), so CI checks the
// index math, bounds, layouts and memory traffic without a GPU.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/DeviceGuard.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#ifndef GHOSTSR_TRACE
#define GHOSTSR_TRACE(is_store, ptr, count)
#endif

namespace {

constexpr int kThreads = 256;            // threads per block, every kernel
constexpr int kVectorBytes = 16;         // widest load/store
constexpr int kSharedBytes = 48 * 1024;  // dynamic shared memory a block may use without opting in

// --- global memory: every access goes through these ----------------------------------------------

template <typename T>
C10_HOST_DEVICE inline T load(const T* p) {
  GHOSTSR_TRACE(false, p, 1);
  return *p;
}

template <typename T>
C10_HOST_DEVICE inline void store(T* p, T v) {
  GHOSTSR_TRACE(true, p, 1);
  *p = v;
}

template <typename T>
constexpr int kVec = kVectorBytes / sizeof(T) > 0 ? kVectorBytes / sizeof(T) : 1;

template <typename T>
struct alignas(kVectorBytes) Vector {
  T v[kVec<T>];
};

template <typename T>
C10_HOST_DEVICE inline void load_vector(const T* p, T (&out)[kVec<T>]) {
  GHOSTSR_TRACE(false, p, kVec<T>);
  const Vector<T> w = *reinterpret_cast<const Vector<T>*>(p);
#pragma unroll
  for (int u = 0; u < kVec<T>; ++u) out[u] = w.v[u];
}

template <typename T>
C10_HOST_DEVICE inline void store_vector(T* p, const T (&in)[kVec<T>]) {
  GHOSTSR_TRACE(true, p, kVec<T>);
  Vector<T> w;
#pragma unroll
  for (int u = 0; u < kVec<T>; ++u) w.v[u] = in[u];
  *reinterpret_cast<Vector<T>*>(p) = w;
}

// --- geometry ------------------------------------------------------------------------------------

// Offset of element (n, c, y, x) of a dense (N, C, H, W) tensor stored NCHW or NHWC, in index_t:
// 32-bit where every tensor of the launch has fewer than 2^31 elements, else 64-bit.
template <bool kChannelsLast, typename index_t>
C10_HOST_DEVICE inline index_t index4(index_t n, int c, int y, int x, int channels, int height, int width) {
  const index_t cc = static_cast<index_t>(c), yy = static_cast<index_t>(y), xx = static_cast<index_t>(x);
  return kChannelsLast ? ((n * height + yy) * width + xx) * channels + cc : ((n * channels + cc) * height + yy) * width + xx;
}

C10_HOST_DEVICE inline bool inside(int y, int x, int height, int width) {
  return 0 <= y && y < height && 0 <= x && x < width;
}

// A product the compiler may not fuse into an FMA, so weight * value rounds as the reference's
// separate multiply does.
template <typename T>
C10_HOST_DEVICE inline T mul_rn(T a, T b) {
#ifdef __CUDA_ARCH__
  if constexpr (std::is_same_v<T, double>) {
    return __dmul_rn(a, b);
  } else {
    return __fmul_rn(a, b);
  }
#else
  return a * b;
#endif
}

// What the ghost kernels work on. Channel c < copy_channels of the written tensor is channel c
// of the source; channel copy_channels + j (j < num_ghost) is ghost j: source channel
// j % src_channels under the orientation of group j / per_group.
struct Geometry {
  int64_t batch;
  int height, width;
  int src_channels, copy_channels, num_ghost, per_group;
};

// A group's orientation as the kernels use it: one offset (and its weight, for the learned
// shift), or `dense`: a weighted sum over every nonzero selection weight.
template <typename opmath_t>
struct Pick {
  int dy, dx;
  opmath_t weight;
  bool dense;
};

// One integer offset per orientation group (a (G, 2) array), or one offset for all groups.
struct FixedShift {
  static constexpr bool kWeighted = false;
  const int64_t* offsets;  // (G, 2) row-major (dy, dx), or nullptr: every group uses (dy, dx)
  int64_t dy, dx;
  int limit;  // offsets are clamped to [-limit, limit], limit >= H, W: that changes no value, only avoids overflow

  template <typename opmath_t>
  C10_HOST_DEVICE Pick<opmath_t> pick(int group) const {
    const int64_t oy = offsets ? load(offsets + 2 * group) : dy;
    const int64_t ox = offsets ? load(offsets + 2 * group + 1) : dx;
    return {static_cast<int>(std::clamp<int64_t>(oy, -limit, limit)),
            static_cast<int>(std::clamp<int64_t>(ox, -limit, limit)), opmath_t(1), false};
  }

  template <typename scalar_t, typename Load>
  C10_HOST_DEVICE scalar_t dense_sum(int, const Load&) const {
    return scalar_t(0);  // (a fixed shift is never dense)
  }
};

// A weighted sum over all (2d+1)^2 offsets per group (the training path's one-hot selection).
template <typename opmath_t>
struct LearnedShift {
  static constexpr bool kWeighted = true;
  const opmath_t* selection;  // (G, (2d+1)^2) contiguous
  int max_shift;

  // One read of the group's weights per block: a one-hot group becomes a single offset.
  template <typename T>
  C10_HOST_DEVICE Pick<T> pick(int group) const {
    const int side = 2 * max_shift + 1;
    const opmath_t* weights = selection + static_cast<int64_t>(group) * side * side;
    int nonzero = 0, chosen = 0;
    opmath_t weight = 0;
    for (int k = 0; k < side * side; ++k) {
      const opmath_t w = load(weights + k);
      if (w != opmath_t(0)) {
        ++nonzero, chosen = k, weight = w;
      }
    }
    return {chosen / side - max_shift, chosen % side - max_shift, weight, nonzero != 1};
  }

  // sum_k weight_k * load(dy_k, dx_k) over the nonzero weights (`load` gives 0 outside the image).
  template <typename scalar_t, typename Load>
  C10_HOST_DEVICE scalar_t dense_sum(int group, const Load& load_at) const {
    const int side = 2 * max_shift + 1;
    const opmath_t* weights = selection + static_cast<int64_t>(group) * side * side;
    opmath_t acc = 0;
    for (int k = 0; k < side * side; ++k) {
      const opmath_t w = load(weights + k);
      if (w != opmath_t(0)) acc += mul_rn(w, static_cast<opmath_t>(load_at(k / side - max_shift, k % side - max_shift)));
    }
    return static_cast<scalar_t>(acc);
  }
};

// `value` under a picked orientation, rounded as the reference rounds `0 + weight * value`.
template <typename scalar_t, typename Shift, typename opmath_t>
C10_HOST_DEVICE inline scalar_t weighted(const Pick<opmath_t>& pick, scalar_t value) {
  if constexpr (Shift::kWeighted) {
    return static_cast<scalar_t>(opmath_t(0) + mul_rn(pick.weight, static_cast<opmath_t>(value)));
  } else {
    return value;
  }
}

// --- blocks --------------------------------------------------------------------------------------

// One CUDA thread block: each phase runs once in every thread, with the thread's own State.
template <typename State>
struct DeviceBlock {
  unsigned char* shared;
  State state;

  C10_HOST_DEVICE int index() const {
#ifdef __CUDA_ARCH__
    return blockIdx.x;
#else
    return 0;
#endif
  }
  C10_HOST_DEVICE int count() const {
#ifdef __CUDA_ARCH__
    return gridDim.x;
#else
    return 1;
#endif
  }
  template <typename F>
  C10_HOST_DEVICE void threads(const F& f) {
#ifdef __CUDA_ARCH__
    f(static_cast<int>(threadIdx.x), state);
#endif
  }
  C10_HOST_DEVICE void sync() const {
#ifdef __CUDA_ARCH__
    __syncthreads();
#endif
  }
};

template <typename Job>
__global__ void __launch_bounds__(kThreads) block_kernel(Job job) {
  extern __shared__ __align__(16) unsigned char shared[];
  DeviceBlock<typename Job::State> block{shared, {}};
  job(block);
}

struct NoState {};

template <typename index_t>
using IndexDivider = at::cuda::detail::IntDivider<index_t>;

// Forward and backward of the ghost features (and the shift): work in tiles of the *source*
// (x1 for the forward, grad_x1 for the backward), in memory order: a tile is kThreads vectors
// of one plane, a plane one (n, c) image (NCHW) or one (n, y) row of pixels (NHWC).
//   forward:  load x1 at (n, s, y, x), write out's copy there and each ghost of s at its offset
//             (zero where the source of the ghost element at (y, x) is outside the image);
//   backward: grad_x1 at (n, s, y, x) = grad's copy there + each ghost's gradient at its offset.
template <typename scalar_t, typename index_t, bool kChannelsLast, bool kBackward, typename Shift>
struct TileJob {
  using State = NoState;
  using opmath_t = at::opmath_type<scalar_t>;
  static constexpr int V = kVec<scalar_t>;

  const scalar_t* in;  // forward: x1 (source); backward: grad_out (written-tensor shape)
  scalar_t* out;       // forward: out (written-tensor shape); backward: grad_x1 (source)
  Geometry geo;
  Shift shift;
  int groups;
  index_t plane_len, tiles;
  IndexDivider<index_t> tiles_div;  // tile -> (plane, tile in the plane)
  IndexDivider<index_t> plane_div;  // plane -> (n, s) NCHW, (n, y) NHWC
  IndexDivider<unsigned> minor_div;  // in-plane index -> (y, x) NCHW, (x, s) NHWC
  IndexDivider<unsigned> group_div;  // ghost -> its group
  bool vectorized;                   // 16-byte accesses: planes, copies and pointers all aligned
  size_t shared_bytes;

  template <typename Block>
  C10_HOST_DEVICE void operator()(Block& block) const {
    auto* picks = reinterpret_cast<Pick<opmath_t>*>(block.shared);
    block.threads([&](int t, State&) {
      for (int g = t; g < groups; g += kThreads) picks[g] = shift.template pick<opmath_t>(g);
    });
    block.sync();
    for (index_t tile = block.index(); tile < tiles; tile += block.count()) {
      block.threads([&](int t, State&) { run(picks, tile, t); });
    }
  }

  C10_HOST_DEVICE void run(const Pick<opmath_t>* picks, index_t tile, int t) const {
    const auto tq = tiles_div.divmod(tile);
    const index_t plane = tq.div, first = tq.mod * (kThreads * V) + static_cast<index_t>(t) * V;
    if (first >= plane_len) return;
    const auto pq = plane_div.divmod(plane);
    const index_t n = pq.div;
    const int middle = static_cast<int>(pq.mod);
    const int count = plane_len - first < static_cast<index_t>(V) ? static_cast<int>(plane_len - first) : V;
    const int out_channels = geo.copy_channels + geo.num_ghost;
    int ys[V], xs[V], ss[V];
#pragma unroll
    for (int u = 0; u < V; ++u) {
      const auto mq = minor_div.divmod(static_cast<unsigned>(first) + u);  // (plane_len < 2^31)
      ys[u] = kChannelsLast ? middle : static_cast<int>(mq.div);
      xs[u] = kChannelsLast ? static_cast<int>(mq.div) : static_cast<int>(mq.mod);
      ss[u] = kChannelsLast ? static_cast<int>(mq.mod) : middle;
    }
    auto at = [&](int c, int y, int x) {  // offset in the written-tensor shape
      return index4<kChannelsLast, index_t>(n, c, y, x, out_channels, geo.height, geo.width);
    };
    const index_t source = plane * plane_len + first;  // offset in the source shape
    scalar_t values[V];
    if (!kBackward || geo.copy_channels) {  // x1 (forward) or grad's copy (backward)
      const scalar_t* from = kBackward ? in + at(ss[0], ys[0], xs[0]) : in + source;
      if (vectorized) {
        load_vector(from, values);
      } else {
#pragma unroll
        for (int u = 0; u < V; ++u) {
          if (u < count) values[u] = load(kBackward ? in + at(ss[u], ys[u], xs[u]) : in + source + u);
        }
      }
    }
    if constexpr (kBackward) {
#pragma unroll
      for (int u = 0; u < V; ++u) {
        if (u < count) values[u] = gather_gradient(picks, n, ss[u], ys[u], xs[u], values[u]);
      }
      if (vectorized) {
        store_vector(out + source, values);
      } else {
#pragma unroll
        for (int u = 0; u < V; ++u) {
          if (u < count) store(out + source + u, values[u]);
        }
      }
    } else {
      if (geo.copy_channels) {
        if (vectorized) {
          store_vector(out + at(ss[0], ys[0], xs[0]), values);
        } else {
#pragma unroll
          for (int u = 0; u < V; ++u) {
            if (u < count) store(out + at(ss[u], ys[u], xs[u]), values[u]);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < V; ++u) {
        if (u < count) scatter_ghosts(picks, n, ss[u], ys[u], xs[u], values[u]);
      }
    }
  }

  // Forward: the ghosts made from x1[n, s, y, x] = value, and the zeros at (y, x) they lack.
  C10_HOST_DEVICE void scatter_ghosts(const Pick<opmath_t>* picks, index_t n, int s, int y, int x,
                                      scalar_t value) const {
    const int out_channels = geo.copy_channels + geo.num_ghost;
    for (int j = s; j < geo.num_ghost; j += geo.src_channels) {
      const int group = static_cast<int>(group_div.div(static_cast<unsigned>(j)));
      const Pick<opmath_t> pick = picks[group];
      const int c = geo.copy_channels + j;
      auto at = [&](int yy, int xx) {
        return index4<kChannelsLast, index_t>(n, c, yy, xx, out_channels, geo.height, geo.width);
      };
      if (pick.dense) {
        store(out + at(y, x), shift.template dense_sum<scalar_t>(group, [&](int dy, int dx) {
          return inside(y - dy, x - dx, geo.height, geo.width)
                     ? load(in + index4<kChannelsLast, index_t>(n, s, y - dy, x - dx, geo.src_channels, geo.height,
                                                                 geo.width))
                     : scalar_t(0);
        }));
        continue;
      }
      if (inside(y + pick.dy, x + pick.dx, geo.height, geo.width)) {
        store(out + at(y + pick.dy, x + pick.dx), weighted<scalar_t, Shift>(pick, value));
      }
      if (!inside(y - pick.dy, x - pick.dx, geo.height, geo.width)) store(out + at(y, x), scalar_t(0));
    }
  }

  // Backward: grad_x1[n, s, y, x] from its copy's gradient `own` and its ghosts' gradients.
  C10_HOST_DEVICE scalar_t gather_gradient(const Pick<opmath_t>* picks, index_t n, int s, int y, int x,
                                           scalar_t own) const {
    const int out_channels = geo.copy_channels + geo.num_ghost;
    opmath_t acc = geo.copy_channels ? static_cast<opmath_t>(own) : opmath_t(0);
    for (int j = s; j < geo.num_ghost; j += geo.src_channels) {
      const int group = static_cast<int>(group_div.div(static_cast<unsigned>(j)));
      const Pick<opmath_t> pick = picks[group];
      const int c = geo.copy_channels + j;
      auto grad_at = [&](int dy, int dx) {
        return inside(y + dy, x + dx, geo.height, geo.width)
                   ? load(in + index4<kChannelsLast, index_t>(n, c, y + dy, x + dx, out_channels, geo.height,
                                                               geo.width))
                   : scalar_t(0);
      };
      const scalar_t term = pick.dense ? shift.template dense_sum<scalar_t>(group, grad_at)
                                       : (inside(y + pick.dy, x + pick.dx, geo.height, geo.width)
                                              ? weighted<scalar_t, Shift>(pick, grad_at(pick.dy, pick.dx))
                                              : scalar_t(0));
      acc += static_cast<opmath_t>(term);
    }
    return static_cast<scalar_t>(acc);
  }
};

// The training backward in one pass: grad_x1 (as TileJob's backward, under the learned shift)
// and the selection gradient's partial sums
//   partials[n, j, segment, k] = sum over the segment's (y, x) of grad[n, copy + j, y, x] *
//                                x1[n, j % c_i, y - dy_k, x - dx_k]   (zero outside)
// for orientations k in [k0, k0 + kK), on NCHW tensors. A block owns (n, s, segment): the rows
// of one source plane's segment, walked in bands of `band` rows; with `staged`, the band's rows
// of x1 and of the gradients of every ghost of s, plus max_shift rows either side, live in a
// ring of `ring` rows in shared memory, so each is read from global memory once (unstaged, for
// rows too wide for shared memory: read from global memory for each orientation).
template <typename scalar_t, typename index_t, int kK>
struct TrainBackwardJob {
  using opmath_t = at::opmath_type<scalar_t>;
  struct State {
    opmath_t acc[kK];
  };
  static constexpr int V = kVec<scalar_t>;

  const scalar_t* grad;  // (N, c_i + num_ghost, H, W)
  const scalar_t* x1;    // (N, c_i, H, W), same memory order
  scalar_t* grad_x1;     // (N, c_i, H, W), or nullptr: another launch writes it
  opmath_t* partials;    // (N, num_ghost, segments, num_k)
  LearnedShift<opmath_t> shift;
  Geometry geo;
  int groups, num_k, k0, segments, segment_rows, band, ring, max_ghosts;
  index_t items;
  bool staged, vectorized;
  size_t shared_bytes;

  // shared memory: picks | scratch[kThreads] | totals[max_ghosts][kK] | rings (staged)
  C10_HOST_DEVICE opmath_t* scratch(unsigned char* shared) const {
    return reinterpret_cast<opmath_t*>(shared + sizeof(Pick<opmath_t>) * groups);
  }
  C10_HOST_DEVICE scalar_t* rings(unsigned char* shared) const {
    return reinterpret_cast<scalar_t*>(scratch(shared) + kThreads + max_ghosts * kK);
  }

  template <typename Block>
  C10_HOST_DEVICE void operator()(Block& block) const {
    auto* picks = reinterpret_cast<Pick<opmath_t>*>(block.shared);
    opmath_t* sums = scratch(block.shared);
    opmath_t* totals = sums + kThreads;
    scalar_t* ring_rows = rings(block.shared);
    const int side = 2 * shift.max_shift + 1, d = shift.max_shift, width = geo.width, height = geo.height;
    const int out_channels = geo.copy_channels + geo.num_ghost;
    block.threads([&](int t, State&) {
      for (int g = t; g < groups; g += kThreads) picks[g] = shift.template pick<opmath_t>(g);
    });
    block.sync();
    for (index_t item = block.index(); item < items; item += block.count()) {
      const int segment = static_cast<int>(item % segments);
      const index_t plane = item / segments;
      const index_t n = plane / geo.src_channels;
      const int s = static_cast<int>(plane % geo.src_channels);
      const int ghosts = s < geo.num_ghost ? (geo.num_ghost - 1 - s) / geo.src_channels + 1 : 0;
      const int row_begin = segment * segment_rows, row_end = std::min(height, row_begin + segment_rows);
      // (a ring slot holds one row of x1, then one row of each ghost's gradient)
      auto slot = [&](int plane_in_ring, int y, int x) { return (plane_in_ring * ring + y % ring) * width + x; };
      auto x1_at = [&](int y, int x) {
        return staged ? ring_rows[slot(0, y, x)]
                      : load(x1 + index4<false, index_t>(n, s, y, x, geo.src_channels, height, width));
      };
      auto ghost_grad_at = [&](int ghost, int y, int x) {
        const int c = geo.copy_channels + s + ghost * geo.src_channels;
        return staged ? ring_rows[slot(1 + ghost, y, x)]
                      : load(grad + index4<false, index_t>(n, c, y, x, out_channels, height, width));
      };
      block.threads([&](int t, State& state) {
        for (int i = t; i < ghosts * kK; i += kThreads) totals[i] = 0;
#pragma unroll
        for (int k = 0; k < kK; ++k) state.acc[k] = 0;
      });
      int loaded = std::max(0, row_begin - d);  // (the same in every thread)
      for (int y0 = row_begin; y0 < row_end; y0 += band) {
        const int y1 = std::min(row_end, y0 + band);
        if (staged) {
          const int upto = std::min(height, y1 + d);
          block.sync();  // (the previous band is done with the slots about to be overwritten)
          block.threads([&](int t, State&) { fill_ring(ring_rows, n, s, ghosts, loaded, upto, t); });
          loaded = upto;
          block.sync();
        }
        if (grad_x1) {
          block.threads([&](int t, State&) {
            for (int e = t; e < (y1 - y0) * width; e += kThreads) {
              const int y = y0 + e / width, x = e % width;
              opmath_t acc = static_cast<opmath_t>(
                  load(grad + index4<false, index_t>(n, s, y, x, out_channels, height, width)));
              for (int ghost = 0; ghost < ghosts; ++ghost) {
                const int group = (s + ghost * geo.src_channels) / geo.per_group;
                const Pick<opmath_t> pick = picks[group];
                auto at = [&](int dy, int dx) {
                  return inside(y + dy, x + dx, height, width) ? ghost_grad_at(ghost, y + dy, x + dx) : scalar_t(0);
                };
                acc += static_cast<opmath_t>(pick.dense ? shift.template dense_sum<scalar_t>(group, at)
                                                        : weighted<scalar_t, LearnedShift<opmath_t>>(
                                                              pick, at(pick.dy, pick.dx)));
              }
              store(grad_x1 + index4<false, index_t>(n, s, y, x, geo.src_channels, height, width),
                    static_cast<scalar_t>(acc));
            }
          });
        }
        for (int ghost = 0; ghost < ghosts; ++ghost) {
          block.threads([&](int t, State& state) {
            int dys[kK], dxs[kK];  // orientation u's offset; past num_k: out of any image
#pragma unroll
            for (int u = 0; u < kK; ++u) {
              dys[u] = k0 + u < num_k ? (k0 + u) / side - d : height;
              dxs[u] = k0 + u < num_k ? (k0 + u) % side - d : 0;
            }
            for (int e = t; e < (y1 - y0) * width; e += kThreads) {
              const int y = y0 + e / width, x = e % width;
              const opmath_t g = static_cast<opmath_t>(ghost_grad_at(ghost, y, x));
#pragma unroll
              for (int u = 0; u < kK; ++u) {
                if (inside(y - dys[u], x - dxs[u], height, width)) {
                  state.acc[u] += g * static_cast<opmath_t>(x1_at(y - dys[u], x - dxs[u]));
                }
              }
            }
          });
          if (ghosts > 1) add_block_sums(block, sums, totals + ghost * kK);
        }
      }
      if (ghosts == 1) add_block_sums(block, sums, totals);
      block.threads([&](int t, State&) {
        for (int i = t; i < ghosts * kK; i += kThreads) {
          const int ghost = i / kK, u = i % kK, j = s + ghost * geo.src_channels;
          if (k0 + u < num_k) {
            const index_t at = ((n * geo.num_ghost + j) * segments + segment) * num_k + k0 + u;
            store(partials + at, totals[i]);
          }
        }
      });
      block.sync();
    }
  }

  // Rows [from, to) of x1 and of each ghost's gradient into their ring slots (16-byte loads
  // where rows are aligned).
  C10_HOST_DEVICE void fill_ring(scalar_t* ring_rows, index_t n, int s, int ghosts, int from, int to, int t) const {
    const int width = geo.width, height = geo.height, out_channels = geo.copy_channels + geo.num_ghost;
    const int count = (to - from) * width, step = vectorized ? V : 1;
    for (int p = 0; p <= ghosts; ++p) {
      const scalar_t* base =
          p == 0 ? x1 + index4<false, index_t>(n, s, from, 0, geo.src_channels, height, width)
                 : grad + index4<false, index_t>(n, geo.copy_channels + s + (p - 1) * geo.src_channels, from, 0,
                                                 out_channels, height, width);
      for (int e = t * step; e < count; e += kThreads * step) {
        scalar_t values[V];
        if (vectorized) {
          load_vector(base + e, values);
        } else {
          values[0] = load(base + e);
        }
        for (int u = 0; u < step; ++u) {
          const int y = from + (e + u) / width, x = (e + u) % width;
          ring_rows[(p * ring + y % ring) * width + x] = values[u];
        }
      }
    }
  }

  // totals[u] += the sum of every thread's acc[u] (a fixed-order tree: the same result every
  // run), then acc = 0.
  template <typename Block>
  C10_HOST_DEVICE void add_block_sums(Block& block, opmath_t* sums, opmath_t* totals) const {
#pragma unroll
    for (int u = 0; u < kK; ++u) {
      block.sync();
      block.threads([&](int t, State& state) {
        sums[t] = state.acc[u];
        state.acc[u] = 0;
      });
      block.sync();
      for (int stride = kThreads / 2; stride > 0; stride /= 2) {
        block.threads([&](int t, State&) {
          if (t < stride) sums[t] += sums[t + stride];
        });
        block.sync();
      }
      block.threads([&](int t, State&) {
        if (t == 0) totals[u] += sums[0];
      });
    }
    block.sync();
  }
};

// Runs the kernels on the current CUDA stream.
struct CudaExecutor {
  static bool on_device(const at::Tensor& t) { return t.is_cuda(); }
  static constexpr bool force_64bit_index() { return false; }

  // Blocks of `job` resident on the whole device at once: one full wave.
  template <typename Job>
  static int64_t wave(const Job& job, const at::Tensor& t) {
    int sms = 0, per_sm = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, t.get_device()));
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, block_kernel<Job>, kThreads,
                                                                 job.shared_bytes));
    return std::max<int64_t>(1, static_cast<int64_t>(per_sm) * sms);
  }

  template <typename Job>
  static void launch(const Job& job, int64_t blocks) {
    block_kernel<Job><<<static_cast<unsigned>(blocks), kThreads, job.shared_bytes,
                        c10::cuda::getCurrentCUDAStream()>>>(job);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

// --- host side ------------------------------------------------------------------------------

// The layout rule shared with the reference and the fake kernels (reference.py memory_format).
bool is_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

at::Tensor dense(const at::Tensor& t, bool channels_last) {
  return t.contiguous(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

at::Tensor empty_as(const at::Tensor& like, at::IntArrayRef sizes, bool channels_last) {
  return at::empty(sizes, like.options().memory_format(channels_last ? at::MemoryFormat::ChannelsLast
                                                                     : at::MemoryFormat::Contiguous));
}

int checked_int(int64_t v, const char* what) {
  TORCH_CHECK(0 <= v && v <= std::numeric_limits<int32_t>::max(), "ghostsr: ", what, " = ", v,
              " is out of range for these kernels");
  return static_cast<int>(v);
}

template <typename Exec>
void check_input(const at::Tensor& t, const char* what) {
  TORCH_CHECK(Exec::on_device(t), "ghostsr: ", what, " is on ", t.device(), ", not on this kernel's device");
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), "ghostsr: ", what, " must be floating point, got ",
              t.scalar_type());
}

void check_same_device(const at::Tensor& t, const at::Tensor& like, const char* what) {
  TORCH_CHECK(t.device() == like.device(), "ghostsr: ", what, " must be on ", like.device(), ", got ", t.device());
}

// The geometry of `num_ghost` ghosts in `groups` groups made from the `src_channels` channels
// of a 4-D (N, *, H, W) tensor `t`, which are copied first.
Geometry ghost_geometry(const at::Tensor& t, int64_t src_channels, int64_t num_ghost, int64_t groups) {
  TORCH_CHECK(num_ghost >= 0, "ghostsr: num_ghost must be >= 0, got ", num_ghost);
  TORCH_CHECK(groups >= 1 && num_ghost % groups == 0, "ghostsr: ", num_ghost, " ghost channels cannot be split into ",
              groups, " orientation groups");
  TORCH_CHECK(groups <= 2048, "ghostsr: at most 2048 orientation groups, got ", groups);
  TORCH_CHECK(num_ghost == 0 || src_channels >= 1, "ghostsr: ghosts need at least one intrinsic channel");
  Geometry geo;
  geo.batch = t.size(0);
  geo.height = checked_int(t.size(2), "height");
  geo.width = checked_int(t.size(3), "width");
  geo.src_channels = checked_int(src_channels, "intrinsic channels");
  geo.copy_channels = geo.src_channels;
  geo.num_ghost = checked_int(num_ghost, "num_ghost");
  geo.per_group = std::max<int>(1, static_cast<int>(num_ghost / groups));
  checked_int(src_channels + num_ghost, "channels");
  return geo;
}

int64_t side_squared(int64_t max_shift) {
  TORCH_CHECK(0 <= max_shift && max_shift <= 1000, "ghostsr: max_shift must be in [0, 1000], got ", max_shift);
  return (2 * max_shift + 1) * (2 * max_shift + 1);
}

at::ScalarType opmath_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kVectorBytes == 0; }

// 64-bit indices only where some tensor of the launch has 2^31 elements or more.
template <typename Exec>
bool needs_64bit(int64_t numel) {
  return Exec::force_64bit_index() || numel > std::numeric_limits<int32_t>::max();
}

// A grid for `items` work items: at most one full wave of `job`, the blocks striding over the rest.
template <typename Exec, typename Job>
int64_t grid_for(const Job& job, int64_t items, const at::Tensor& t) {
  return std::clamp<int64_t>(items, 1, Exec::wave(job, t));
}

// Forward (out from the source `in`) or backward (grad_x1 `out` from the upstream gradient `in`)
// over the source's elements; `groups` orientations come from `shift`.
template <typename Exec, bool kBackward, typename scalar_t, typename index_t, bool kChannelsLast, typename Shift>
void run_tiles(const scalar_t* in, scalar_t* out, const Geometry& geo, const Shift& shift, int groups,
               const at::Tensor& like) {
  using Job = TileJob<scalar_t, index_t, kChannelsLast, kBackward, Shift>;
  constexpr int V = kVec<scalar_t>;
  const int64_t plane_len = kChannelsLast ? static_cast<int64_t>(geo.width) * geo.src_channels
                                          : static_cast<int64_t>(geo.height) * geo.width;
  TORCH_CHECK(plane_len <= std::numeric_limits<int32_t>::max(), "ghostsr: ", kChannelsLast ? "a row" : "an image",
              " of ", plane_len, " elements is more than these kernels index (2^31 - 1)");
  const int64_t planes = geo.batch * (kChannelsLast ? geo.height : geo.src_channels);
  if (planes == 0 || plane_len == 0) return;
  const int64_t per_plane = (plane_len + kThreads * V - 1) / (kThreads * V);
  const int out_channels = geo.copy_channels + geo.num_ghost;
  const bool copies_aligned = kChannelsLast ? geo.src_channels % V == 0 && out_channels % V == 0 : plane_len % V == 0;
  Job job{in,
          out,
          geo,
          shift,
          groups,
          static_cast<index_t>(plane_len),
          static_cast<index_t>(planes * per_plane),
          IndexDivider<index_t>(static_cast<index_t>(per_plane)),
          IndexDivider<index_t>(static_cast<index_t>(kChannelsLast ? geo.height : geo.src_channels)),
          IndexDivider<unsigned>(kChannelsLast ? geo.src_channels : geo.width),
          IndexDivider<unsigned>(geo.per_group),
          copies_aligned && plane_len % V == 0 && aligned(in) && aligned(out),
          sizeof(Pick<at::opmath_type<scalar_t>>) * groups};
  Exec::launch(job, grid_for<Exec>(job, planes * per_plane, like));
}

// Dispatches run_tiles over dtype, index width and layout; `make_shift(scalar_t zero)` gives the
// shift, which may depend on the element type.
template <typename Exec, bool kBackward, typename MakeShift>
void run(const at::Tensor& in, at::Tensor& out, const Geometry& geo, bool channels_last, int groups,
         const MakeShift& make_shift) {
  if (out.numel() == 0) return;
  const bool wide = needs_64bit<Exec>(std::max(in.numel(), out.numel()));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "ghostsr_tiles", [&] {
    const auto shift = make_shift(scalar_t(0));
    const scalar_t* from = in.const_data_ptr<scalar_t>();
    scalar_t* to = out.mutable_data_ptr<scalar_t>();
    if (channels_last && wide) {
      run_tiles<Exec, kBackward, scalar_t, int64_t, true>(from, to, geo, shift, groups, in);
    } else if (channels_last) {
      run_tiles<Exec, kBackward, scalar_t, unsigned, true>(from, to, geo, shift, groups, in);
    } else if (wide) {
      run_tiles<Exec, kBackward, scalar_t, int64_t, false>(from, to, geo, shift, groups, in);
    } else {
      run_tiles<Exec, kBackward, scalar_t, unsigned, false>(from, to, geo, shift, groups, in);
    }
  });
}

FixedShift fixed_shift(const at::Tensor* offsets, int64_t dy, int64_t dx, const Geometry& geo) {
  return FixedShift{offsets ? offsets->const_data_ptr<int64_t>() : nullptr, dy, dx,
                    std::max(std::max(geo.height, geo.width), 1)};
}

at::Tensor checked_offsets(const at::Tensor& offsets, const at::Tensor& x) {
  check_same_device(offsets, x, "offsets");
  TORCH_CHECK(offsets.dim() == 2 && offsets.size(1) == 2 && offsets.size(0) >= 1,
              "ghostsr: offsets must be (G, 2) integer (dy, dx) pairs, got shape ", offsets.sizes());
  TORCH_CHECK(!at::isFloatingType(offsets.scalar_type()) && !at::isComplexType(offsets.scalar_type()),
              "ghostsr: offsets must be integer, got ", offsets.scalar_type());
  return offsets.to(at::kLong).contiguous();
}

at::Tensor checked_selection(const at::Tensor& selection, const at::Tensor& x, int64_t max_shift) {
  check_same_device(selection, x, "selection");
  TORCH_CHECK(selection.dim() == 2 && selection.size(0) >= 1 && selection.size(1) == side_squared(max_shift),
              "ghostsr: selection must be (G, (2 * max_shift + 1)^2), got shape ", selection.sizes(),
              " with max_shift = ", max_shift);
  TORCH_CHECK(at::isFloatingType(selection.scalar_type()), "ghostsr: selection must be floating point");
  return selection.to(opmath_dtype(x.scalar_type())).contiguous();
}

void check_ghost_grad(const at::Tensor& grad_out, int64_t num_ghost, const char* op) {
  TORCH_CHECK(grad_out.dim() == 4 && num_ghost >= 0 && grad_out.size(1) >= num_ghost, "ghostsr::", op,
              ": grad_out must be (N, C + num_ghost, H, W), got shape ", grad_out.sizes(), " with num_ghost = ",
              num_ghost);
}

// --- the ops ---------------------------------------------------------------------------------

template <typename Exec>
at::Tensor shift(const at::Tensor& x, at::IntArrayRef offset) {
  check_input<Exec>(x, "x");
  TORCH_CHECK(x.dim() >= 2, "ghostsr::shift: x must be (..., H, W), got ", x.dim(), " dimensions");
  TORCH_CHECK(offset.size() == 2, "ghostsr::shift: offset must be (dy, dx), got ", offset.size(), " values");
  const c10::OptionalDeviceGuard guard(x.device());
  const bool channels_last = is_channels_last(x);
  const at::Tensor src = dense(x, channels_last);
  at::Tensor out = empty_as(src, src.sizes(), channels_last);
  if (out.numel() == 0) return out;
  // NHWC: (N, C, H, W) as it is; NCHW: every leading index is one single-channel image.
  Geometry geo;
  geo.height = checked_int(x.size(-2), "height");
  geo.width = checked_int(x.size(-1), "width");
  geo.batch = channels_last ? x.size(0) : x.numel() / (static_cast<int64_t>(geo.height) * geo.width);
  geo.src_channels = channels_last ? checked_int(x.size(1), "channels") : 1;
  geo.copy_channels = 0;
  geo.num_ghost = geo.per_group = geo.src_channels;
  const FixedShift fixed = fixed_shift(nullptr, offset[0], offset[1], geo);
  run<Exec, false>(src, out, geo, channels_last, 1, [&](auto) { return fixed; });
  return out;
}

template <typename Exec>
at::Tensor ghost_features(const at::Tensor& x1, int64_t num_ghost, const at::Tensor& offsets) {
  check_input<Exec>(x1, "x1");
  TORCH_CHECK(x1.dim() == 4, "ghostsr::ghost_features: x1 must be (N, C, H, W), got shape ", x1.sizes());
  const c10::OptionalDeviceGuard guard(x1.device());
  const at::Tensor table = checked_offsets(offsets, x1);
  const Geometry geo = ghost_geometry(x1, x1.size(1), num_ghost, table.size(0));
  const bool channels_last = is_channels_last(x1);
  const at::Tensor src = dense(x1, channels_last);
  at::Tensor out = empty_as(src, {x1.size(0), x1.size(1) + num_ghost, x1.size(2), x1.size(3)}, channels_last);
  const FixedShift fixed = fixed_shift(&table, 0, 0, geo);
  run<Exec, false>(src, out, geo, channels_last, static_cast<int>(table.size(0)), [&](auto) { return fixed; });
  return out;
}

template <typename Exec>
at::Tensor ghost_features_backward(const at::Tensor& grad_out, int64_t num_ghost, const at::Tensor& offsets) {
  check_input<Exec>(grad_out, "grad_out");
  check_ghost_grad(grad_out, num_ghost, "ghost_features_backward");
  const c10::OptionalDeviceGuard guard(grad_out.device());
  const at::Tensor table = checked_offsets(offsets, grad_out);
  const int64_t c_intrinsic = grad_out.size(1) - num_ghost;
  const Geometry geo = ghost_geometry(grad_out, c_intrinsic, num_ghost, table.size(0));
  const bool channels_last = is_channels_last(grad_out);
  const at::Tensor grad = dense(grad_out, channels_last);
  at::Tensor grad_x1 = empty_as(grad, {grad.size(0), c_intrinsic, grad.size(2), grad.size(3)}, channels_last);
  const FixedShift fixed = fixed_shift(&table, 0, 0, geo);
  run<Exec, true>(grad, grad_x1, geo, channels_last, static_cast<int>(table.size(0)), [&](auto) { return fixed; });
  return grad_x1;
}

template <typename Exec>
at::Tensor ghost_features_train(const at::Tensor& x1, int64_t num_ghost, const at::Tensor& selection,
                                int64_t max_shift) {
  check_input<Exec>(x1, "x1");
  TORCH_CHECK(x1.dim() == 4, "ghostsr::ghost_features_train: x1 must be (N, C, H, W), got shape ", x1.sizes());
  const c10::OptionalDeviceGuard guard(x1.device());
  const at::Tensor weights = checked_selection(selection, x1, max_shift);
  const Geometry geo = ghost_geometry(x1, x1.size(1), num_ghost, weights.size(0));
  const bool channels_last = is_channels_last(x1);
  const at::Tensor src = dense(x1, channels_last);
  at::Tensor out = empty_as(src, {x1.size(0), x1.size(1) + num_ghost, x1.size(2), x1.size(3)}, channels_last);
  const int d = static_cast<int>(max_shift);
  run<Exec, false>(src, out, geo, channels_last, static_cast<int>(weights.size(0)), [&](auto zero) {
    using opmath_t = at::opmath_type<decltype(zero)>;
    return LearnedShift<opmath_t>{weights.const_data_ptr<opmath_t>(), d};
  });
  return out;
}

// The training backward for orientations [k0, k0 + kK): sizes its bands to the shared memory.
template <typename Exec, typename scalar_t, typename index_t, int kK>
void run_train_backward(const at::Tensor& grad, const at::Tensor& x1, at::Tensor* grad_x1, at::Tensor& partials,
                        const at::Tensor& weights, const Geometry& geo, int max_shift, int segments, int k0) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Job = TrainBackwardJob<scalar_t, index_t, kK>;
  constexpr int V = kVec<scalar_t>;
  const int groups = static_cast<int>(weights.size(0));
  const int max_ghosts = geo.num_ghost == 0 ? 0 : (geo.num_ghost - 1) / geo.src_channels + 1;
  const int segment_rows = (geo.height + segments - 1) / segments;
  const size_t fixed_bytes = sizeof(Pick<opmath_t>) * groups + sizeof(opmath_t) * (kThreads + max_ghosts * kK);
  // rows of x1 and of every ghost's gradient that fit beside the fixed part
  const size_t row_bytes = sizeof(scalar_t) * geo.width * (1 + max_ghosts);
  const int64_t rows_fit = fixed_bytes < kSharedBytes ? (kSharedBytes - fixed_bytes) / row_bytes : 0;
  const int band = static_cast<int>(std::min<int64_t>(segment_rows, rows_fit - 2 * max_shift));
  const bool staged = band >= 1;
  const int rows = staged ? band : std::min(segment_rows, 32);
  Job job{grad.const_data_ptr<scalar_t>(),
          x1.const_data_ptr<scalar_t>(),
          grad_x1 ? grad_x1->mutable_data_ptr<scalar_t>() : nullptr,
          partials.mutable_data_ptr<opmath_t>(),
          LearnedShift<opmath_t>{weights.const_data_ptr<opmath_t>(), max_shift},
          geo,
          groups,
          static_cast<int>(partials.size(3)),
          k0,
          segments,
          segment_rows,
          rows,
          rows + 2 * max_shift,
          max_ghosts,
          static_cast<index_t>(geo.batch * geo.src_channels * segments),
          staged,
          geo.width % V == 0 && aligned(grad.const_data_ptr()) && aligned(x1.const_data_ptr()),
          fixed_bytes + (staged ? row_bytes * (rows + 2 * max_shift) : 0)};
  Exec::launch(job, grid_for<Exec>(job, geo.batch * geo.src_channels * segments, x1));
}

template <typename Exec>
std::tuple<at::Tensor, at::Tensor> ghost_features_train_backward(const at::Tensor& grad_out, const at::Tensor& x1,
                                                                 int64_t num_ghost, const at::Tensor& selection,
                                                                 int64_t max_shift) {
  check_input<Exec>(grad_out, "grad_out");
  check_input<Exec>(x1, "x1");
  check_same_device(grad_out, x1, "grad_out");
  check_ghost_grad(grad_out, num_ghost, "ghost_features_train_backward");
  TORCH_CHECK(x1.dim() == 4 && grad_out.size(0) == x1.size(0) && grad_out.size(1) == x1.size(1) + num_ghost &&
                  grad_out.size(2) == x1.size(2) && grad_out.size(3) == x1.size(3),
              "ghostsr::ghost_features_train_backward: grad_out must be (N, C + num_ghost, H, W) for x1 (N, C, H, W), "
              "got ", grad_out.sizes(), " and ", x1.sizes(), " with num_ghost = ", num_ghost);
  TORCH_CHECK(grad_out.scalar_type() == x1.scalar_type(), "ghostsr::ghost_features_train_backward: grad_out is ",
              grad_out.scalar_type(), " but x1 is ", x1.scalar_type());
  const c10::OptionalDeviceGuard guard(x1.device());
  const at::Tensor weights = checked_selection(selection, x1, max_shift);
  const int64_t num_k = side_squared(max_shift), groups = weights.size(0);
  const Geometry geo = ghost_geometry(x1, x1.size(1), num_ghost, groups);
  // (NCHW here; grad_x1 is laid out as grad_out at the end, as in the reference)
  const at::Tensor src = dense(x1, false), grad = dense(grad_out, false);
  at::Tensor grad_x1 = empty_as(src, src.sizes(), false);
  const auto laid_out = [&](const at::Tensor& t) { return dense(t, is_channels_last(grad_out)); };
  const at::ScalarType acc_type = opmath_dtype(x1.scalar_type());
  const int64_t planes = geo.batch * geo.src_channels;
  if (planes == 0 || geo.height == 0 || geo.width == 0) {
    return {laid_out(grad_x1), at::zeros({groups, num_k}, x1.options().dtype(acc_type))};
  }
  // Split planes into segments of rows so that one wave of blocks has work (never a partial
  // second wave: at most one item per block where planes are few).
  TrainBackwardJob<float, unsigned, 9> probe{};
  probe.shared_bytes = kSharedBytes;
  const int64_t wave = Exec::wave(probe, x1);
  const int segments = static_cast<int>(std::clamp<int64_t>(wave / planes, 1, geo.height));
  at::Tensor partials = at::zeros({geo.batch, num_ghost, segments, num_k}, x1.options().dtype(acc_type));
  const bool wide = needs_64bit<Exec>(grad.numel());
  const int d = static_cast<int>(max_shift);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "ghostsr_train_backward", [&] {
    auto launch = [&](auto k_chunk, int k0) {
      constexpr int kK = decltype(k_chunk)::value;
      at::Tensor* out = k0 == 0 ? &grad_x1 : nullptr;
      if (wide) {
        run_train_backward<Exec, scalar_t, int64_t, kK>(grad, src, out, partials, weights, geo, d, segments, k0);
      } else {
        run_train_backward<Exec, scalar_t, unsigned, kK>(grad, src, out, partials, weights, geo, d, segments, k0);
      }
    };
    if (num_k <= 9) {
      launch(std::integral_constant<int, 9>{}, 0);
    } else if (num_k <= 25) {
      launch(std::integral_constant<int, 25>{}, 0);
    } else {  // max_shift > 3: one pass per 49 orientations
      for (int k0 = 0; k0 < num_k; k0 += 49) launch(std::integral_constant<int, 49>{}, k0);
    }
  });
  const int64_t per_group = num_ghost / groups;
  at::Tensor grad_selection =
      num_ghost == 0 ? at::zeros({groups, num_k}, x1.options().dtype(acc_type))
                     : partials.view({geo.batch, groups, per_group, segments, num_k}).sum({0, 2, 3});
  return {laid_out(grad_x1), grad_selection};
}

// Every op's kernel on `Exec`, registered with `m` (a library of ghostsr's schemas).
template <typename Exec>
void register_kernels(torch::Library& m) {
  m.impl("shift", &shift<Exec>);
  m.impl("ghost_features", &ghost_features<Exec>);
  m.impl("ghost_features_backward", &ghost_features_backward<Exec>);
  m.impl("ghost_features_train", &ghost_features_train<Exec>);
  m.impl("ghost_features_train_backward", &ghost_features_train_backward<Exec>);
}

}  // namespace

#ifdef GHOSTSR_SOURCE_HASH
// The hash of this source (setup.py passes it), read from the library's bytes by extension.py,
// which ignores a prebuilt library built from another version.
#define GHOSTSR_STRINGIFY(x) #x
#define GHOSTSR_STAMP(hash) "ghostsr-source-sha256:" GHOSTSR_STRINGIFY(hash)
extern "C" __attribute__((used)) const char ghostsr_source_stamp[] = GHOSTSR_STAMP(GHOSTSR_SOURCE_HASH);
#endif

#ifndef GHOSTSR_NO_CUDA_REGISTRATION
// Against the schemas library.py defines (torch.ops.ghostsr.*).
TORCH_LIBRARY_IMPL(ghostsr, CUDA, m) { register_kernels<CudaExecutor>(m); }
#endif
