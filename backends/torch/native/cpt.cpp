// The fused CP-T layer (the inputs' Hadamard product, then a dense sum) in the packed
// lse-sum form (see semirings.py), CPU; with one input it is the dense layer.
//
// x (F, H, K + 1, B): per fold H inputs of K linear values plus a log-scale row s_h. The
//   last two axes are contiguous; folds and inputs may have any stride (a fold gather's).
// w (F, O, K): linear weights, or with `logits` their logits: w = softmax(w, -1) is then
//   computed per fold inside the loop, so the normalized weights never exist as a tensor.
// forward: p = prod_h e_h (normalized inputs: p <= 1), y = w p, M = max(max_o y, tiny),
//          out = [y / M ; log M + sum_h s_h].
// backward (M and the scale rows constants, see semirings): g = dout / M, dw = g p^T,
//          dp = w^T g, de_h = dp prod_{h' != h} e_h', and through the softmax
//          dlogits[o, k] = w[o, k] (dw[o, k] - sum_k' w[o, k'] dw[o, k']).
// Per fold and tile of batch columns: the product exists only for the tile; small layers
// (O * K <= 512) contract with plain loops over the batch, larger ones with one GEMM.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "rows.h"

namespace {

using cirkit_ir_native::softmax_rows;
using cirkit_ir_native::softmax_rows_backward;

constexpr int64_t kColumns = 256;    // batch columns per tile
constexpr int64_t kSmallWork = 512;  // O * K up to this: plain loops

// p (K, n) = prod_h e_h over the tile; skip = h leaves input h out (-1: none).
template <typename T>
void hadamard(const T* xf, int64_t sh, int64_t H, int64_t K, int64_t B, int64_t b0,
              int64_t n, int64_t skip, T* p) {
  for (int64_t k = 0; k < K; ++k) {
    T* pk = p + k * n;
    std::fill(pk, pk + n, T(1));
    for (int64_t h = 0; h < H; ++h) {
      if (h == skip) continue;
      const T* e = xf + h * sh + k * B + b0;
      for (int64_t t = 0; t < n; ++t) pk[t] *= e[t];
    }
  }
}

template <typename T>
void forward_impl(const at::Tensor& x, const at::Tensor& w, bool logits, at::Tensor& out,
                  at::Tensor& ms, at::Tensor& lo) {
  const int64_t F = x.size(0), H = x.size(1), K = x.size(2) - 1, B = x.size(3);
  const int64_t O = w.size(1);
  const int64_t sf = x.stride(0), sh = x.stride(1);
  const int64_t bt = std::min(B, kColumns);
  const bool small = O * K <= kSmallWork;
  const bool save = ms.defined(), watch = lo.defined();
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  T* op = out.data_ptr<T>();
  T* mp = save ? ms.data_ptr<T>() : nullptr;
  T* lp = watch ? lo.data_ptr<T>() : nullptr;
  const T tiny = std::numeric_limits<T>::min();
  const auto opts = x.options();
  at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> wf(O * K), p(K * bt), mxs((end - begin) * B), inv(bt), low(bt);
    for (int64_t f = begin; f < end; ++f) {
      const T* xf = xp + f * sf;
      T* of = op + f * (O + 1) * B;
      softmax_rows(wp + f * O * K, O, K, logits, wf.data());
      for (int64_t b0 = 0; b0 < B; b0 += bt) {
        const int64_t n = std::min(bt, B - b0);
        T* mx = mxs.data() + (f - begin) * B + b0;
        hadamard(xf, sh, H, K, B, b0, n, -1, p.data());
        if (small) {
          for (int64_t o = 0; o < O; ++o) {
            T* y = of + o * B + b0;
            std::fill(y, y + n, T(0));
            for (int64_t k = 0; k < K; ++k) {
              const T wv = wf[o * K + k];
              const T* pk = p.data() + k * n;
              for (int64_t t = 0; t < n; ++t) y[t] += wv * pk[t];
            }
          }
        } else {
          at::Tensor yt = at::from_blob(of + b0, {O, n}, {B, 1}, opts);
          at::mm_out(yt, at::from_blob(wf.data(), {O, K}, opts),
                     at::from_blob(p.data(), {K, n}, opts));
        }
        std::fill(mx, mx + n, tiny);
        if (watch) std::fill(low.begin(), low.begin() + n, std::numeric_limits<T>::max());
        for (int64_t o = 0; o < O; ++o) {
          const T* y = of + o * B + b0;
          for (int64_t t = 0; t < n; ++t) mx[t] = std::max(mx[t], y[t]);
          if (watch) {
            for (int64_t t = 0; t < n; ++t) low[t] = std::min(low[t], y[t]);
          }
        }
        for (int64_t t = 0; t < n; ++t) inv[t] = T(1) / mx[t];
        for (int64_t o = 0; o < O; ++o) {
          T* y = of + o * B + b0;
          for (int64_t t = 0; t < n; ++t) y[t] *= inv[t];
        }
        if (save) std::copy(mx, mx + n, mp + f * B + b0);
        if (watch) std::copy(low.data(), low.data() + n, lp + f * B + b0);
      }
    }
    // The scale rows: log M + sum_h s_h, the logs by one call of torch's vectorized log
    // for the block (scalar logs were much of a small layer's time).
    at::from_blob(mxs.data(), {(end - begin) * B}, opts).log_();
    for (int64_t f = begin; f < end; ++f) {
      const T* xf = xp + f * sf;
      T* so = op + (f * (O + 1) + O) * B;
      std::copy(mxs.data() + (f - begin) * B, mxs.data() + (f - begin + 1) * B, so);
      for (int64_t h = 0; h < H; ++h) {
        const T* s = xf + h * sh + K * B;
        for (int64_t t = 0; t < B; ++t) so[t] += s[t];
      }
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& x, const at::Tensor& w, bool logits, const at::Tensor& ms,
                   const at::Tensor& grad, at::Tensor& gx, at::Tensor& gw) {
  const int64_t F = x.size(0), H = x.size(1), K = x.size(2) - 1, B = x.size(3);
  const int64_t O = w.size(1);
  const int64_t sf = x.stride(0), sh = x.stride(1);
  const bool want_x = gx.defined(), want_w = gw.defined();
  const int64_t gsf = want_x ? gx.stride(0) : 0, gsh = want_x ? gx.stride(1) : 0;
  const int64_t bt = std::min(B, kColumns);
  const bool small = O * K <= kSmallWork;
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  const T* mp = ms.data_ptr<T>();
  const T* gp = grad.data_ptr<T>();
  T* gxp = want_x ? gx.data_ptr<T>() : nullptr;
  T* gwp = want_w ? gw.data_ptr<T>() : nullptr;
  const auto opts = x.options();
  at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> wf(O * K), dw(O * K), g(O * bt), p(K * bt), dp(K * bt), inv(bt);
    for (int64_t f = begin; f < end; ++f) {
      const T* xf = xp + f * sf;
      const T* gf = gp + f * (O + 1) * B;
      softmax_rows(wp + f * O * K, O, K, logits, wf.data());
      std::fill(dw.begin(), dw.end(), T(0));
      if (want_x) {
        for (int64_t h = 0; h < H; ++h) {
          T* sx = gxp + f * gsf + h * gsh + K * B;
          std::fill(sx, sx + B, T(0));  // the scale rows: no gradient
        }
      }
      for (int64_t b0 = 0; b0 < B; b0 += bt) {
        const int64_t n = std::min(bt, B - b0);
        for (int64_t t = 0; t < n; ++t) inv[t] = T(1) / mp[f * B + b0 + t];
        for (int64_t o = 0; o < O; ++o) {
          const T* gi = gf + o * B + b0;
          T* go = g.data() + o * n;
          for (int64_t t = 0; t < n; ++t) go[t] = gi[t] * inv[t];
        }
        if (want_w) {
          hadamard(xf, sh, H, K, B, b0, n, -1, p.data());
          if (small) {
            for (int64_t o = 0; o < O; ++o) {
              const T* go = g.data() + o * n;
              for (int64_t k = 0; k < K; ++k) {
                const T* pk = p.data() + k * n;
                T acc = 0;
                for (int64_t t = 0; t < n; ++t) acc += go[t] * pk[t];
                dw[o * K + k] += acc;
              }
            }
          } else {
            at::from_blob(dw.data(), {O, K}, opts)
                .addmm_(at::from_blob(g.data(), {O, n}, opts),
                        at::from_blob(p.data(), {K, n}, opts).t());
          }
        }
        if (want_x) {
          if (small) {
            for (int64_t k = 0; k < K; ++k) {
              T* dk = dp.data() + k * n;
              std::fill(dk, dk + n, T(0));
              for (int64_t o = 0; o < O; ++o) {
                const T wv = wf[o * K + k];
                const T* go = g.data() + o * n;
                for (int64_t t = 0; t < n; ++t) dk[t] += wv * go[t];
              }
            }
          } else {
            at::Tensor dt = at::from_blob(dp.data(), {K, n}, opts);
            at::mm_out(dt, at::from_blob(wf.data(), {O, K}, opts).t(),
                       at::from_blob(g.data(), {O, n}, opts));
          }
          for (int64_t h = 0; h < H; ++h) {
            hadamard(xf, sh, H, K, B, b0, n, h, p.data());
            for (int64_t k = 0; k < K; ++k) {
              T* de = gxp + f * gsf + h * gsh + k * B + b0;
              const T* pk = p.data() + k * n;
              const T* dk = dp.data() + k * n;
              for (int64_t t = 0; t < n; ++t) de[t] = dk[t] * pk[t];
            }
          }
        }
      }
      if (want_w) softmax_rows_backward(wf.data(), dw.data(), O, K, logits, gwp + f * O * K);
    }
  });
}

