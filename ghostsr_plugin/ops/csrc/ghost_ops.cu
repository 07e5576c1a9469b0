// Fused CUDA kernels of GhostSR's shift ops, registered as torch.ops.ghostsr_cuda.*.
//
// ghostsr_plugin/ops/library.py defines the public ops (torch.ops.ghostsr.*) and calls these
// as their CUDA kernels. The pure-PyTorch reference, ghostsr_plugin/ops/reference.py, defines what
// every kernel here must reproduce:
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
// The per-thread work of each kernel is a __host__ __device__ function, and the host code is
// templated on an executor: CudaExecutor launches the kernels; tests/csrc/emulated_ghost_ops.cu
// runs the same per-thread code thread by thread on the CPU, so CI checks it without a GPU.
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

#ifndef GHOSTSR_CUDA_NAMESPACE
#define GHOSTSR_CUDA_NAMESPACE ghostsr_cuda
#endif

namespace {

constexpr int kThreads = 256;  // threads per block, every kernel
constexpr int kUnroll = 4;     // elements per thread per tile: all its loads are issued before its stores
constexpr int kChunk = 9;      // orientations one block of the selection-gradient reduction sums

using Divider = at::cuda::detail::IntDivider<unsigned int>;

// Offset of element (n, c, y, x) of a dense (N, C, H, W) tensor stored NCHW or NHWC.
template <bool kChannelsLast>
C10_HOST_DEVICE inline int64_t index4(int64_t n, int c, int y, int x, int channels, int height, int width) {
  return kChannelsLast ? ((n * height + y) * width + x) * channels + c
                       : ((n * channels + c) * height + y) * width + x;
}

C10_HOST_DEVICE inline bool inside(int64_t y, int64_t x, int height, int width) {
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

// One integer offset per orientation group (a (G, 2) array), or one offset for all groups.
struct FixedShift {
  const int64_t* offsets;  // (G, 2) row-major (dy, dx), or nullptr: every group uses (dy, dx)
  int64_t dy, dx;
  int64_t limit;  // offsets are clamped to [-limit, limit], limit >= H, W: that changes no value, only avoids overflow

  // `load(dy, dx)` is the value the shift by (dy, dx) brings here (zero from outside the image).
  template <typename scalar_t, typename Load>
  C10_HOST_DEVICE scalar_t gather(int group, const Load& load) const {
    const int64_t oy = offsets ? offsets[2 * group] : dy;
    const int64_t ox = offsets ? offsets[2 * group + 1] : dx;
    return load(oy < -limit ? -limit : (oy > limit ? limit : oy), ox < -limit ? -limit : (ox > limit ? limit : ox));
  }
};

// A weighted sum over all (2d+1)^2 offsets per group (the training path's one-hot selection).
template <typename opmath_t>
struct LearnedShift {
  const opmath_t* selection;  // (G, (2d+1)^2) contiguous
  int max_shift;

  template <typename scalar_t, typename Load>
  C10_HOST_DEVICE scalar_t gather(int group, const Load& load) const {
    const int side = 2 * max_shift + 1;
    const opmath_t* weights = selection + static_cast<int64_t>(group) * side * side;
    opmath_t acc = 0;
    for (int ky = 0; ky < side; ++ky) {
      for (int kx = 0; kx < side; ++kx) {
        const opmath_t weight = weights[ky * side + kx];
        if (weight != opmath_t(0)) {
          acc += mul_rn(weight, static_cast<opmath_t>(load(ky - max_shift, kx - max_shift)));
        }
      }
    }
    return static_cast<scalar_t>(acc);
  }
};

// Value of the Ghost layer output (or of the shift) at (n, c, y, x).
template <typename scalar_t, bool kChannelsLast, typename Shift>
struct GhostForward {
  const scalar_t* src;
  Geometry geo;
  Divider src_div, group_div;
  Shift shift;

  C10_HOST_DEVICE scalar_t operator()(int64_t n, int c, int y, int x) const {
    if (c < geo.copy_channels) {
      return src[index4<kChannelsLast>(n, c, y, x, geo.src_channels, geo.height, geo.width)];
    }
    const unsigned j = c - geo.copy_channels;
    const int s = j < static_cast<unsigned>(geo.src_channels) ? j : src_div.mod(j);
    return shift.template gather<scalar_t>(group_div.div(j), [&](int64_t dy, int64_t dx) {
      const int64_t sy = y - dy, sx = x - dx;
      return inside(sy, sx, geo.height, geo.width)
                 ? src[index4<kChannelsLast>(n, s, static_cast<int>(sy), static_cast<int>(sx), geo.src_channels,
                                             geo.height, geo.width)]
                 : scalar_t(0);
    });
  }
};

// Gradient of the source at (n, c, y, x): its own upstream gradient (if copied) plus, for every
// ghost made from it, that ghost's upstream gradient shifted back.
template <typename scalar_t, bool kChannelsLast, typename Shift>
struct GhostBackward {
  const scalar_t* grad;  // (N, copy_channels + num_ghost, H, W)
  Geometry geo;
  Divider group_div;
  Shift shift;

  C10_HOST_DEVICE scalar_t operator()(int64_t n, int c, int y, int x) const {
    using opmath_t = at::opmath_type<scalar_t>;
    const int channels = geo.copy_channels + geo.num_ghost;
    opmath_t acc = c < geo.copy_channels
                       ? static_cast<opmath_t>(grad[index4<kChannelsLast>(n, c, y, x, channels, geo.height, geo.width)])
                       : opmath_t(0);
    for (int j = c; j < geo.num_ghost; j += geo.src_channels) {
      const int gc = geo.copy_channels + j;
      acc += static_cast<opmath_t>(shift.template gather<scalar_t>(group_div.div(j), [&](int64_t dy, int64_t dx) {
        const int64_t gy = y + dy, gx = x + dx;
        return inside(gy, gx, geo.height, geo.width)
                   ? grad[index4<kChannelsLast>(n, gc, static_cast<int>(gy), static_cast<int>(gx), channels,
                                                geo.height, geo.width)]
                   : scalar_t(0);
      }));
    }
    return static_cast<scalar_t>(acc);
  }
};

// Blocks walk (plane, tile) pairs. A plane is a contiguous run of the written tensor: one (n, c)
// image in NCHW, one (n, y) row of pixels in NHWC; a tile is at most kThreads * kUnroll of it.
struct Tiling {
  int64_t tiles;         // planes * per_plane
  int64_t per_plane;     // tiles per plane
  int64_t tile_len;      // elements per tile (a plane's last tile may be shorter)
  int64_t plane_len;     // elements per plane, < 2^31
  int64_t planes_per_n;  // channels (NCHW) or height (NHWC): plane = n * planes_per_n + middle
  Divider minor_div;     // splits an in-plane index: by width (NCHW) or by channels (NHWC)
};

// Thread `thread`'s share of tile `tile`: out[...] = value(n, c, y, x) for its kUnroll elements.
template <typename scalar_t, bool kChannelsLast, typename Value>
C10_HOST_DEVICE void fill_tile(scalar_t* out, const Tiling& tiling, const Value& value, int64_t tile, int thread) {
  const int64_t plane = tile / tiling.per_plane;
  const int64_t begin = (tile - plane * tiling.per_plane) * tiling.tile_len;
  const int64_t end = begin + tiling.tile_len < tiling.plane_len ? begin + tiling.tile_len : tiling.plane_len;
  const int64_t n = plane / tiling.planes_per_n;
  const int middle = static_cast<int>(plane - n * tiling.planes_per_n);  // c (NCHW) or y (NHWC)
  scalar_t values[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t e = begin + u * kThreads + thread;
    if (e < end) {
      // e = y * W + x (NCHW) or x * C + c (NHWC)
      const auto qr = tiling.minor_div.divmod(static_cast<unsigned>(e));
      const int major = static_cast<int>(qr.div), minor = static_cast<int>(qr.mod);
      values[u] = kChannelsLast ? value(n, minor, middle, major) : value(n, middle, major, minor);
    }
  }
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t e = begin + u * kThreads + thread;
    if (e < end) out[plane * tiling.plane_len + e] = values[u];
  }
}

template <typename scalar_t, bool kChannelsLast, typename Value>
__global__ void __launch_bounds__(kThreads) fill_kernel(scalar_t* __restrict__ out, Tiling tiling, Value value) {
  for (int64_t tile = blockIdx.x; tile < tiling.tiles; tile += gridDim.x) {
    fill_tile<scalar_t, kChannelsLast>(out, tiling, value, tile, threadIdx.x);
  }
}

// The correlation of the upstream gradient with each shifted source, one thread's share:
//   acc[u] += grad[n, copy + j, y, x] * x1[n, j % c_i, y - dy_k, x - dx_k]   (zero outside),
// k = k0 + u < (2d+1)^2, over the elements e = first, first + stride, ... of group g's ghosts.
template <typename scalar_t, bool kChannelsLast, typename index_t>
struct SelectionGrad {
  using opmath_t = at::opmath_type<scalar_t>;
  const scalar_t* grad;  // (N, c_i + num_ghost, H, W)
  const scalar_t* x1;    // (N, c_i, H, W), same memory order
  Geometry geo;
  int max_shift;
  index_t group_numel;  // N * per_group * H * W
  at::cuda::detail::IntDivider<index_t> div0, div1, div2;  // peel (n, jl, y, x) off e in memory order
  Divider src_div;

