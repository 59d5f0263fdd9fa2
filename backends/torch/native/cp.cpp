// The fused CP layer (a dense sum per input, then their Hadamard product) in the packed
// lse-sum form (see semirings.py), CPU.
//
// x (F, H, K + 1, B): per fold H inputs of K linear values plus a log-scale row. The last
//   two axes are contiguous; folds and inputs may have any stride, as a fold gather leaves
//   them (no copy).
// w (F, H, O, K): linear weights, one (O, K) matrix per input.
// forward: z_h = w_h e_h, m_h = max(max_o z_h, tiny), p = prod_h z_h / m_h,
//          M = max(max_o p, tiny), out = [p / M ; log M + sum_h (log m_h + s_h)].
// Each input's sum is normalized before the product, as the eager layer does, so that a
// product of small sums does not underflow. The sums exist one tile of batch columns at a
// time (in cache); the product, both normalizations and the scale row read them while hot.
// With `save`, zn_h = z_h / m_h, m_h and M are kept for the backward, which takes m_h and M
// as constants (see semirings): g_h = dout * prod_{h' != h} zn_h' / (m_h M),
// dw_h = g_h e_h^T, de_h = w_h^T g_h. Small layers use plain loops over the batch (which
// vectorize), larger ones one GEMM per input and tile.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "rows.h"