void check(const at::Tensor& x, const at::Tensor& w) {
  cirkit_ir_native::check_packed_input("cpt", x, w);
  TORCH_CHECK(w.is_contiguous() && w.dim() == 3 && w.size(0) == x.size(0) &&
                  w.size(2) == x.size(2) - 1,
              "cpt: w must be contiguous (F, O, K)");
}

}  // namespace

// Returns (out (F, O + 1, B), ms (F, B) with `save`, lo (F, B) with `watch`: each column's
// divisor M, and its smallest raw sum for the underflow watch; else undefined).
std::vector<at::Tensor> cpt_forward(const at::Tensor& x, const at::Tensor& w, bool logits,
                                    bool save, bool watch) {
  check(x, w);
  const int64_t F = x.size(0), B = x.size(3), O = w.size(1);
  at::Tensor out = at::empty({F, O + 1, B}, x.options());
  at::Tensor ms = save ? at::empty({F, B}, x.options()) : at::Tensor();
  at::Tensor lo = watch ? at::empty({F, B}, x.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cpt_forward",
                             [&] { forward_impl<scalar_t>(x, w, logits, out, ms, lo); });
  return {out, ms, lo};
}

// Returns (grad_x in x's layout or undefined, grad_w (F, O, K) or undefined: the logits'
// gradient with `logits`).
std::vector<at::Tensor> cpt_backward(const at::Tensor& x, const at::Tensor& w, bool logits,
                                     const at::Tensor& ms, const at::Tensor& grad, bool want_x,
                                     bool want_w) {
  check(x, w);
  at::Tensor g = grad.contiguous();
  at::Tensor gx = want_x ? cirkit_ir_native::packed_like(x) : at::Tensor();
  at::Tensor gw = want_w ? at::empty_like(w) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cpt_backward", [&] {
    backward_impl<scalar_t>(x, w, logits, ms, g, gx, gw);
  });
  return {gx, gw};
}

// Torch ops (torch.ops.cirkit_ir_native.*): see cp.cpp.
TORCH_LIBRARY_FRAGMENT(cirkit_ir_native, module) {
  module.def("cpt_forward", &cpt_forward);
  module.def("cpt_backward", &cpt_backward);
}