  C10_HOST_DEVICE void accumulate(opmath_t (&acc)[kChunk], int group, int k0, index_t first, index_t stride) const {
    const int side = 2 * max_shift + 1, num_k = side * side;
    const int channels = geo.copy_channels + geo.num_ghost;
    int dys[kChunk], dxs[kChunk];
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      dys[u] = (k0 + u) / side - max_shift;
      dxs[u] = (k0 + u) % side - max_shift;
    }
    for (index_t e = first; e < group_numel; e += stride) {
      const auto q0 = div0.divmod(e);
      const auto q1 = div1.divmod(q0.div);
      const auto q2 = div2.divmod(q1.div);
      int jl, y, x;
      if (kChannelsLast) {  // e = ((n * H + y) * W + x) * P + jl
        jl = static_cast<int>(q0.mod), x = static_cast<int>(q1.mod), y = static_cast<int>(q2.mod);
      } else {  // e = ((n * P + jl) * H + y) * W + x
        x = static_cast<int>(q0.mod), y = static_cast<int>(q1.mod), jl = static_cast<int>(q2.mod);
      }
      const int64_t n = static_cast<int64_t>(q2.div);
      const int j = group * geo.per_group + jl;
      const int s = j < geo.src_channels ? j : static_cast<int>(src_div.mod(static_cast<unsigned>(j)));
      const opmath_t g = static_cast<opmath_t>(
          grad[index4<kChannelsLast>(n, geo.copy_channels + j, y, x, channels, geo.height, geo.width)]);
#pragma unroll
      for (int u = 0; u < kChunk; ++u) {
        const int64_t sy = static_cast<int64_t>(y) - dys[u], sx = static_cast<int64_t>(x) - dxs[u];
        if (k0 + u < num_k && inside(sy, sx, geo.height, geo.width)) {
          acc[u] += g * static_cast<opmath_t>(x1[index4<kChannelsLast>(n, s, static_cast<int>(sy),
                                                                       static_cast<int>(sx), geo.src_channels,
                                                                       geo.height, geo.width)]);
        }
      }
    }
  }
};

