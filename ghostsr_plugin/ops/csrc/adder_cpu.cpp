// The adder layer's CPU kernels (AdderNet, Chen et al. CVPR 2020): a 'same', stride-1 2-D "convolution" whose
// output is the negative L1 distance between each input window and each filter,
//
//   out[n, o, h, w] = -sum_{c, i, j} |xp[n, c, h + i, w + j] - weight[o, c, i, j]|     (xp: x zero-padded by p)
//
// and the input gradient of AdderNet's training rule, the HardTanh-clipped full-precision gradient,
//
//   grad_xp[n, c, h + i, w + j] += sum_o clamp(weight[o, c, i, j] - xp[n, c, h + i, w + j], -1, 1) * g[n, o, h, w].
//
// Neither materializes the window x output-channel tensor: each output value is accumulated in a register.
// The forward sums max(x, w) instead of |x - w| (|x - w| = 2 max(x, w) - x - w): one max and one add per term,
// the sums of each window and of each filter being added once per output. Registered as
// torch.ops.ghostsr_kernels.adder2d / adder2d_grad_input (schemas: ghostsr_plugin/ops/adder.py, which checks every
// argument before calling them). Deterministic: each output value is summed by one thread, in a fixed order.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

// 32-byte vectors (AVX2; GCC's and Clang's vector extensions, so any target builds them) of T.
template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int64_t lanes = 32 / sizeof(T);
};

template <typename V>
inline V load(const void* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V>
inline void store(void* p, V v) {
  __builtin_memcpy(p, &v, sizeof(V));
}

// max(a, b) and min(a, b) written so that compilers emit one maxps / minps (a NaN propagates as there).
template <typename T>
inline T max_of(T a, T b) { return a > b ? a : b; }
template <typename T>
inline T min_of(T a, T b) { return a < b ? a : b; }

constexpr int64_t FWD_VECTORS = 2;  // output columns a forward pass keeps in registers: two vectors
constexpr int64_t FWD_OBLOCK = 4;  // output channels per forward pass
constexpr int64_t BWD_CBLOCK = 4;  // input channels per backward pass (one vector of columns each)

struct Geometry {
  int64_t C, O, H, W, Hp, Wp, k;
};

// Output channels [o0, o0 + OB) of one image at columns [w0, w0 + NV * lanes) of row h: sum_{c, i, j} max(xp, w).
template <typename T, int64_t OB, int64_t NV>
inline void max_sums(const T* xp, const T* wt, const Geometry& g, int64_t o0, int64_t h, int64_t w0,
                     typename Vec<T>::type (&acc)[OB][NV]) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const V zero = {};
  for (int64_t ob = 0; ob < OB; ++ob)
    for (int64_t v = 0; v < NV; ++v) acc[ob][v] = zero;
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t i = 0; i < g.k; ++i) {
      const T* row = xp + (c * g.Hp + h + i) * g.Wp + w0;
      const T* wrow = wt + ((c * g.k + i) * g.k) * g.O + o0;
      for (int64_t j = 0; j < g.k; ++j) {
        V x[NV];
        for (int64_t v = 0; v < NV; ++v) x[v] = load<V>(row + j + v * L);
        const T* wv = wrow + j * g.O;
        for (int64_t ob = 0; ob < OB; ++ob) {
          const V w = zero + wv[ob];
          for (int64_t v = 0; v < NV; ++v) acc[ob][v] += max_of(x[v], w);
        }
      }
    }
  }
}

// The same for one column, in scalars (a row's tail).
template <typename T, int64_t OB>
inline void max_sums_scalar(const T* xp, const T* wt, const Geometry& g, int64_t o0, int64_t h, int64_t w0,
                            T (&acc)[OB]) {
  for (int64_t ob = 0; ob < OB; ++ob) acc[ob] = T(0);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t i = 0; i < g.k; ++i)
      for (int64_t j = 0; j < g.k; ++j) {
        const T x = xp[(c * g.Hp + h + i) * g.Wp + w0 + j];
        const T* wv = wt + ((c * g.k + i) * g.k + j) * g.O + o0;
        for (int64_t ob = 0; ob < OB; ++ob) acc[ob] += max_of(x, wv[ob]);
      }
}