namespace {

constexpr int64_t kColumns = 256;    // batch columns per tile
constexpr int64_t kSmallWork = 512;  // O * K up to this: plain loops

// z (O, n) = w (O, K) e (K, n; rows lde apart).
template <typename T>
void dense(const T* w, const T* e, int64_t lde, int64_t O, int64_t K, int64_t n, T* z,
           bool small, const at::TensorOptions& opts) {
  if (!small) {
    at::Tensor zt = at::from_blob(z, {O, n}, opts);
    at::mm_out(zt, at::from_blob(const_cast<T*>(w), {O, K}, opts),
               at::from_blob(const_cast<T*>(e), {K, n}, {lde, 1}, opts));
    return;
  }
  for (int64_t o = 0; o < O; ++o) {
    T* zo = z + o * n;
    const T* wo = w + o * K;
    std::fill(zo, zo + n, T(0));
    for (int64_t i = 0; i < K; ++i) {
      const T wi = wo[i];
      const T* ei = e + i * lde;
      for (int64_t t = 0; t < n; ++t) zo[t] += wi * ei[t];
    }
  }
}

// m[t] = max(max_o z[o, t], tiny) over (O, n) rows `ld` apart.
template <typename T>
void column_max(const T* z, int64_t ld, int64_t O, int64_t n, T* m) {
  const T tiny = std::numeric_limits<T>::min();
  std::fill(m, m + n, tiny);
  for (int64_t o = 0; o < O; ++o) {
    const T* zo = z + o * ld;
    for (int64_t t = 0; t < n; ++t) m[t] = std::max(m[t], zo[t]);
  }
}

// The log scale takes the log of every divisor. Their product is kept in double and its
// log taken once per column (one log instead of H + 1), and those logs once per block of
// folds by torch's vectorized log (scalar logs were most of a small layer's time); a
// product that might leave double's range is folded into `scale` first. Float divisors lie
// in [2^-126, 2^128], so up to 7 of them (`exact`) cannot leave it: that loop has no branch
// and vectorizes.
template <typename T>
void accumulate_divisor(const T* m, int64_t n, double* divisor, double* scale, bool exact) {
  if (exact) {
    for (int64_t t = 0; t < n; ++t) divisor[t] *= static_cast<double>(m[t]);
    return;
  }
  for (int64_t t = 0; t < n; ++t) {
    double d = divisor[t] * static_cast<double>(m[t]);
    if (d < 1e-280 || d > 1e280) {
      scale[t] += std::log(d);
      d = 1.0;
    }
    divisor[t] = d;
  }
}

template <typename T>
void forward_impl(const at::Tensor& x, const at::Tensor& w, at::Tensor& out, at::Tensor& zn,
                  at::Tensor& ms, at::Tensor& lo, bool save, bool watch) {
  const int64_t F = x.size(0), H = x.size(1), K = x.size(2) - 1, B = x.size(3);
  const int64_t O = w.size(2);
  const int64_t sf = x.stride(0), sh = x.stride(1);
  const bool small = O * K <= kSmallWork;
  const bool exact = sizeof(T) == sizeof(float) && H + 1 <= 7;
  const int64_t bt = std::min(B, kColumns);
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  T* op = out.data_ptr<T>();
  T* zp = save ? zn.data_ptr<T>() : nullptr;
  T* mp = save ? ms.data_ptr<T>() : nullptr;
  T* lp = watch ? lo.data_ptr<T>() : nullptr;
  const auto opts = x.options();
  at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> zbuf(H * O * bt), mh(H * bt), mx(bt), inv(bt), low(bt);
    // Per column of the block: the divisors' product and the rest of the scale.
    std::vector<double> divisors((end - begin) * B), scales((end - begin) * B);
    for (int64_t f = begin; f < end; ++f) {
      const T* xf = xp + f * sf;
      const T* wf = wp + f * H * O * K;
      T* of = op + f * (O + 1) * B;
      for (int64_t b0 = 0; b0 < B; b0 += bt) {
        const int64_t n = std::min(bt, B - b0);
        double* scale = scales.data() + (f - begin) * B + b0;
        double* divisor = divisors.data() + (f - begin) * B + b0;
        std::fill(scale, scale + n, 0.0);
        std::fill(divisor, divisor + n, 1.0);
        if (watch) std::fill(low.begin(), low.begin() + n, std::numeric_limits<T>::max());
        for (int64_t h = 0; h < H; ++h) {
          const T* e = xf + h * sh + b0;
          T* z = zbuf.data() + h * O * n;
          T* m = mh.data() + h * bt;
          dense(wf + h * O * K, e, B, O, K, n, z, small, opts);
          column_max(z, n, O, n, m);
          for (int64_t t = 0; t < n; ++t) inv[t] = T(1) / m[t];
          for (int64_t o = 0; o < O; ++o) {
            T* zo = z + o * n;
            if (watch) {
              for (int64_t t = 0; t < n; ++t) low[t] = std::min(low[t], zo[t]);
            }
            for (int64_t t = 0; t < n; ++t) zo[t] *= inv[t];
          }
          const T* s = e + K * B;
          for (int64_t t = 0; t < n; ++t) scale[t] += s[t];
          accumulate_divisor(m, n, divisor, scale, exact);
          if (save) {
            for (int64_t o = 0; o < O; ++o) {
              std::copy(z + o * n, z + (o + 1) * n, zp + ((f * H + h) * O + o) * B + b0);
            }
            std::copy(m, m + n, mp + (f * (H + 1) + h) * B + b0);
          }
        }
        // p = prod_h zn_h into the output rows, then its normalization and scale row.
        for (int64_t o = 0; o < O; ++o) {
          T* po = of + o * B + b0;
          const T* z0 = zbuf.data() + o * n;
          std::copy(z0, z0 + n, po);
          for (int64_t h = 1; h < H; ++h) {
            const T* zh = zbuf.data() + (h * O + o) * n;
            for (int64_t t = 0; t < n; ++t) po[t] *= zh[t];
          }
        }
        column_max(of + b0, B, O, n, mx.data());
        for (int64_t t = 0; t < n; ++t) inv[t] = T(1) / mx[t];
        for (int64_t o = 0; o < O; ++o) {
          T* po = of + o * B + b0;
          if (watch) {
            for (int64_t t = 0; t < n; ++t) low[t] = std::min(low[t], po[t]);
          }
          for (int64_t t = 0; t < n; ++t) po[t] *= inv[t];
        }
        accumulate_divisor(mx.data(), n, divisor, scale, exact);
        if (watch) std::copy(low.data(), low.data() + n, lp + f * B + b0);
        if (save) std::copy(mx.data(), mx.data() + n, mp + (f * (H + 1) + H) * B + b0);
      }
    }
    at::Tensor logs = at::from_blob(divisors.data(), {(end - begin) * B},
                                    at::TensorOptions().dtype(at::kDouble));
    logs.log_();
    for (int64_t f = begin; f < end; ++f) {
      T* so = op + (f * (O + 1) + O) * B;
      const double* lf = divisors.data() + (f - begin) * B;
      const double* rest = scales.data() + (f - begin) * B;
      for (int64_t t = 0; t < B; ++t) so[t] = static_cast<T>(lf[t] + rest[t]);
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& x, const at::Tensor& w, const at::Tensor& zn,
                   const at::Tensor& ms, const at::Tensor& grad, at::Tensor& gx, at::Tensor& gw,
                   bool want_x, bool want_w) {
  const int64_t F = x.size(0), H = x.size(1), K = x.size(2) - 1, B = x.size(3);
  const int64_t O = w.size(2);
  const int64_t sf = x.stride(0), sh = x.stride(1);
  const int64_t gsf = want_x ? gx.stride(0) : 0, gsh = want_x ? gx.stride(1) : 0;
  const bool small = O * K <= kSmallWork;
  const int64_t bt = std::min(B, kColumns);
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  const T* zp = zn.data_ptr<T>();
  const T* mp = ms.data_ptr<T>();
  const T* gp = grad.data_ptr<T>();
  T* gxp = want_x ? gx.data_ptr<T>() : nullptr;
  T* gwp = want_w ? gw.data_ptr<T>() : nullptr;
  const auto opts = x.options();
  at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> gbuf(O * bt), inv(bt);
    T* g = gbuf.data();
    for (int64_t f = begin; f < end; ++f) {
      const T* gf = gp + f * (O + 1) * B;
      const T* mf = mp + f * (H + 1) * B;
      const T* zf = zp + f * H * O * B;
      if (want_w) std::fill(gwp + f * H * O * K, gwp + (f + 1) * H * O * K, T(0));
      for (int64_t h = 0; h < H; ++h) {
        const T* e = xp + f * sf + h * sh;
        const T* wh = wp + (f * H + h) * O * K;
        T* de = want_x ? gxp + f * gsf + h * gsh : nullptr;
        T* dw = want_w ? gwp + (f * H + h) * O * K : nullptr;
        if (want_x) std::fill(de + K * B, de + (K + 1) * B, T(0));  // scale rows: none
        for (int64_t b0 = 0; b0 < B; b0 += bt) {
          const int64_t n = std::min(bt, B - b0);
          for (int64_t t = 0; t < n; ++t) inv[t] = T(1) / (mf[H * B + b0 + t] * mf[h * B + b0 + t]);
          for (int64_t o = 0; o < O; ++o) {
            T* go = g + o * n;
            const T* gi = gf + o * B + b0;
            for (int64_t t = 0; t < n; ++t) go[t] = gi[t] * inv[t];
            for (int64_t h2 = 0; h2 < H; ++h2) {
              if (h2 == h) continue;
              const T* z = zf + (h2 * O + o) * B + b0;
              for (int64_t t = 0; t < n; ++t) go[t] *= z[t];
            }
          }
          if (small) {
            if (want_x) {
              for (int64_t i = 0; i < K; ++i) {
                T* di = de + i * B + b0;
                std::fill(di, di + n, T(0));
                for (int64_t o = 0; o < O; ++o) {
                  const T wv = wh[o * K + i];
                  const T* go = g + o * n;
                  for (int64_t t = 0; t < n; ++t) di[t] += wv * go[t];
                }
              }
            }
            if (want_w) {
              for (int64_t o = 0; o < O; ++o) {
                const T* go = g + o * n;
                for (int64_t i = 0; i < K; ++i) {
                  const T* ei = e + i * B + b0;
                  T acc = 0;
                  for (int64_t t = 0; t < n; ++t) acc += go[t] * ei[t];
                  dw[o * K + i] += acc;
                }
              }
            }
          } else {
            at::Tensor gt = at::from_blob(g, {O, n}, opts);
            if (want_x) {
              at::Tensor dt = at::from_blob(de + b0, {K, n}, {B, 1}, opts);
              at::mm_out(dt, at::from_blob(const_cast<T*>(wh), {O, K}, opts).t(), gt);
            }
            if (want_w) {
              at::Tensor et = at::from_blob(const_cast<T*>(e + b0), {K, n}, {B, 1}, opts);
              at::from_blob(dw, {O, K}, opts).addmm_(gt, et.t());
            }
          }
        }
      }
    }
  });
}