// Block b of grid (B, G, chunks) writes partials[(g * K + k) * B + b] for its orientations
// k in [kChunk z, kChunk z + kChunk) of K: its threads' sums, summed by warp shuffles and then
// across warps. A second pass sums over b (a fixed order: the result is the same every run).
template <typename Job>
__global__ void __launch_bounds__(kThreads)
    selection_grad_kernel(Job job, typename Job::opmath_t* __restrict__ partials, int num_k) {
  using opmath_t = typename Job::opmath_t;
  const int k0 = blockIdx.z * kChunk;
  opmath_t acc[kChunk];
#pragma unroll
  for (int u = 0; u < kChunk; ++u) acc[u] = 0;
  using index_t = decltype(job.group_numel);
  job.accumulate(acc, blockIdx.y, k0, static_cast<index_t>(blockIdx.x) * kThreads + threadIdx.x,
                 static_cast<index_t>(gridDim.x) * kThreads);
  __shared__ opmath_t warp_sums[kThreads / 32][kChunk];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int u = 0; u < kChunk; ++u) {
    opmath_t v = acc[u];
    for (int delta = 16; delta > 0; delta /= 2) v += __shfl_down_sync(0xffffffffu, v, delta);
    if (lane == 0) warp_sums[warp][u] = v;
  }
  __syncthreads();
  if (threadIdx.x < kChunk && k0 + static_cast<int>(threadIdx.x) < num_k) {
    opmath_t total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w][threadIdx.x];
    partials[(static_cast<int64_t>(blockIdx.y) * num_k + k0 + threadIdx.x) * gridDim.x + blockIdx.x] = total;
  }
}

