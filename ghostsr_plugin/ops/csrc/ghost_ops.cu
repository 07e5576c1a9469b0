// Fused CUDA kernels of GhostSR's shift ops: the compiled kernels behind torch.ops.ghostsr.*.
//
// ghostsr_plugin/ops/library.py defines each op's schema once (namespace ghostsr) with its CPU
// kernel (the pure-PyTorch reference, ghostsr_plugin/ops/reference.py), fake kernel, autograd and
// argument checks; its CUDA kernel checks the arguments in Python (sizes, dtypes and devices only)
// and then calls the kernel registered here under the same schema in the namespace ghostsr_kernels.
// The checks below repeat those of library.py as a second line, before anything is allocated or
// launched. What every kernel must reproduce:
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
// Design: time set by bytes. Each thread owns one *item*, a 16-byte vector of the source (V
// elements: V = 4 float, 8 half/bfloat16, 2 double): V consecutive columns of one row (NCHW) or
// V consecutive channels of one pixel (NHWC). It writes every output vector made from that
// position, each exactly once, with 16-byte stores: forward, the copy of x1 and each ghost of
// that source at the same place, gathering the ghost's shifted input; backward, the gradient of
// x1 there, gathering each ghost's gradient at the shifted place. Overlapping reads of
// neighbouring threads hit L1/L2, so device memory sees each input about once. A shifted NCHW
// row is read with two aligned 16-byte loads and a funnel shift (any dx, any dtype); NHWC shifts
// move whole pixels, so every access is one aligned vector. Index arithmetic is per item (a few
// multiply-high divisions), never per element; vectors that are partial (a row's tail, odd
// channel counts) or unaligned take a per-element path with the same results.
// The training backward (input gradient and selection gradient) is one pass too: a block owns a
// band of rows of one source plane (NCHW) or a chunk of pixels (NHWC); each thread sums the
// correlation of x1 with the ghost's gradient under the (2d+1)^2 offsets in registers (d = 1:
// from three rows of registers, no reloads), the block reduces them in a fixed order (the same
// result every run) into partial sums that one small reduction adds up per group.
//
// Blocks are written as a sequence of phases, each run by every thread (Block::threads),
// separated by barriers (Block::sync), and global memory is only touched through the load and
// store helpers. CudaExecutor launches them; tests/csrc/emulated_ghost_ops.cu runs the same block
// code thread by thread on the CPU and counts every global load and store (GHOSTSR_TRACE), so CI
// checks the index math, bounds, layouts and memory traffic without a GPU.
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
#include <cstring>
#include <limits>
#include <type_traits>

#ifndef GHOSTSR_TRACE
#define GHOSTSR_TRACE(is_store, ptr, count)
#endif

namespace {

constexpr int kThreads = 256;            // threads per block, every kernel
constexpr int kVectorBytes = 16;         // widest load/store
constexpr int kMaxGroups = 2048;         // orientation groups (their picks live in shared memory)
constexpr int kChunk = 9;                // orientations a training-backward pass sums (d = 1: all)
constexpr int64_t kMaxImage = std::numeric_limits<int32_t>::max();  // elements of one image
constexpr int kMaxSide = 1 << 29;        // height, width (so that x + dx + V never overflows an int)

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

struct alignas(kVectorBytes) Words {
  uint32_t w[4];
};

C10_HOST_DEVICE inline bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kVectorBytes == 0; }

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

C10_HOST_DEVICE inline uint32_t funnel_right(uint32_t lo, uint32_t hi, int bits) {
#ifdef __CUDA_ARCH__
  return __funnelshift_r(lo, hi, bits);
#else
  return static_cast<uint32_t>((((static_cast<uint64_t>(hi) << 32) | lo) >> bits) & 0xffffffffu);
#endif
}

// Words q.. q+3 of the 32 bytes (a, b), shifted right by `bits` (< 32).
template <int Q>
C10_HOST_DEVICE inline Words window_words(const uint32_t (&w)[8], int bits) {
  Words r;
#pragma unroll
  for (int k = 0; k < 4; ++k) r.w[k] = funnel_right(w[Q + k], w[Q + k + 1], bits);
  return r;
}

// The V elements from p on, all valid, p at any element boundary: one aligned 16-byte load, or
// the two aligned loads around them and a funnel shift (the granules hold only valid elements'
// neighbours, so this never touches memory outside the pages p..p+V-1 are on).
template <typename T>
C10_HOST_DEVICE inline void load_unaligned(const T* p, T (&out)[kVec<T>]) {
  const int bytes = static_cast<int>(reinterpret_cast<uintptr_t>(p) % kVectorBytes);
  if (bytes == 0) {
    load_vector(p, out);
    return;
  }
  const T* base = reinterpret_cast<const T*>(reinterpret_cast<const char*>(p) - bytes);
  T lo[kVec<T>], hi[kVec<T>];
  load_vector(base, lo);
  load_vector(base + kVec<T>, hi);
  uint32_t w[8];
  memcpy(w, lo, kVectorBytes);
  memcpy(w + 4, hi, kVectorBytes);
  const int bits = (bytes % 4) * 8;
  Words r;
  switch (bytes / 4) {
    case 0: r = window_words<0>(w, bits); break;
    case 1: r = window_words<1>(w, bits); break;
    case 2: r = window_words<2>(w, bits); break;
    default: r = window_words<3>(w, bits); break;
  }
  memcpy(out, r.w, kVectorBytes);
}

// The `count` (<= V) elements from p on (the rest 0): one 16-byte load where whole and aligned.
template <typename T>
C10_HOST_DEVICE inline void load_row(const T* p, int count, T (&out)[kVec<T>]) {
  if (count == kVec<T> && aligned(p)) {
    load_vector(p, out);
    return;
  }
#pragma unroll
  for (int u = 0; u < kVec<T>; ++u) out[u] = u < count ? load(p + u) : T(0);
}

// Stores the first `count` (<= V) values from p on: one 16-byte store where whole and aligned.
template <typename T>
C10_HOST_DEVICE inline void store_row(T* p, int count, const T (&in)[kVec<T>]) {
  if (count == kVec<T> && aligned(p)) {
    store_vector(p, in);
    return;
  }
#pragma unroll
  for (int u = 0; u < kVec<T>; ++u) {
    if (u < count) store(p + u, in[u]);
  }
}

// --- geometry ------------------------------------------------------------------------------------