template <typename T, int64_t OB>
void forward_block(const T* xp, const T* wt, const T* wsum, const T* xsum, T* out, const Geometry& g, int64_t o0) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes, TILE = FWD_VECTORS * L;
  for (int64_t h = 0; h < g.H; ++h) {
    int64_t w0 = 0;
    for (; w0 + TILE <= g.W; w0 += TILE) {
      V acc[OB][FWD_VECTORS];
      max_sums<T, OB, FWD_VECTORS>(xp, wt, g, o0, h, w0, acc);
      for (int64_t ob = 0; ob < OB; ++ob)
        for (int64_t v = 0; v < FWD_VECTORS; ++v) {
          const V xs = load<V>(xsum + h * g.W + w0 + v * L);
          store(out + ((o0 + ob) * g.H + h) * g.W + w0 + v * L, xs + wsum[o0 + ob] - T(2) * acc[ob][v]);
        }
    }
    for (; w0 < g.W; ++w0) {
      T acc[OB];
      max_sums_scalar<T, OB>(xp, wt, g, o0, h, w0, acc);
      for (int64_t ob = 0; ob < OB; ++ob)
        out[((o0 + ob) * g.H + h) * g.W + w0] = xsum[h * g.W + w0] + wsum[o0 + ob] - T(2) * acc[ob];
    }
  }
}

// The sum of every window of one padded image (over channels and the k x k window), (H, W).
template <typename T>
void window_sums(const T* xp, const Geometry& g, T* out, std::vector<T>& channels) {
  channels.assign(g.Hp * g.Wp, T(0));
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t q = 0; q < g.Hp * g.Wp; ++q) channels[q] += xp[c * g.Hp * g.Wp + q];
  for (int64_t h = 0; h < g.H; ++h)
    for (int64_t w = 0; w < g.W; ++w) {
      T s = T(0);
      for (int64_t i = 0; i < g.k; ++i)
        for (int64_t j = 0; j < g.k; ++j) s += channels[(h + i) * g.Wp + w + j];
      out[h * g.W + w] = s;
    }
}

Geometry geometry(const at::Tensor& x, const at::Tensor& weight, int64_t padding) {
  const int64_t k = weight.size(2);
  return {x.size(1), weight.size(0), x.size(2) + 2 * padding - k + 1, x.size(3) + 2 * padding - k + 1,
          x.size(2) + 2 * padding, x.size(3) + 2 * padding, k};
}

template <typename T>
void forward_impl(const at::Tensor& xp, const at::Tensor& weight, at::Tensor& out, const Geometry& g) {
  const int64_t N = xp.size(0);
  // (C k k, O): the filters' values for one window position, over output channels, side by side
  const at::Tensor wt = weight.reshape({g.O, -1}).t().contiguous();
  const at::Tensor wsum = weight.reshape({g.O, -1}).sum(1).contiguous();
  at::Tensor xsum = at::empty({N, g.H, g.W}, xp.options());
  const T* xp_data = xp.const_data_ptr<T>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> channels;
    for (int64_t n = begin; n < end; ++n)
      window_sums<T>(xp_data + n * g.C * g.Hp * g.Wp, g, xsum.mutable_data_ptr<T>() + n * g.H * g.W, channels);
  });
  const int64_t blocks = (g.O + FWD_OBLOCK - 1) / FWD_OBLOCK;
  at::parallel_for(0, N * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / blocks, o0 = (item % blocks) * FWD_OBLOCK;
      const T* x = xp_data + n * g.C * g.Hp * g.Wp;
      const T* xs = xsum.const_data_ptr<T>() + n * g.H * g.W;
      T* o = out.mutable_data_ptr<T>() + n * g.O * g.H * g.W;
      if (o0 + FWD_OBLOCK <= g.O) {
        forward_block<T, FWD_OBLOCK>(x, wt.const_data_ptr<T>(), wsum.const_data_ptr<T>(), xs, o, g, o0);
      } else {
        for (int64_t oc = o0; oc < g.O; ++oc)
          forward_block<T, 1>(x, wt.const_data_ptr<T>(), wsum.const_data_ptr<T>(), xs, o, g, oc);
      }
    }
  });
}

at::Tensor adder2d(const at::Tensor& x, const at::Tensor& weight, int64_t padding) {
  const Geometry g = geometry(x, weight, padding);
  const at::Tensor xp = at::constant_pad_nd(x.contiguous(), {padding, padding, padding, padding}, 0);
  at::Tensor out = at::empty({x.size(0), g.O, g.H, g.W}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "adder2d", [&] { forward_impl<scalar_t>(xp, weight, out, g); });
  return out;
}