// Runs the kernels on the current CUDA stream.
struct CudaExecutor {
  static bool on_device(const at::Tensor& t) { return t.is_cuda(); }

  // Blocks that keep the device busy in one wave: 3 per SM (the reduction kernel uses about 80
  // registers a thread, so 3 blocks of 256 fit an SM's 64K registers).
  static int64_t busy_blocks(const at::Tensor& t) {
    int sms = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, t.get_device()));
    return 3 * static_cast<int64_t>(sms);
  }

  template <bool kChannelsLast, typename scalar_t, typename Value>
  static void fill(scalar_t* out, const Tiling& tiling, const Value& value) {
    const auto blocks = static_cast<unsigned>(std::min<int64_t>(tiling.tiles, std::numeric_limits<int32_t>::max()));
    fill_kernel<scalar_t, kChannelsLast><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(out, tiling,
                                                                                                     value);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename Job>
  static void selection_grad(const Job& job, dim3 grid, typename Job::opmath_t* partials, int num_k) {
    selection_grad_kernel<<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(job, partials, num_k);
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
  TORCH_CHECK(0 <= v && v <= std::numeric_limits<int32_t>::max(), "ghostsr_cuda: ", what, " = ", v,
              " is out of range for these kernels");
  return static_cast<int>(v);
}

template <typename Exec>
void check_input(const at::Tensor& t, const char* what) {
  TORCH_CHECK(Exec::on_device(t), "ghostsr_cuda: ", what, " is on ", t.device(), ", not on this kernel's device");
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), "ghostsr_cuda: ", what, " must be floating point, got ",
              t.scalar_type());
}

void check_same_device(const at::Tensor& t, const at::Tensor& like, const char* what) {
  TORCH_CHECK(t.device() == like.device(), "ghostsr_cuda: ", what, " must be on ", like.device(), ", got ",
              t.device());
}

// The geometry of `num_ghost` ghosts in `groups` groups made from the `src_channels` channels
// of a 4-D (N, *, H, W) tensor `t`, which are copied first.
Geometry ghost_geometry(const at::Tensor& t, int64_t src_channels, int64_t num_ghost, int64_t groups) {
  TORCH_CHECK(num_ghost >= 0, "ghostsr_cuda: num_ghost must be >= 0, got ", num_ghost);
  TORCH_CHECK(groups >= 1 && num_ghost % groups == 0, "ghostsr_cuda: ", num_ghost,
              " ghost channels cannot be split into ", groups, " orientation groups");
  TORCH_CHECK(num_ghost == 0 || src_channels >= 1, "ghostsr_cuda: ghosts need at least one intrinsic channel");
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
  TORCH_CHECK(0 <= max_shift && max_shift <= 1000, "ghostsr_cuda: max_shift must be in [0, 1000], got ", max_shift);
  return (2 * max_shift + 1) * (2 * max_shift + 1);
}