void check(const at::Tensor& x, const at::Tensor& w) {
  cirkit_ir_native::check_packed_input("cp", x, w);
  TORCH_CHECK(w.is_contiguous(), "cp: w must be contiguous");
  TORCH_CHECK(w.dim() == 4 && w.size(0) == x.size(0) && w.size(1) == x.size(1) &&
                  w.size(3) == x.size(2) - 1,
              "cp: w must be (F, H, O, K)");
}

}  // namespace

// Returns (out (F, O + 1, B), zn (F, H, O, B), ms (F, H + 1, B), lo (F, B)): zn and ms
// (the per-input normalized sums, their divisors and the product's) only with `save`, lo
// (each column's smallest raw sum or product, for the underflow watch) only with `watch`;
// else undefined.
std::vector<at::Tensor> cp_forward(const at::Tensor& x, const at::Tensor& w, bool save,
                                   bool watch) {
  check(x, w);
  const int64_t F = x.size(0), H = x.size(1), B = x.size(3), O = w.size(2);
  at::Tensor out = at::empty({F, O + 1, B}, x.options());
  at::Tensor zn = save ? at::empty({F, H, O, B}, x.options()) : at::Tensor();
  at::Tensor ms = save ? at::empty({F, H + 1, B}, x.options()) : at::Tensor();
  at::Tensor lo = watch ? at::empty({F, B}, x.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cp_forward",
                             [&] { forward_impl<scalar_t>(x, w, out, zn, ms, lo, save, watch); });
  return {out, zn, ms, lo};
}

// Returns (grad_x in x's layout or undefined, grad_w (F, H, O, K) or undefined).
std::vector<at::Tensor> cp_backward(const at::Tensor& x, const at::Tensor& w,
                                    const at::Tensor& zn, const at::Tensor& ms,
                                    const at::Tensor& grad, bool want_x, bool want_w) {
  check(x, w);
  at::Tensor g = grad.contiguous();
  at::Tensor gx = want_x ? cirkit_ir_native::packed_like(x) : at::Tensor();
  at::Tensor gw = want_w ? at::empty_like(w) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cp_backward", [&] {
    backward_impl<scalar_t>(x, w, zn, ms, g, gx, gw, want_x, want_w);
  });
  return {gx, gw};
}

// Registered as torch ops (torch.ops.cirkit_ir_native.*), not pybind functions: every
// source of the one extension may add its own fragment, where only one may define the
// Python module.
TORCH_LIBRARY_FRAGMENT(cirkit_ir_native, module) {
  module.def("cp_forward", &cp_forward);
  module.def("cp_backward", &cp_backward);
}