// Input channels [c0, c0 + CB) of one image: their padded gradient, from every window position and output channel.
template <typename T, int64_t CB>
void grad_input_block(const T* xp, const T* wt, const T* grad, T* gxp, const Geometry& g, int64_t c0) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const V zero = {}, minus_one = zero - T(1), one = zero + T(1);
  for (int64_t i = 0; i < g.k; ++i) {
    for (int64_t j = 0; j < g.k; ++j) {
      const T* wv[CB];
      for (int64_t cb = 0; cb < CB; ++cb) wv[cb] = wt + (((c0 + cb) * g.k + i) * g.k + j) * g.O;
      for (int64_t h = 0; h < g.H; ++h) {
        int64_t w0 = 0;
        for (; w0 + L <= g.W; w0 += L) {
          V x[CB], acc[CB];
          for (int64_t cb = 0; cb < CB; ++cb) {
            x[cb] = load<V>(xp + ((c0 + cb) * g.Hp + h + i) * g.Wp + w0 + j);
            acc[cb] = zero;
          }
          for (int64_t o = 0; o < g.O; ++o) {
            const V gr = load<V>(grad + (o * g.H + h) * g.W + w0);
            for (int64_t cb = 0; cb < CB; ++cb) {
              const V d = min_of(max_of((zero + wv[cb][o]) - x[cb], minus_one), one);
              acc[cb] += d * gr;
            }
          }
          for (int64_t cb = 0; cb < CB; ++cb) {
            T* at = gxp + ((c0 + cb) * g.Hp + h + i) * g.Wp + w0 + j;
            store(at, load<V>(at) + acc[cb]);
          }
        }
        for (; w0 < g.W; ++w0) {  // a row's tail, one column at a time
          for (int64_t cb = 0; cb < CB; ++cb) {
            const int64_t at_x = ((c0 + cb) * g.Hp + h + i) * g.Wp + w0 + j;
            T acc = T(0);
            for (int64_t o = 0; o < g.O; ++o)
              acc += min_of(max_of(wv[cb][o] - xp[at_x], T(-1)), T(1)) * grad[(o * g.H + h) * g.W + w0];
            gxp[at_x] += acc;
          }
        }
      }
    }
  }
}

template <typename T>
void grad_input_impl(const at::Tensor& xp, const at::Tensor& weight, const at::Tensor& grad, at::Tensor& gxp,
                     const Geometry& g) {
  const int64_t N = xp.size(0);
  const at::Tensor wt = weight.permute({1, 2, 3, 0}).contiguous();  // (C, k, k, O)
  const int64_t blocks = (g.C + BWD_CBLOCK - 1) / BWD_CBLOCK;
  at::parallel_for(0, N * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / blocks, c0 = (item % blocks) * BWD_CBLOCK;
      const T* x = xp.const_data_ptr<T>() + n * g.C * g.Hp * g.Wp;
      const T* gr = grad.const_data_ptr<T>() + n * g.O * g.H * g.W;
      T* gx = gxp.mutable_data_ptr<T>() + n * g.C * g.Hp * g.Wp;
      if (c0 + BWD_CBLOCK <= g.C) {
        grad_input_block<T, BWD_CBLOCK>(x, wt.const_data_ptr<T>(), gr, gx, g, c0);
      } else {
        for (int64_t c = c0; c < g.C; ++c) grad_input_block<T, 1>(x, wt.const_data_ptr<T>(), gr, gx, g, c);
      }
    }
  });
}

at::Tensor adder2d_grad_input(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
                              int64_t padding) {
  const Geometry g = geometry(x, weight, padding);
  const at::Tensor xp = at::constant_pad_nd(x.contiguous(), {padding, padding, padding, padding}, 0);
  at::Tensor gxp = at::zeros_like(xp);
  const at::Tensor grad = grad_out.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "adder2d_grad_input",
                             [&] { grad_input_impl<scalar_t>(xp, weight.contiguous(), grad, gxp, g); });
  return gxp.slice(2, padding, padding + x.size(2)).slice(3, padding, padding + x.size(3)).contiguous();
}

}  // namespace

TORCH_LIBRARY_IMPL(ghostsr_kernels, CPU, m) {
  m.impl("adder2d", &adder2d);
  m.impl("adder2d_grad_input", &adder2d_grad_input);
}