at::ScalarType opmath_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// Writes value(n, c, y, x) into every element of the dense (N, C, H, W) tensor at `out`.
template <typename Exec, bool kChannelsLast, typename scalar_t, typename Value>
void fill(scalar_t* out, int64_t batch, int channels, int height, int width, const Value& value) {
  const int64_t planes_per_n = kChannelsLast ? height : channels;
  const int64_t plane_len =
      kChannelsLast ? static_cast<int64_t>(width) * channels : static_cast<int64_t>(height) * width;
  TORCH_CHECK(plane_len <= std::numeric_limits<int32_t>::max(), "ghostsr_cuda: ", kChannelsLast ? "a row" : "an image",
              " of ", plane_len, " elements is more than these kernels index (2^31 - 1)");
  const int64_t planes = batch * planes_per_n;
  if (planes == 0 || plane_len == 0) return;
  Tiling tiling;
  tiling.per_plane = (plane_len + kThreads * kUnroll - 1) / (kThreads * kUnroll);
  tiling.tile_len = (plane_len + tiling.per_plane - 1) / tiling.per_plane;
  tiling.plane_len = plane_len;
  tiling.planes_per_n = planes_per_n;
  tiling.tiles = planes * tiling.per_plane;
  tiling.minor_div = Divider(kChannelsLast ? channels : width);
  Exec::template fill<kChannelsLast>(out, tiling, value);
}

// Writes the ghost output (or shift) of the dense `src` into `out` (same memory order); the
// shift comes from make_shift(scalar_t zero), so it may depend on the element type.
template <typename Exec, typename MakeShift>
void run_forward(const at::Tensor& src, at::Tensor& out, const Geometry& geo, bool channels_last,
                 const MakeShift& make_shift) {
  if (out.numel() == 0) return;
  const int out_channels = geo.copy_channels + geo.num_ghost;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "ghostsr_cuda_forward", [&] {
    const auto shift = make_shift(scalar_t(0));
    using Shift = std::decay_t<decltype(shift)>;
    const Divider src_div(std::max(geo.src_channels, 1)), group_div(geo.per_group);
    scalar_t* dst = out.mutable_data_ptr<scalar_t>();
    const scalar_t* from = src.const_data_ptr<scalar_t>();
    if (channels_last) {
      fill<Exec, true>(dst, geo.batch, out_channels, geo.height, geo.width,
                       GhostForward<scalar_t, true, Shift>{from, geo, src_div, group_div, shift});
    } else {
      fill<Exec, false>(dst, geo.batch, out_channels, geo.height, geo.width,
                        GhostForward<scalar_t, false, Shift>{from, geo, src_div, group_div, shift});
    }
  });
}

// Writes the source gradient from the dense upstream gradient `grad` into `grad_src`.
template <typename Exec, typename MakeShift>
void run_backward(const at::Tensor& grad, at::Tensor& grad_src, const Geometry& geo, bool channels_last,
                  const MakeShift& make_shift) {
  if (grad_src.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "ghostsr_cuda_backward", [&] {
    const auto shift = make_shift(scalar_t(0));
    using Shift = std::decay_t<decltype(shift)>;
    const Divider group_div(geo.per_group);
    scalar_t* dst = grad_src.mutable_data_ptr<scalar_t>();
    const scalar_t* from = grad.const_data_ptr<scalar_t>();
    if (channels_last) {
      fill<Exec, true>(dst, geo.batch, geo.src_channels, geo.height, geo.width,
                       GhostBackward<scalar_t, true, Shift>{from, geo, group_div, shift});
    } else {
      fill<Exec, false>(dst, geo.batch, geo.src_channels, geo.height, geo.width,
                        GhostBackward<scalar_t, false, Shift>{from, geo, group_div, shift});
    }
  });
}

FixedShift fixed_shift(const at::Tensor* offsets, int64_t dy, int64_t dx, const Geometry& geo) {
  return FixedShift{offsets ? offsets->const_data_ptr<int64_t>() : nullptr, dy, dx,
                    std::max<int64_t>(std::max(geo.height, geo.width), 1)};
}

at::Tensor checked_offsets(const at::Tensor& offsets, const at::Tensor& x) {
  check_same_device(offsets, x, "offsets");
  TORCH_CHECK(offsets.dim() == 2 && offsets.size(1) == 2 && offsets.size(0) >= 1,
              "ghostsr_cuda: offsets must be (G, 2) integer (dy, dx) pairs, got shape ", offsets.sizes());
  TORCH_CHECK(!at::isFloatingType(offsets.scalar_type()) && !at::isComplexType(offsets.scalar_type()),
              "ghostsr_cuda: offsets must be integer, got ", offsets.scalar_type());
  return offsets.to(at::kLong).contiguous();
}