// Offset of element (n, c, y, x) of a dense (N, C, H, W) tensor stored NCHW or NHWC.
template <bool kNHWC>
C10_HOST_DEVICE inline int64_t offset4(int64_t n, int c, int y, int x, int channels, int height, int width) {
  return kNHWC ? ((n * height + y) * width + x) * channels + c : ((n * channels + c) * height + y) * width + x;
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

using Divider = at::cuda::detail::IntDivider<unsigned>;

// What the ghost kernels work on. Channel c < copy_channels of the written tensor is channel c
// of the source; channel copy_channels + j (j < num_ghost) is ghost j: source channel
// j % src_channels under the orientation of group j / per_group.
struct Geometry {
  int64_t batch;
  int height, width;
  int src_channels, copy_channels, num_ghost, per_group, groups;
  C10_HOST_DEVICE int out_channels() const { return copy_channels + num_ghost; }
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
  C10_HOST_DEVICE int num_k() const { return 0; }  // (never dense)
  template <typename opmath_t>
  C10_HOST_DEVICE opmath_t weight(int, int) const { return opmath_t(0); }
  C10_HOST_DEVICE int k_dy(int) const { return 0; }
  C10_HOST_DEVICE int k_dx(int) const { return 0; }
};

// A weighted sum over all (2d+1)^2 offsets per group (the training path's one-hot selection).
template <typename opmath_t>
struct LearnedShift {
  static constexpr bool kWeighted = true;
  const opmath_t* selection;  // (G, (2d+1)^2) contiguous
  int max_shift;

  C10_HOST_DEVICE int side() const { return 2 * max_shift + 1; }
  C10_HOST_DEVICE int num_k() const { return side() * side(); }
  C10_HOST_DEVICE int k_dy(int k) const { return k / side() - max_shift; }
  C10_HOST_DEVICE int k_dx(int k) const { return k % side() - max_shift; }
  template <typename T>
  C10_HOST_DEVICE T weight(int group, int k) const {
    return load(selection + static_cast<int64_t>(group) * num_k() + k);
  }

  // One read of the group's weights: a one-hot group becomes a single offset.
  template <typename T>
  C10_HOST_DEVICE Pick<T> pick(int group) const {
    int nonzero = 0, chosen = 0;
    T w = 0;
    for (int k = 0; k < num_k(); ++k) {
      const T v = weight<T>(group, k);
      if (v != T(0)) ++nonzero, chosen = k, w = v;
    }
    return {k_dy(chosen), k_dx(chosen), w, nonzero != 1};
  }
};

// `value` under a picked orientation, rounded as the reference rounds `0 + weight * value`.
template <typename Shift, typename scalar_t, typename opmath_t>
C10_HOST_DEVICE inline scalar_t weighted(opmath_t weight, scalar_t value) {
  if constexpr (Shift::kWeighted) {
    return static_cast<scalar_t>(opmath_t(0) + mul_rn(weight, static_cast<opmath_t>(value)));
  } else {
    return value;
  }
}

// The V values of shift(plane, (dy, dx)) at row y, columns x..x+V-1 of an NCHW plane: row
// y - dy from column x - dx, zero outside the image (two aligned loads where all inside).
template <typename T>
C10_HOST_DEVICE inline void gather_row(const T* plane, int y, int x, int dy, int dx, int height, int width,
                                       T (&out)[kVec<T>]) {
  constexpr int V = kVec<T>;
  const int ys = y - dy, xs = x - dx;
  if (ys < 0 || ys >= height) {
#pragma unroll
    for (int u = 0; u < V; ++u) out[u] = T(0);
    return;
  }
  const T* row = plane + static_cast<int64_t>(ys) * width;
  if (xs >= 0 && xs <= width - V) {
    load_unaligned(row + xs, out);
    return;
  }
#pragma unroll
  for (int u = 0; u < V; ++u) out[u] = 0 <= xs + u && xs + u < width ? load(row + xs + u) : T(0);
}

// --- blocks --------------------------------------------------------------------------------------

// One CUDA thread block: each phase runs once in every thread, with the thread's own State.
template <typename State>
struct DeviceBlock {
  unsigned char* shared;
  State state;

  C10_HOST_DEVICE int64_t index() const {
#ifdef __CUDA_ARCH__
    return blockIdx.x;
#else
    return 0;
#endif
  }
  C10_HOST_DEVICE int64_t count() const {
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

// Forward (out from x1) and backward (grad_x1 from grad_out) of the ghost features and the shift,
// for images [n0, n0 + images) of the source. Item = one source vector: (n, s, y, V columns)
// NCHW, (n, y, x, V channels) NHWC; it writes, forward, the copy there and every ghost of s at
// the same place (gathering the ghost's input at the shifted place), backward, grad_x1 there
// (gathering each ghost's gradient at the shifted place).
template <typename scalar_t, bool kNHWC, bool kBackward, typename Shift>
struct GhostJob {
  using State = NoState;
  using opmath_t = at::opmath_type<scalar_t>;
  static constexpr int V = kVec<scalar_t>;

  const scalar_t* in;  // forward: x1 (source); backward: grad_out (written-tensor shape)
  scalar_t* out;       // forward: out (written-tensor shape); backward: grad_x1 (source)
  Geometry geo;
  Shift shift;
  int64_t n0;
  unsigned items;
  Divider image_div;  // item -> (image, rest)
  Divider major_div;  // rest -> NCHW (channel, rest) / NHWC (row, rest)
  Divider minor_div;  // rest -> NCHW (row, column vector) / NHWC (column, channel vector)
  Divider group_div;  // ghost -> its group
  size_t shared_bytes;

  template <typename Block>
  C10_HOST_DEVICE void operator()(Block& block) const {
    auto* picks = reinterpret_cast<Pick<opmath_t>*>(block.shared);
    block.threads([&](int t, State&) {
      for (int g = t; g < geo.groups; g += kThreads) picks[g] = shift.template pick<opmath_t>(g);
    });
    block.sync();
    for (int64_t first = block.index() * kThreads; first < items; first += block.count() * kThreads) {
      block.threads([&](int t, State&) {
        if (first + t < items) run(picks, static_cast<unsigned>(first + t));
      });
    }
  }

  C10_HOST_DEVICE void run(const Pick<opmath_t>* picks, unsigned item) const {
    const auto iq = image_div.divmod(item);
    const auto mq = major_div.divmod(iq.mod);
    const auto nq = minor_div.divmod(mq.mod);
    const int64_t n = n0 + iq.div;
    // NCHW: s = channel, y, x = first column; NHWC: y, x, s = first channel
    const int s = kNHWC ? static_cast<int>(nq.mod) * V : static_cast<int>(mq.div);
    const int y = kNHWC ? static_cast<int>(mq.div) : static_cast<int>(nq.div);
    const int x = kNHWC ? static_cast<int>(nq.div) : static_cast<int>(nq.mod) * V;
    const int rest = kNHWC ? geo.src_channels - s : geo.width - x, count = rest < V ? rest : V;
    if constexpr (kBackward) {
      backward(picks, n, s, y, x, count);
    } else {
      forward(picks, n, s, y, x, count);
    }
  }

  C10_HOST_DEVICE int64_t at(int64_t n, int c, int y, int x, int channels) const {
    return offset4<kNHWC>(n, c, y, x, channels, geo.height, geo.width);
  }

  // Source channel c at (y, x) of image n, zero outside the image (`from`: the source tensor).
  C10_HOST_DEVICE scalar_t source_at(const scalar_t* from, int channels, int64_t n, int c, int y, int x) const {
    return inside(y, x, geo.height, geo.width) ? load(from + at(n, c, y, x, channels)) : scalar_t(0);
  }

  // One element of shift(from channel c, picked orientation * sign) at (y, x).
  C10_HOST_DEVICE scalar_t shifted_at(const Pick<opmath_t>& pick, int group, const scalar_t* from, int channels,
                                      int64_t n, int c, int y, int x, int sign) const {
    if (!pick.dense) {
      return weighted<Shift>(pick.weight, source_at(from, channels, n, c, y - sign * pick.dy, x - sign * pick.dx));
    }
    opmath_t acc = 0;
    for (int k = 0; k < shift.num_k(); ++k) {
      const opmath_t w = shift.template weight<opmath_t>(group, k);
      if (w != opmath_t(0)) {
        const scalar_t v = source_at(from, channels, n, c, y - sign * shift.k_dy(k), x - sign * shift.k_dx(k));
        acc += mul_rn(w, static_cast<opmath_t>(v));
      }
    }
    return static_cast<scalar_t>(acc);
  }

  // The V values of shift(from channel c, picked orientation * sign) at the item's place.
  C10_HOST_DEVICE void shifted_vector(const Pick<opmath_t>& pick, int group, const scalar_t* from, int channels,
                                      int64_t n, int c, int y, int x, int sign, scalar_t (&values)[V]) const {
    if (pick.dense) {
#pragma unroll
      for (int u = 0; u < V; ++u) {
        values[u] = kNHWC ? shifted_at(pick, group, from, channels, n, c + u, y, x, sign)
                          : shifted_at(pick, group, from, channels, n, c, y, x + u, sign);
      }
      return;
    }
    const int dy = sign * pick.dy, dx = sign * pick.dx;
    if constexpr (kNHWC) {
      if (inside(y - dy, x - dx, geo.height, geo.width)) {
        load_row(from + at(n, c, y - dy, x - dx, channels), V, values);
      } else {
#pragma unroll
        for (int u = 0; u < V; ++u) values[u] = scalar_t(0);
      }
    } else {
      gather_row(from + at(n, c, 0, 0, channels), y, x, dy, dx, geo.height, geo.width, values);
    }
#pragma unroll
    for (int u = 0; u < V; ++u) values[u] = weighted<Shift>(pick.weight, values[u]);
  }

  // Whether ghosts j0..j0+V-1 are one vector: whole, and in one group (NHWC; NCHW: one ghost).
  C10_HOST_DEVICE bool one_group(int j0, int count) const {
    return !kNHWC || (count == V && group_div.div(j0) == group_div.div(j0 + V - 1));
  }

  C10_HOST_DEVICE void forward(const Pick<opmath_t>* picks, int64_t n, int s, int y, int x, int count) const {
    const int cs = geo.src_channels, co = geo.out_channels();
    if (geo.copy_channels) {
      scalar_t values[V];
      load_row(in + at(n, s, y, x, cs), count, values);
      store_row(out + at(n, s, y, x, co), count, values);
    }
    ghosts_of(
        picks, n, s, y, x, count, 1,
        [&](int c, int ghosts, const scalar_t(&values)[V]) { store_row(out + at(n, c, y, x, co), ghosts, values); },
        [&](int c, int, scalar_t value) { store(out + at(n, c, y, x, co), value); });
  }

  // Each ghost made from the item's sources (j = s + r * c_i; NHWC: channels j..j + V - 1) at the
  // item's place: forward (sign 1), x1's source shifted; backward (sign -1), the ghost's gradient
  // shifted back. `vector(c, count, values)` where whole and in one group, else `element(c + u, u,
  // value)` for each element u (c: the ghost's channel in the written tensor).
  template <typename OnVector, typename OnElement>
  C10_HOST_DEVICE void ghosts_of(const Pick<opmath_t>* picks, int64_t n, int s, int y, int x, int count, int sign,
                                 const OnVector& vector, const OnElement& element) const {
    const int cs = geo.src_channels, co = geo.out_channels();
    for (int j = s; j < geo.num_ghost; j += cs) {
      const int c = geo.copy_channels + j;
      const int from = sign > 0 ? s : c, channels = sign > 0 ? cs : co;
      const int ghosts = kNHWC ? std::min(count, geo.num_ghost - j) : count;
      if (one_group(j, ghosts)) {
        const int group = static_cast<int>(group_div.div(j));
        scalar_t values[V];
        shifted_vector(picks[group], group, in, channels, n, from, y, x, sign, values);
        vector(c, ghosts, values);
        continue;
      }
#pragma unroll
      for (int u = 0; u < V; ++u) {  // (NHWC: a partial vector, or one spanning groups)
        if (u < ghosts) {
          const int group = static_cast<int>(group_div.div(j + u));
          element(c + u, u, shifted_at(picks[group], group, in, channels, n, from + u, y, x, sign));
        }
      }
    }
  }

  C10_HOST_DEVICE void backward(const Pick<opmath_t>* picks, int64_t n, int s, int y, int x, int count) const {
    const int cs = geo.src_channels, co = geo.out_channels();
    opmath_t acc[V];
    {
      scalar_t own[V];
      if (geo.copy_channels) {
        load_row(in + at(n, s, y, x, co), count, own);
      }
#pragma unroll
      for (int u = 0; u < V; ++u) acc[u] = geo.copy_channels ? static_cast<opmath_t>(own[u]) : opmath_t(0);
    }
    ghosts_of(
        picks, n, s, y, x, count, -1,
        [&](int, int, const scalar_t(&values)[V]) {
#pragma unroll
          for (int u = 0; u < V; ++u) acc[u] += static_cast<opmath_t>(values[u]);
        },
        [&](int, int u, scalar_t value) { acc[u] += static_cast<opmath_t>(value); });
    scalar_t values[V];
#pragma unroll
    for (int u = 0; u < V; ++u) values[u] = static_cast<scalar_t>(acc[u]);
    store_row(out + at(n, s, y, x, cs), count, values);
  }
};

// Partial sums of the selection gradient, and (`grad_x1` set, at most one ghost per source) the
// input gradient, for orientations [k0, k0 + kChunk) of a learned shift: over the *virtual
// sources* v (x1 channel v % c_i, ghost v where v < num_ghost): the c_i sources, or the
// num_ghost ghosts where sources have several (then grad_x1 comes from a GhostJob backward).
//   partial(v, k) = sum over (n, y, x) of x1[n, v % c_i, y, x] * grad[n, copy + v, y + dy_k, x + dx_k]
// (pairs with both inside), summed per block in a fixed order into `partials`.
template <typename opmath_t>
struct SumState {
  opmath_t acc[kChunk];
};

// The block's sum of every thread's acc[] over the threads `lanes` apart (lane 0 ends with the
// sum of lanes 0, stride, 2 stride, ... < count * stride): a fixed-order tree in shared memory.
template <typename opmath_t, typename Block>
C10_HOST_DEVICE inline void block_sums(Block& block, opmath_t* sums, int stride, int count) {
  block.sync();
  block.threads([&](int t, SumState<opmath_t>& state) {
#pragma unroll
    for (int k = 0; k < kChunk; ++k) sums[k * kThreads + t] = state.acc[k];
  });
  block.sync();
  int span = 1;
  while (span < count) span *= 2;
  for (span /= 2; span >= 1; span /= 2) {
    block.threads([&](int t, SumState<opmath_t>&) {
      const int lane = t / stride;
      if (lane < span && lane + span < count) {
#pragma unroll
        for (int k = 0; k < kChunk; ++k) sums[k * kThreads + t] += sums[k * kThreads + t + span * stride];
      }
    });
    block.sync();
  }
}

// What the training-backward jobs of both layouts read and write (in their layout).
template <typename scalar_t>
struct TrainBackwardArgs {
  const scalar_t* grad;   // (N, c_i + num_ghost, H, W)
  const scalar_t* x1;     // (N, c_i, H, W)
  scalar_t* grad_x1;      // (N, c_i, H, W), or nullptr: another kernel writes it
  at::opmath_type<scalar_t>* partials;
  LearnedShift<at::opmath_type<scalar_t>> shift;
  Geometry geo;
  int sources, k0;  // the virtual sources; the first orientation of this pass
};

// NCHW: a block owns (n, v, band of rows); threads walk the band's vectors. kWindows (d = 1): the
// ghost's gradient rows y - 1, y, y + 1 around each vector are read once into registers.
template <typename scalar_t, bool kWindows>
struct TrainBackwardNCHW {
  using opmath_t = at::opmath_type<scalar_t>;
  using State = SumState<opmath_t>;
  static constexpr int V = kVec<scalar_t>;

  TrainBackwardArgs<scalar_t> args;  // (partials: (N, num_ghost, bands, num_k))
  int bands, band_rows;
  int64_t n0;
  unsigned blocks_items;  // (n, v, band) of this launch
  Divider band_div;       // block item -> (plane, band)
  Divider source_div;     // plane -> (image, v)
  Divider row_div;        // vector in the band -> (row, column vector)
  size_t shared_bytes;

  template <typename Block>
  C10_HOST_DEVICE void operator()(Block& block) const {
    auto* pick = reinterpret_cast<Pick<opmath_t>*>(block.shared);
    auto* sums = reinterpret_cast<opmath_t*>(block.shared + 16 * ((sizeof(Pick<opmath_t>) + 15) / 16));
    const int vectors_per_row = (args.geo.width + V - 1) / V;
    for (int64_t item = block.index(); item < blocks_items; item += block.count()) {
      const auto bq = band_div.divmod(static_cast<unsigned>(item));
      const auto sq = source_div.divmod(bq.div);
      const int64_t n = n0 + sq.div;
      const int v = static_cast<int>(sq.mod), band = static_cast<int>(bq.mod);
      const int s = v % args.geo.src_channels, ghost = v < args.geo.num_ghost ? v : -1;
      const int y0 = band * band_rows, rows = std::min(band_rows, args.geo.height - y0);
      block.sync();  // (the previous item is done with the pick and the sums)
      block.threads([&](int t, State& state) {
        if (t == 0 && ghost >= 0) *pick = args.shift.template pick<opmath_t>(ghost / args.geo.per_group);
#pragma unroll
        for (int k = 0; k < kChunk; ++k) state.acc[k] = 0;
      });
      block.sync();
      block.threads([&](int t, State& state) {
        for (int e = t; e < rows * vectors_per_row; e += kThreads) {
          const auto rq = row_div.divmod(static_cast<unsigned>(e));
          run(*pick, state, n, s, ghost, y0 + static_cast<int>(rq.div), static_cast<int>(rq.mod) * V);
        }
      });
      if (ghost < 0) continue;
      block_sums<opmath_t>(block, sums, 1, kThreads);
      block.threads([&](int t, State&) {
        const int num_k = args.shift.num_k();
        if (t < kChunk && args.k0 + t < num_k) {
          const int64_t row = (n * args.geo.num_ghost + ghost) * bands + band;
          store(args.partials + row * num_k + args.k0 + t, sums[t * kThreads]);
        }
      });
    }
  }

  C10_HOST_DEVICE int64_t at(int64_t n, int c, int channels) const {
    return offset4<false>(n, c, 0, 0, channels, args.geo.height, args.geo.width);
  }

  C10_HOST_DEVICE void run(const Pick<opmath_t>& pick, State& state, int64_t n, int s, int ghost, int y,
                           int x) const {
    const int height = args.geo.height, width = args.geo.width, co = args.geo.out_channels();
    const int count = width - x < V ? width - x : V;
    const int64_t row = static_cast<int64_t>(y) * width + x;
    const scalar_t* ghost_plane = args.grad + at(n, args.geo.copy_channels + std::max(ghost, 0), co);
    if (args.grad_x1) {  // (at most one ghost per source)
      scalar_t own[V];
      load_row(args.grad + at(n, s, co) + row, count, own);
      opmath_t acc[V];
#pragma unroll
      for (int u = 0; u < V; ++u) acc[u] = static_cast<opmath_t>(own[u]);
      if (ghost >= 0) add_ghost_gradient(pick, ghost / args.geo.per_group, ghost_plane, y, x, acc);
#pragma unroll
      for (int u = 0; u < V; ++u) own[u] = static_cast<scalar_t>(acc[u]);
      store_row(args.grad_x1 + at(n, s, args.geo.src_channels) + row, count, own);
    }
    if (ghost < 0) return;
    scalar_t xs[V];
    load_row(args.x1 + at(n, s, args.geo.src_channels) + row, count, xs);
    opmath_t xv[V];
#pragma unroll
    for (int u = 0; u < V; ++u) xv[u] = static_cast<opmath_t>(xs[u]);
    if constexpr (kWindows) {  // d = 1, one pass: rows y - 1..y + 1, columns x - 1..x + V
      const bool interior = count == V && x >= 1 && x + V < width;
#pragma unroll
      for (int r = 0; r < 3; ++r) {
        const int yy = y + r - 1;
        if (yy < 0 || yy >= height) continue;
        const scalar_t* from = ghost_plane + static_cast<int64_t>(yy) * width + x;
        scalar_t mid[V];
        load_row(from, count, mid);
        opmath_t win[V + 2];
        win[0] = x >= 1 ? static_cast<opmath_t>(load(from - 1)) : opmath_t(0);
        win[V + 1] = x + V < width ? static_cast<opmath_t>(load(from + V)) : opmath_t(0);
#pragma unroll
        for (int u = 0; u < V; ++u) win[u + 1] = static_cast<opmath_t>(mid[u]);
        if (interior) {  // (every pair inside: no tests)
#pragma unroll
          for (int c = 0; c < 3; ++c) {  // dx = c - 1
#pragma unroll
            for (int u = 0; u < V; ++u) state.acc[r * 3 + c] += xv[u] * win[u + c];
          }
          continue;
        }
#pragma unroll
        for (int c = 0; c < 3; ++c) {  // pairs outside the image are skipped (not 0 * x: x may be inf)
#pragma unroll
          for (int u = 0; u < V; ++u) {
            if (u < count && 0 <= x + u + c - 1 && x + u + c - 1 < width) state.acc[r * 3 + c] += xv[u] * win[u + c];
          }
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < kChunk; ++i) {
        const int k = args.k0 + i;
        if (k >= args.shift.num_k()) break;
        const int dy = args.shift.k_dy(k), dx = args.shift.k_dx(k);
        if (y + dy < 0 || y + dy >= height) continue;
        scalar_t g[V];
        gather_row(ghost_plane, y, x, -dy, -dx, height, width, g);
#pragma unroll
        for (int u = 0; u < V; ++u) {
          if (u < count && 0 <= x + u + dx && x + u + dx < width) state.acc[i] += xv[u] * static_cast<opmath_t>(g[u]);
        }
      }
    }
  }

  // acc += the ghost's gradient at the shifted place (as GhostJob's backward).
  C10_HOST_DEVICE void add_ghost_gradient(const Pick<opmath_t>& pick, int group, const scalar_t* ghost_plane, int y,
                                          int x, opmath_t (&acc)[V]) const {
    scalar_t g[V];
    if (!pick.dense) {
      gather_row(ghost_plane, y, x, -pick.dy, -pick.dx, args.geo.height, args.geo.width, g);
#pragma unroll
      for (int u = 0; u < V; ++u) acc[u] += static_cast<opmath_t>(weighted<LearnedShift<opmath_t>>(pick.weight, g[u]));
      return;
    }
    opmath_t sum[V] = {};
    for (int k = 0; k < args.shift.num_k(); ++k) {
      const opmath_t w = args.shift.template weight<opmath_t>(group, k);
      if (w == opmath_t(0)) continue;
      gather_row(ghost_plane, y, x, -args.shift.k_dy(k), -args.shift.k_dx(k), args.geo.height, args.geo.width, g);
#pragma unroll
      for (int u = 0; u < V; ++u) sum[u] += mul_rn(w, static_cast<opmath_t>(g[u]));
    }
#pragma unroll
    for (int u = 0; u < V; ++u) acc[u] += static_cast<opmath_t>(static_cast<scalar_t>(sum[u]));
  }
};

// NHWC: a block owns (chunk of pixels, chunk of channel vectors); thread t keeps one vector of
// kVW channels (kVW = V: every vector whole, aligned and in one group; 1: any channel counts)
// and walks pixels `lanes` apart; neighbouring pixels' gradients are whole aligned vectors.
template <typename scalar_t, int kVW>
struct TrainBackwardNHWC {
  using opmath_t = at::opmath_type<scalar_t>;
  using State = SumState<opmath_t>;

  TrainBackwardArgs<scalar_t> args;  // (partials: (pixel chunks, num_ghost / kVW, num_k))
  int vectors, vectors_per_block, lanes, chunk_pixels;  // (vectors_per_block * lanes <= kThreads)
  int64_t n0, chunk0;     // first image, first pixel chunk of this launch
  int64_t pixels;         // of this launch
  unsigned blocks_items;  // (pixel chunk, vector chunk) of this launch
  Divider vector_chunks_div, image_div, row_div;
  size_t shared_bytes;

  template <typename Block>
  C10_HOST_DEVICE void operator()(Block& block) const {
    auto* sums = reinterpret_cast<opmath_t*>(block.shared);
    for (int64_t item = block.index(); item < blocks_items; item += block.count()) {
      const auto cq = vector_chunks_div.divmod(static_cast<unsigned>(item));
      const int64_t chunk = cq.div;
      const int64_t begin = chunk * chunk_pixels, end = std::min<int64_t>(pixels, begin + chunk_pixels);
      block.threads([&](int t, State& state) {
#pragma unroll
        for (int k = 0; k < kChunk; ++k) state.acc[k] = 0;
        const int lane = t / vectors_per_block;
        const int vector = static_cast<int>(cq.mod) * vectors_per_block + t % vectors_per_block;
        if (lane >= lanes || vector >= vectors) return;
        const int c = vector * kVW, ghost = c < args.geo.num_ghost ? c : -1;
        const Pick<opmath_t> pick = ghost >= 0 && args.grad_x1
                                        ? args.shift.template pick<opmath_t>(ghost / args.geo.per_group)
                                        : Pick<opmath_t>{0, 0, opmath_t(0), false};
        for (int64_t p = begin + lane; p < end; p += lanes) run(pick, state, static_cast<unsigned>(p), c, ghost);
      });
      block_sums<opmath_t>(block, sums, vectors_per_block, lanes);
      block.threads([&](int t, State&) {
        const int vector = static_cast<int>(cq.mod) * vectors_per_block + t;
        const int num_k = args.shift.num_k(), ghost_vectors = args.geo.num_ghost / kVW;
        if (t >= vectors_per_block || vector >= ghost_vectors) return;
        for (int i = 0; i < kChunk && args.k0 + i < num_k; ++i) {
          const int64_t row = (chunk0 + chunk) * ghost_vectors + vector;
          store(args.partials + row * num_k + args.k0 + i, sums[i * kThreads + t]);
        }
      });
    }
  }

  // (kVW values from p: one aligned vector, or one element)
  C10_HOST_DEVICE void load_values(const scalar_t* p, opmath_t (&out)[kVW]) const {
    if constexpr (kVW == 1) {
      out[0] = static_cast<opmath_t>(load(p));
    } else {
      scalar_t v[kVW];
      load_vector(p, v);
#pragma unroll
      for (int u = 0; u < kVW; ++u) out[u] = static_cast<opmath_t>(v[u]);
    }
  }

  C10_HOST_DEVICE void run(const Pick<opmath_t>& pick, State& state, unsigned pixel, int c, int ghost) const {
    const Geometry& geo = args.geo;
    const int height = geo.height, width = geo.width, cs = geo.src_channels, co = geo.out_channels();
    const auto iq = image_div.divmod(pixel);
    const auto rq = row_div.divmod(iq.mod);
    const int64_t n = n0 + iq.div;
    const int y = static_cast<int>(rq.div), x = static_cast<int>(rq.mod);
    const int64_t here = (n * height + y) * width + x;
    const int s = c % cs;
    auto ghost_at = [&](int dy, int dx) {
      return args.grad + (here + dy * width + dx) * co + geo.copy_channels + ghost;
    };
    if (args.grad_x1) {
      opmath_t acc[kVW];
      load_values(args.grad + here * co + s, acc);
      if (ghost >= 0) {
        if (!pick.dense) {
          if (inside(y + pick.dy, x + pick.dx, height, width)) {
            opmath_t g[kVW];
            load_values(ghost_at(pick.dy, pick.dx), g);
#pragma unroll
            for (int u = 0; u < kVW; ++u) {
              const scalar_t value = weighted<LearnedShift<opmath_t>>(pick.weight, static_cast<scalar_t>(g[u]));
              acc[u] += static_cast<opmath_t>(value);
            }
          }
        } else {
          opmath_t sum[kVW] = {};
          for (int k = 0; k < args.shift.num_k(); ++k) {
            const opmath_t w = args.shift.template weight<opmath_t>(ghost / args.geo.per_group, k);
            const int dy = args.shift.k_dy(k), dx = args.shift.k_dx(k);
            if (w == opmath_t(0) || !inside(y + dy, x + dx, height, width)) continue;
            opmath_t g[kVW];
            load_values(ghost_at(dy, dx), g);
#pragma unroll
            for (int u = 0; u < kVW; ++u) sum[u] += mul_rn(w, g[u]);
          }
#pragma unroll
          for (int u = 0; u < kVW; ++u) acc[u] += static_cast<opmath_t>(static_cast<scalar_t>(sum[u]));
        }
      }
      scalar_t values[kVW];
#pragma unroll
      for (int u = 0; u < kVW; ++u) values[u] = static_cast<scalar_t>(acc[u]);
      if constexpr (kVW == 1) {
        store(args.grad_x1 + here * cs + s, values[0]);
      } else {
        store_vector(args.grad_x1 + here * cs + s, values);
      }
    }
    if (ghost < 0) return;
    opmath_t xv[kVW];
    load_values(args.x1 + here * cs + s, xv);
#pragma unroll
    for (int i = 0; i < kChunk; ++i) {
      const int k = args.k0 + i;
      if (k >= args.shift.num_k()) break;
      const int dy = args.shift.k_dy(k), dx = args.shift.k_dx(k);
      if (!inside(y + dy, x + dx, height, width)) continue;
      opmath_t g[kVW];
      load_values(ghost_at(dy, dx), g);
#pragma unroll
      for (int u = 0; u < kVW; ++u) state.acc[i] += xv[u] * g[u];
    }
  }
};

// Runs the kernels on the current CUDA stream.
struct CudaExecutor {
  static bool on_device(const at::Tensor& t) { return t.is_cuda(); }
  static constexpr int64_t max_items() { return std::numeric_limits<int32_t>::max(); }
  static constexpr int64_t block_work() { return 2048; }  // items a training-backward block aims for

  // Blocks of `job` resident on the whole device at once: one full wave (asked once per job type
  // and device: the shared memory of later calls may differ a little, which only sizes the grid).
  template <typename Job>
  static int64_t wave(const Job& job, const at::Tensor& t) {
    constexpr int kDevices = 64;
    static int64_t known[kDevices] = {};
    const int device = t.get_device();
    if (device < kDevices && known[device]) return known[device];
    int sms = 0, per_sm = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, block_kernel<Job>, kThreads,
                                                                 job.shared_bytes));
    const int64_t blocks = std::max<int64_t>(1, static_cast<int64_t>(per_sm) * sms);
    if (device < kDevices) known[device] = blocks;
    return blocks;
  }

  template <typename Job>
  static void launch(const Job& job, int64_t blocks) {
    block_kernel<Job><<<static_cast<unsigned>(blocks), kThreads, job.shared_bytes,
                        c10::cuda::getCurrentCUDAStream()>>>(job);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

// --- host side ------------------------------------------------------------------------------
// Every check reads sizes, dtypes and devices only, and runs before anything is allocated or
// launched (library.py checks the same first, so a user's mistake never reaches these).

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

template <typename Exec>
void check_input(const at::Tensor& t, const char* op, const char* what) {
  TORCH_CHECK_VALUE(Exec::on_device(t), "ghostsr::", op, ": ", what, " is on ", t.device(),
                    ", not on this kernel's device");
  TORCH_CHECK_VALUE(at::isFloatingType(t.scalar_type()), "ghostsr::", op, ": ", what,
                    " must be a floating-point tensor, got ", t.scalar_type());
}

void check_same_device(const at::Tensor& t, const at::Tensor& like, const char* op, const char* what) {
  TORCH_CHECK_VALUE(t.device() == like.device(), "ghostsr::", op, ": ", what, " must be on ", like.device(),
                    ", got ", t.device());
}

// Height, width and the elements of one image within what the kernels index.
void check_extent(int64_t channels, int64_t height, int64_t width, const char* op) {
  TORCH_CHECK_VALUE(height <= kMaxSide && width <= kMaxSide && channels * height * width <= kMaxImage, "ghostsr::", op,
                    ": an image of ", channels, " x ", height, " x ", width,
                    " is more than these kernels index (2^31 - 1 elements, sides up to 2^29); split it into tiles");
}

Geometry ghost_geometry(const at::Tensor& t, int64_t src_channels, int64_t num_ghost, int64_t groups,
                        const char* op) {
  TORCH_CHECK_VALUE(num_ghost >= 0, "ghostsr::", op, ": num_ghost must be >= 0, got ", num_ghost);
  TORCH_CHECK_VALUE(groups >= 1 && num_ghost % groups == 0, "ghostsr::", op, ": ", num_ghost,
                    " ghost channels cannot be split into ", groups, " orientation groups");
  TORCH_CHECK_VALUE(groups <= kMaxGroups, "ghostsr::", op, ": at most ", kMaxGroups, " orientation groups, got ",
                    groups);
  TORCH_CHECK_VALUE(num_ghost == 0 || src_channels >= 1, "ghostsr::", op,
                    ": ghosts need at least one intrinsic channel");
  check_extent(src_channels + num_ghost, t.size(2), t.size(3), op);
  Geometry geo;
  geo.batch = t.size(0);
  geo.height = static_cast<int>(t.size(2));
  geo.width = static_cast<int>(t.size(3));
  geo.src_channels = static_cast<int>(src_channels);
  geo.copy_channels = geo.src_channels;
  geo.num_ghost = static_cast<int>(num_ghost);
  geo.per_group = std::max<int>(1, static_cast<int>(num_ghost / groups));
  geo.groups = static_cast<int>(groups);
  return geo;
}

// The orientation groups of a (G, 2) integer offsets tensor.
int64_t check_offsets(const at::Tensor& offsets, const at::Tensor& x, const char* op) {
  check_same_device(offsets, x, op, "offsets");
  TORCH_CHECK_VALUE(offsets.dim() == 2 && offsets.size(1) == 2 && offsets.size(0) >= 1, "ghostsr::", op,
                    ": offsets must be (G, 2) integer (dy, dx) pairs, got shape ", offsets.sizes());
  TORCH_CHECK_VALUE(at::isIntegralType(offsets.scalar_type(), /*includeBool=*/false), "ghostsr::", op,
                    ": offsets must be integer, got ", offsets.scalar_type());
  return offsets.size(0);
}

int64_t side_squared(int64_t max_shift, const char* op) {
  TORCH_CHECK_VALUE(0 <= max_shift && max_shift <= 1000, "ghostsr::", op, ": max_shift must be in [0, 1000], got ",
                    max_shift);
  return (2 * max_shift + 1) * (2 * max_shift + 1);
}

at::ScalarType opmath_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// The orientation groups of a (G, (2 max_shift + 1)^2) floating-point selection.
int64_t check_selection(const at::Tensor& selection, const at::Tensor& x, int64_t max_shift, const char* op) {
  const int64_t num_k = side_squared(max_shift, op);
  check_same_device(selection, x, op, "selection");
  TORCH_CHECK_VALUE(selection.dim() == 2 && selection.size(0) >= 1 && selection.size(1) == num_k, "ghostsr::", op,
                    ": selection must be (G, ", num_k, ") for max_shift=", max_shift, ", got shape ",
                    selection.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(selection.scalar_type()), "ghostsr::", op,
                    ": selection must be floating point, got ", selection.scalar_type());
  return selection.size(0);
}

// The selection in x's opmath dtype (a float32 selection with float16/bfloat16 x1 is used as it is).
at::Tensor opmath_selection(const at::Tensor& selection, const at::Tensor& x) {
  return selection.to(opmath_dtype(x.scalar_type())).contiguous();
}

// Images [n, n + count) per launch: each launch's items (and so every index the kernels divide)
// stay below Exec::max_items().
template <typename Exec, typename F>
void for_image_ranges(int64_t images, int64_t items_per_image, const F& f) {
  const int64_t per_launch = std::max<int64_t>(1, Exec::max_items() / std::max<int64_t>(1, items_per_image));
  for (int64_t n = 0; n < images; n += per_launch) f(n, std::min(per_launch, images - n));
}

// A grid for `items` work items: at most `waves` full waves of `job`, the blocks striding over the rest.
template <typename Exec, typename Job>
int64_t grid_for(const Job& job, int64_t items, const at::Tensor& t, int64_t waves) {
  return std::clamp<int64_t>(items, 1, waves * Exec::wave(job, t));
}

template <typename Exec, bool kBackward, typename scalar_t, bool kNHWC, typename Shift>
void run_ghost_job(const scalar_t* in, scalar_t* out, const Geometry& geo, const Shift& shift, const at::Tensor& like) {
  using Job = GhostJob<scalar_t, kNHWC, kBackward, Shift>;
  constexpr int V = kVec<scalar_t>;
  const int height = geo.height, width = geo.width, cs = geo.src_channels;
  const int64_t minor = kNHWC ? (cs + V - 1) / V : (width + V - 1) / V;  // vectors per row (NCHW) or pixel (NHWC)
  const int64_t major = kNHWC ? width * minor : height * minor;
  const int64_t per_image = (kNHWC ? height : cs) * major;
  if (per_image == 0 || geo.batch == 0) return;
  for_image_ranges<Exec>(geo.batch, per_image, [&](int64_t n0, int64_t images) {
    Job job{in,
            out,
            geo,
            shift,
            n0,
            static_cast<unsigned>(images * per_image),
            Divider(static_cast<unsigned>(per_image)),
            Divider(static_cast<unsigned>(major)),
            Divider(static_cast<unsigned>(minor)),
            Divider(static_cast<unsigned>(geo.per_group)),
            sizeof(Pick<at::opmath_type<scalar_t>>) * geo.groups};
    const int64_t blocks = (images * per_image + kThreads - 1) / kThreads;
    Exec::launch(job, grid_for<Exec>(job, blocks, like, 4));
  });
}

// Dispatches run_ghost_job over dtype and layout; `make_shift(scalar_t zero)` gives the shift,
// which may depend on the element type.
template <typename Exec, bool kBackward, typename MakeShift>
void run_ghost(const at::Tensor& in, at::Tensor& out, const Geometry& geo, bool channels_last,
               const MakeShift& make_shift) {
  if (out.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "ghostsr_ghost", [&] {
    const auto shift = make_shift(scalar_t(0));
    const scalar_t* from = in.const_data_ptr<scalar_t>();
    scalar_t* to = out.mutable_data_ptr<scalar_t>();
    if (channels_last) {
      run_ghost_job<Exec, kBackward, scalar_t, true>(from, to, geo, shift, in);
    } else {
      run_ghost_job<Exec, kBackward, scalar_t, false>(from, to, geo, shift, in);
    }
  });
}

FixedShift fixed_shift(const at::Tensor* offsets, int64_t dy, int64_t dx, const Geometry& geo) {
  return FixedShift{offsets ? offsets->const_data_ptr<int64_t>() : nullptr, dy, dx,
                    std::max(std::max(geo.height, geo.width), 1)};
}

// The partial sums' work split: bands of rows (NCHW) or chunks of pixels (NHWC) of about
// Exec::block_work() items, fewer where a wave of blocks would otherwise go idle.
template <typename Exec>
int64_t work_per_block(int64_t items, int64_t wave) {
  return std::max<int64_t>(kThreads, std::min<int64_t>(Exec::block_work(), items / std::max<int64_t>(1, wave)));
}

template <typename Exec, typename scalar_t>
void train_backward_nchw(const TrainBackwardArgs<scalar_t>& args, int bands, int band_rows, const at::Tensor& like) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int V = kVec<scalar_t>;
  const Geometry& geo = args.geo;
  const int vectors_per_row = (geo.width + V - 1) / V;
  const size_t shared = 16 * ((sizeof(Pick<opmath_t>) + 15) / 16) + sizeof(opmath_t) * kChunk * kThreads;
  auto launch = [&](auto job) {
    for_image_ranges<Exec>(geo.batch, static_cast<int64_t>(args.sources) * bands, [&](int64_t n0, int64_t images) {
      job.n0 = n0;
      job.blocks_items = static_cast<unsigned>(images * args.sources * bands);
      Exec::launch(job, grid_for<Exec>(job, job.blocks_items, like, 2));
    });
  };
  auto make = [&](auto windows) {
    launch(TrainBackwardNCHW<scalar_t, decltype(windows)::value>{
        args, bands, band_rows, 0, 0, Divider(static_cast<unsigned>(bands)),
        Divider(static_cast<unsigned>(args.sources)), Divider(static_cast<unsigned>(vectors_per_row)), shared});
  };
  if (args.shift.max_shift == 1) {
    make(std::true_type{});
  } else {
    make(std::false_type{});
  }
}

template <typename Exec, typename scalar_t, int kVW>
void train_backward_nhwc(const TrainBackwardArgs<scalar_t>& args, int vectors_per_block, int lanes, int chunk_pixels,
                         const at::Tensor& like) {
  const Geometry& geo = args.geo;
  const int vectors = args.sources / kVW, vector_chunks = (vectors + vectors_per_block - 1) / vectors_per_block;
  const int64_t per_image = static_cast<int64_t>(geo.height) * geo.width;
  const int64_t chunks_per_image = (per_image + chunk_pixels - 1) / chunk_pixels;
  // (a launch covers whole images, its pixel chunks may span two of them)
  for_image_ranges<Exec>(geo.batch, per_image * vectors, [&](int64_t n0, int64_t images) {
    const int64_t pixels = images * per_image, chunks = (pixels + chunk_pixels - 1) / chunk_pixels;
    TrainBackwardNHWC<scalar_t, kVW> job{args, vectors, vectors_per_block, lanes, chunk_pixels, n0,
                                         n0 * chunks_per_image, pixels, static_cast<unsigned>(chunks * vector_chunks),
                                         Divider(static_cast<unsigned>(vector_chunks)),
                                         Divider(static_cast<unsigned>(per_image)),
                                         Divider(static_cast<unsigned>(geo.width)),
                                         sizeof(at::opmath_type<scalar_t>) * kChunk * kThreads};
    Exec::launch(job, grid_for<Exec>(job, job.blocks_items, like, 2));
  });
}

// --- the ops ---------------------------------------------------------------------------------

template <typename Exec>
at::Tensor shift(const at::Tensor& x, at::IntArrayRef offset) {
  check_input<Exec>(x, "shift", "x");
  TORCH_CHECK_VALUE(x.dim() >= 2, "ghostsr::shift: x must be (..., H, W), got ", x.dim(), " dimensions");
  TORCH_CHECK_VALUE(offset.size() == 2, "ghostsr::shift: offset must be (dy, dx), got ", offset.size(), " values");
  const bool channels_last = is_channels_last(x);
  check_extent(channels_last ? x.size(1) : 1, x.size(-2), x.size(-1), "shift");
  const c10::OptionalDeviceGuard guard(x.device());
  const at::Tensor src = dense(x, channels_last);
  at::Tensor out = empty_as(src, src.sizes(), channels_last);
  if (out.numel() == 0) return out;
  // NHWC: (N, C, H, W) as it is; NCHW: every leading index is one single-channel image.
  Geometry geo;
  geo.height = static_cast<int>(x.size(-2));
  geo.width = static_cast<int>(x.size(-1));
  geo.batch = channels_last ? x.size(0) : x.numel() / (static_cast<int64_t>(geo.height) * geo.width);
  geo.src_channels = channels_last ? static_cast<int>(x.size(1)) : 1;
  geo.copy_channels = 0;
  geo.num_ghost = geo.per_group = geo.src_channels;
  geo.groups = 1;
  const FixedShift fixed = fixed_shift(nullptr, offset[0], offset[1], geo);
  run_ghost<Exec, false>(src, out, geo, channels_last, [&](auto) { return fixed; });
  return out;
}

template <typename Exec>
at::Tensor ghost_features(const at::Tensor& x1, int64_t num_ghost, const at::Tensor& offsets) {
  const char* op = "ghost_features";
  check_input<Exec>(x1, op, "x1");
  TORCH_CHECK_VALUE(x1.dim() == 4, "ghostsr::ghost_features: x1 must be (N, C, H, W), got shape ", x1.sizes());
  const Geometry geo = ghost_geometry(x1, x1.size(1), num_ghost, check_offsets(offsets, x1, op), op);
  const c10::OptionalDeviceGuard guard(x1.device());
  const at::Tensor table = offsets.to(at::kLong).contiguous();
  const bool channels_last = is_channels_last(x1);
  const at::Tensor src = dense(x1, channels_last);
  at::Tensor out = empty_as(src, {x1.size(0), x1.size(1) + num_ghost, x1.size(2), x1.size(3)}, channels_last);
  const FixedShift fixed = fixed_shift(&table, 0, 0, geo);
  run_ghost<Exec, false>(src, out, geo, channels_last, [&](auto) { return fixed; });
  return out;
}

void check_ghost_grad(const at::Tensor& grad_out, int64_t num_ghost, const char* op) {
  TORCH_CHECK_VALUE(grad_out.dim() == 4 && num_ghost >= 0 && grad_out.size(1) >= num_ghost, "ghostsr::", op,
                    ": grad_out must be (N, C + num_ghost, H, W), got shape ", grad_out.sizes(), " with num_ghost = ",
                    num_ghost);
}

template <typename Exec>
at::Tensor ghost_features_backward(const at::Tensor& grad_out, int64_t num_ghost, const at::Tensor& offsets) {
  const char* op = "ghost_features_backward";
  check_input<Exec>(grad_out, op, "grad_out");
  check_ghost_grad(grad_out, num_ghost, op);
  const int64_t c_intrinsic = grad_out.size(1) - num_ghost;
  const Geometry geo = ghost_geometry(grad_out, c_intrinsic, num_ghost, check_offsets(offsets, grad_out, op), op);
  const c10::OptionalDeviceGuard guard(grad_out.device());
  const at::Tensor table = offsets.to(at::kLong).contiguous();
  const bool channels_last = is_channels_last(grad_out);
  const at::Tensor grad = dense(grad_out, channels_last);
  at::Tensor grad_x1 = empty_as(grad, {grad.size(0), c_intrinsic, grad.size(2), grad.size(3)}, channels_last);
  const FixedShift fixed = fixed_shift(&table, 0, 0, geo);
  run_ghost<Exec, true>(grad, grad_x1, geo, channels_last, [&](auto) { return fixed; });
  return grad_x1;
}

template <typename Exec>
at::Tensor ghost_features_train(const at::Tensor& x1, int64_t num_ghost, const at::Tensor& selection,
                                int64_t max_shift) {
  const char* op = "ghost_features_train";
  check_input<Exec>(x1, op, "x1");
  TORCH_CHECK_VALUE(x1.dim() == 4, "ghostsr::ghost_features_train: x1 must be (N, C, H, W), got shape ", x1.sizes());
  const Geometry geo = ghost_geometry(x1, x1.size(1), num_ghost, check_selection(selection, x1, max_shift, op), op);
  const c10::OptionalDeviceGuard guard(x1.device());
  const at::Tensor weights = opmath_selection(selection, x1);
  const bool channels_last = is_channels_last(x1);
  const at::Tensor src = dense(x1, channels_last);
  at::Tensor out = empty_as(src, {x1.size(0), x1.size(1) + num_ghost, x1.size(2), x1.size(3)}, channels_last);
  const int d = static_cast<int>(max_shift);
  run_ghost<Exec, false>(src, out, geo, channels_last, [&](auto zero) {
    using opmath_t = at::opmath_type<decltype(zero)>;
    return LearnedShift<opmath_t>{weights.const_data_ptr<opmath_t>(), d};
  });
  return out;
}

template <typename Exec>
std::tuple<at::Tensor, at::Tensor> ghost_features_train_backward(const at::Tensor& grad_out, const at::Tensor& x1,
                                                                 int64_t num_ghost, const at::Tensor& selection,
                                                                 int64_t max_shift) {
  const char* op = "ghost_features_train_backward";
  check_input<Exec>(grad_out, op, "grad_out");
  check_input<Exec>(x1, op, "x1");
  check_same_device(grad_out, x1, op, "grad_out");
  check_ghost_grad(grad_out, num_ghost, op);
  TORCH_CHECK_VALUE(x1.dim() == 4 && grad_out.size(0) == x1.size(0) && grad_out.size(1) == x1.size(1) + num_ghost &&
                        grad_out.size(2) == x1.size(2) && grad_out.size(3) == x1.size(3),
                    "ghostsr::ghost_features_train_backward: grad_out must be (N, C + num_ghost, H, W) for x1 "
                    "(N, C, H, W), got ", grad_out.sizes(), " and ", x1.sizes(), " with num_ghost = ", num_ghost);
  TORCH_CHECK_VALUE(grad_out.scalar_type() == x1.scalar_type(), "ghostsr::ghost_features_train_backward: grad_out is ",
                    grad_out.scalar_type(), " but x1 is ", x1.scalar_type());
  const int64_t num_k = side_squared(max_shift, op);
  const int64_t groups = check_selection(selection, x1, max_shift, op);
  const Geometry geo = ghost_geometry(x1, x1.size(1), num_ghost, groups, op);
  const c10::OptionalDeviceGuard guard(x1.device());
  const at::Tensor weights = opmath_selection(selection, x1);
  // grad_x1 is laid out as grad_out (as in the reference); x1 is read in that layout too
  const bool channels_last = is_channels_last(grad_out);
  const at::Tensor grad = dense(grad_out, channels_last), src = dense(x1, channels_last);
  at::Tensor grad_x1 = empty_as(grad, src.sizes(), channels_last);
  const at::ScalarType acc_type = opmath_dtype(x1.scalar_type());
  // One ghost per source at most: grad_x1 in the same pass; else a GhostJob backward writes it
  // and the passes sum over the ghosts (virtual sources) only.
  const bool fused = num_ghost <= geo.src_channels;
  const int sources = fused ? geo.src_channels : geo.num_ghost;
  const int d = static_cast<int>(max_shift);
  at::Tensor grad_selection;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "ghostsr_train_backward", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    constexpr int V = kVec<scalar_t>;
    const LearnedShift<opmath_t> learned{weights.const_data_ptr<opmath_t>(), d};
    if (!fused) run_ghost<Exec, true>(grad, grad_x1, geo, channels_last, [&](auto) { return learned; });
    if (geo.batch == 0 || geo.height == 0 || geo.width == 0 || sources == 0) {
      grad_selection = at::zeros({groups, num_k}, x1.options().dtype(acc_type));
      return;
    }
    // pass k0: orientations [k0, k0 + kChunk); grad_x1 in the first pass where fused
    auto pass_args = [&](at::Tensor& partials, int k0) {
      return TrainBackwardArgs<scalar_t>{grad.const_data_ptr<scalar_t>(), src.const_data_ptr<scalar_t>(),
                                         fused && k0 == 0 ? grad_x1.mutable_data_ptr<scalar_t>() : nullptr,
                                         partials.mutable_data_ptr<opmath_t>(), learned, geo, sources, k0};
    };
    const bool vectors = geo.src_channels % V == 0 && geo.num_ghost % V == 0 && geo.per_group % V == 0 &&
                         aligned(grad.const_data_ptr()) && aligned(src.const_data_ptr()) &&
                         aligned(grad_x1.const_data_ptr());
    const int vw = channels_last && vectors ? V : 1;
    const int64_t per_image_items = channels_last
                                        ? static_cast<int64_t>(geo.height) * geo.width * (sources / vw)
                                        : static_cast<int64_t>(sources) * geo.height * ((geo.width + V - 1) / V);
    TrainBackwardNHWC<float, 1> probe{};
    probe.shared_bytes = sizeof(opmath_t) * kChunk * kThreads;
    const int64_t wave = Exec::wave(probe, x1);
    const int64_t work = work_per_block<Exec>(geo.batch * per_image_items, wave);
    at::Tensor partials;
    if (channels_last) {
      const int vectors_total = sources / vw;
      const int vectors_per_block = std::min(vectors_total, kThreads), lanes = kThreads / vectors_per_block;
      const int chunk_pixels = static_cast<int>(std::max<int64_t>(lanes, work / vectors_per_block / lanes * lanes));
      // (a launch of images [n0, n1) numbers its chunks from n0 * chunks_per_image; unused ones stay 0)
      const int64_t per_image = static_cast<int64_t>(geo.height) * geo.width;
      const int64_t chunks = geo.batch * ((per_image + chunk_pixels - 1) / chunk_pixels);
      partials = at::zeros({chunks, std::max(1, geo.num_ghost / vw), num_k}, x1.options().dtype(acc_type));
      for (int k0 = 0; k0 < num_k; k0 += kChunk) {
        const auto args = pass_args(partials, k0);
        if (vw == V) {
          train_backward_nhwc<Exec, scalar_t, V>(args, vectors_per_block, lanes, chunk_pixels, x1);
        } else {
          train_backward_nhwc<Exec, scalar_t, 1>(args, vectors_per_block, lanes, chunk_pixels, x1);
        }
      }
      grad_selection = num_ghost == 0 ? at::zeros({groups, num_k}, x1.options().dtype(acc_type))
                                      : partials.view({chunks, groups, geo.per_group / vw, num_k}).sum({0, 2});
    } else {
      const int vectors_per_row = (geo.width + V - 1) / V;
      const int band_rows = static_cast<int>(std::clamp<int64_t>(work / vectors_per_row, 1, geo.height));
      const int bands = (geo.height + band_rows - 1) / band_rows;
      partials = at::empty({geo.batch, std::max(1, geo.num_ghost), bands, num_k}, x1.options().dtype(acc_type));
      for (int k0 = 0; k0 < num_k; k0 += kChunk) {
        train_backward_nchw<Exec, scalar_t>(pass_args(partials, k0), bands, band_rows, x1);
      }
      grad_selection = num_ghost == 0
                           ? at::zeros({groups, num_k}, x1.options().dtype(acc_type))
                           : partials.view({geo.batch, groups, geo.per_group, bands, num_k}).sum({0, 2, 3});
    }
  });
  return {grad_x1, grad_selection};
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
// Against the schemas library.py defines in the namespace ghostsr_kernels: the public ops'
// CUDA kernels call these after checking their arguments.
TORCH_LIBRARY_IMPL(ghostsr_kernels, CUDA, m) { register_kernels<CudaExecutor>(m); }
#endif