at::Tensor checked_selection(const at::Tensor& selection, const at::Tensor& x, int64_t max_shift) {
  check_same_device(selection, x, "selection");
  TORCH_CHECK(selection.dim() == 2 && selection.size(0) >= 1 && selection.size(1) == side_squared(max_shift),
              "ghostsr_cuda: selection must be (G, (2 * max_shift + 1)^2), got shape ", selection.sizes(),
              " with max_shift = ", max_shift);
  TORCH_CHECK(at::isFloatingType(selection.scalar_type()), "ghostsr_cuda: selection must be floating point");
  return selection.to(opmath_dtype(x.scalar_type())).contiguous();
}

void check_ghost_grad(const at::Tensor& grad_out, int64_t num_ghost, const char* op) {
  TORCH_CHECK(grad_out.dim() == 4 && num_ghost >= 0 && grad_out.size(1) >= num_ghost, "ghostsr_cuda::", op,
              ": grad_out must be (N, C + num_ghost, H, W), got shape ", grad_out.sizes(), " with num_ghost = ",
              num_ghost);
}

// --- the ops ---------------------------------------------------------------------------------

template <typename Exec>
at::Tensor shift(const at::Tensor& x, at::IntArrayRef offset) {
  check_input<Exec>(x, "x");
  TORCH_CHECK(x.dim() >= 2, "ghostsr_cuda::shift: x must be (..., H, W), got ", x.dim(), " dimensions");
  TORCH_CHECK(offset.size() == 2, "ghostsr_cuda::shift: offset must be (dy, dx), got ", offset.size(), " values");
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
  run_forward<Exec>(src, out, geo, channels_last, [&](auto) { return fixed; });
  return out;
}

template <typename Exec>
at::Tensor ghost_features(const at::Tensor& x1, int64_t num_ghost, const at::Tensor& offsets) {
  check_input<Exec>(x1, "x1");
  TORCH_CHECK(x1.dim() == 4, "ghostsr_cuda::ghost_features: x1 must be (N, C, H, W), got shape ", x1.sizes());
  const c10::OptionalDeviceGuard guard(x1.device());
  const at::Tensor table = checked_offsets(offsets, x1);
  const Geometry geo = ghost_geometry(x1, x1.size(1), num_ghost, table.size(0));
  const bool channels_last = is_channels_last(x1);
  const at::Tensor src = dense(x1, channels_last);
  at::Tensor out = empty_as(src, {x1.size(0), x1.size(1) + num_ghost, x1.size(2), x1.size(3)}, channels_last);
  const FixedShift fixed = fixed_shift(&table, 0, 0, geo);
  run_forward<Exec>(src, out, geo, channels_last, [&](auto) { return fixed; });
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
  run_backward<Exec>(grad, grad_x1, geo, channels_last, [&](auto) { return fixed; });
  return grad_x1;
}

template <typename Exec>
at::Tensor ghost_features_train(const at::Tensor& x1, int64_t num_ghost, const at::Tensor& selection,
                                int64_t max_shift) {
  check_input<Exec>(x1, "x1");
  TORCH_CHECK(x1.dim() == 4, "ghostsr_cuda::ghost_features_train: x1 must be (N, C, H, W), got shape ", x1.sizes());
  const c10::OptionalDeviceGuard guard(x1.device());
  const at::Tensor weights = checked_selection(selection, x1, max_shift);
  const Geometry geo = ghost_geometry(x1, x1.size(1), num_ghost, weights.size(0));
  const bool channels_last = is_channels_last(x1);
  const at::Tensor src = dense(x1, channels_last);
  at::Tensor out = empty_as(src, {x1.size(0), x1.size(1) + num_ghost, x1.size(2), x1.size(3)}, channels_last);
  const int d = static_cast<int>(max_shift);
  run_forward<Exec>(src, out, geo, channels_last, [&](auto zero) {
    using opmath_t = at::opmath_type<decltype(zero)>;
    return LearnedShift<opmath_t>{weights.const_data_ptr<opmath_t>(), d};
  });
  return out;
}

template <typename Exec>
at::Tensor ghost_features_train_backward(const at::Tensor& grad_out, int64_t num_ghost, const at::Tensor& selection,
                                         int64_t max_shift) {
  check_input<Exec>(grad_out, "grad_out");
  check_ghost_grad(grad_out, num_ghost, "ghost_features_train_backward");
  const c10::OptionalDeviceGuard guard(grad_out.device());
  const at::Tensor weights = checked_selection(selection, grad_out, max_shift);
  const int64_t c_intrinsic = grad_out.size(1) - num_ghost;
  const Geometry geo = ghost_geometry(grad_out, c_intrinsic, num_ghost, weights.size(0));
  const bool channels_last = is_channels_last(grad_out);
  const at::Tensor grad = dense(grad_out, channels_last);
  at::Tensor grad_x1 = empty_as(grad, {grad.size(0), c_intrinsic, grad.size(2), grad.size(3)}, channels_last);
  const int d = static_cast<int>(max_shift);
  run_backward<Exec>(grad, grad_x1, geo, channels_last, [&](auto zero) {
    using opmath_t = at::opmath_type<decltype(zero)>;
    return LearnedShift<opmath_t>{weights.const_data_ptr<opmath_t>(), d};
  });
  return grad_x1;
}

template <typename Exec, typename scalar_t, bool kChannelsLast, typename index_t>
void run_selection_grad(const at::Tensor& grad, const at::Tensor& x1, const Geometry& geo, int max_shift,
                        int64_t group_numel, at::Tensor& partials, dim3 grid, int num_k) {
  using IndexDivider = at::cuda::detail::IntDivider<index_t>;
  const index_t p = geo.per_group, h = geo.height, w = geo.width;
  SelectionGrad<scalar_t, kChannelsLast, index_t> job{grad.const_data_ptr<scalar_t>(),
                                                      x1.const_data_ptr<scalar_t>(),
                                                      geo,
                                                      max_shift,
                                                      static_cast<index_t>(group_numel),
                                                      // memory order of (n, jl, y, x): jl fastest in NHWC, x in NCHW
                                                      IndexDivider(kChannelsLast ? p : w),
                                                      IndexDivider(kChannelsLast ? w : h),
                                                      IndexDivider(kChannelsLast ? h : p),
                                                      Divider(std::max(geo.src_channels, 1))};
  Exec::selection_grad(job, grid, partials.mutable_data_ptr<at::opmath_type<scalar_t>>(), num_k);
}

template <typename Exec>
at::Tensor selection_grad(const at::Tensor& grad_out, const at::Tensor& x1, int64_t num_groups, int64_t max_shift) {
  check_input<Exec>(grad_out, "grad_out");
  check_input<Exec>(x1, "x1");
  check_same_device(grad_out, x1, "grad_out");
  TORCH_CHECK(x1.dim() == 4 && grad_out.dim() == 4 && grad_out.size(0) == x1.size(0) &&
                  grad_out.size(1) >= x1.size(1) && grad_out.size(2) == x1.size(2) && grad_out.size(3) == x1.size(3),
              "ghostsr_cuda::selection_grad: grad_out must be (N, C + num_ghost, H, W) for x1 (N, C, H, W), got ",
              grad_out.sizes(), " and ", x1.sizes());
  TORCH_CHECK(grad_out.scalar_type() == x1.scalar_type(), "ghostsr_cuda::selection_grad: grad_out is ",
              grad_out.scalar_type(), " but x1 is ", x1.scalar_type());
  TORCH_CHECK(num_groups <= 65535, "ghostsr_cuda::selection_grad: at most 65535 orientation groups, got ", num_groups);
  const c10::OptionalDeviceGuard guard(x1.device());
  const int64_t num_k = side_squared(max_shift);
  const Geometry geo = ghost_geometry(x1, x1.size(1), grad_out.size(1) - x1.size(1), num_groups);
  const at::ScalarType acc_type = opmath_dtype(x1.scalar_type());
  const int64_t group_numel = geo.num_ghost == 0 ? 0 : geo.batch * geo.per_group * geo.height * geo.width;
  if (group_numel == 0) return at::zeros({num_groups, num_k}, x1.options().dtype(acc_type));

  const bool channels_last = is_channels_last(x1);
  const at::Tensor src = dense(x1, channels_last), grad = dense(grad_out, channels_last);
  const int64_t chunks = (num_k + kChunk - 1) / kChunk;
  TORCH_CHECK(chunks <= 65535, "ghostsr_cuda::selection_grad: max_shift ", max_shift, " is too large");
  // Enough blocks to keep the device busy, each thread summing at least 4 elements.
  const int64_t wanted = (group_numel + 4 * kThreads - 1) / (4 * kThreads);
  const int64_t share = (Exec::busy_blocks(x1) + num_groups * chunks - 1) / (num_groups * chunks);
  const int64_t blocks = std::clamp<int64_t>(wanted, 1, std::max<int64_t>(share, 1));
  at::Tensor partials = at::empty({num_groups, num_k, blocks}, x1.options().dtype(acc_type));
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(num_groups), static_cast<unsigned>(chunks));
  const int d = static_cast<int>(max_shift), k = static_cast<int>(num_k);
  const bool small = group_numel + blocks * kThreads <= std::numeric_limits<int32_t>::max();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "ghostsr_cuda_selection_grad", [&] {
    if (channels_last && small) {
      run_selection_grad<Exec, scalar_t, true, unsigned int>(grad, src, geo, d, group_numel, partials, grid, k);
    } else if (channels_last) {
      run_selection_grad<Exec, scalar_t, true, uint64_t>(grad, src, geo, d, group_numel, partials, grid, k);
    } else if (small) {
      run_selection_grad<Exec, scalar_t, false, unsigned int>(grad, src, geo, d, group_numel, partials, grid, k);
    } else {
      run_selection_grad<Exec, scalar_t, false, uint64_t>(grad, src, geo, d, group_numel, partials, grid, k);
    }
  });
  return partials.sum(-1);
}

}  // namespace

// Schemas as torch.ops.ghostsr.* (library.py); tests/test_cuda_build.py checks that they agree.
#define GHOSTSR_SCHEMAS(m)                                                                                   \
  m.def("shift(Tensor x, int[] offset) -> Tensor");                                                         \
  m.def("ghost_features(Tensor x1, int num_ghost, Tensor offsets) -> Tensor");                              \
  m.def("ghost_features_backward(Tensor grad_out, int num_ghost, Tensor offsets) -> Tensor");               \
  m.def("ghost_features_train(Tensor x1, int num_ghost, Tensor selection, int max_shift) -> Tensor");       \
  m.def("ghost_features_train_backward(Tensor grad_out, int num_ghost, Tensor selection, int max_shift) "   \
        "-> Tensor");                                                                                         \
  m.def("selection_grad(Tensor grad_out, Tensor x1, int num_groups, int max_shift) -> Tensor")

#define GHOSTSR_IMPLS(m, Exec)                                                                               \
  m.impl("shift", &shift<Exec>);                                                                             \
  m.impl("ghost_features", &ghost_features<Exec>);                                                           \
  m.impl("ghost_features_backward", &ghost_features_backward<Exec>);                                         \
  m.impl("ghost_features_train", &ghost_features_train<Exec>);                                               \
  m.impl("ghost_features_train_backward", &ghost_features_train_backward<Exec>);                             \
  m.impl("selection_grad", &selection_grad<Exec>)

// (one level of indirection, so that GHOSTSR_CUDA_NAMESPACE is expanded before pasting)
#define GHOSTSR_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define GHOSTSR_LIBRARY_IMPL(ns, key, m) TORCH_LIBRARY_IMPL(ns, key, m)

GHOSTSR_LIBRARY(GHOSTSR_CUDA_NAMESPACE, m) { GHOSTSR_SCHEMAS(m); }

GHOSTSR_LIBRARY_IMPL(GHOSTSR_CUDA_NAMESPACE, CUDA, m) { GHOSTSR_IMPLS(m, CudaExecutor); }
