// The fused mixing layer (a weighted sum over the inputs, unit by unit) in the packed
// lse-sum form (see semirings.py), CPU.
//
// x (F, H, K + 1, B): per fold H inputs of K linear values plus a log-scale row s_h. The
//   last two axes are contiguous; folds and inputs may have any stride (a fold gather's).
// w (F, K, H): linear weights, or with `logits` their logits: w = softmax(w, -1) is then
//   computed per fold inside the loop, so the normalized weights never exist as a tensor.
// forward: top = max_h s_h, c_h = exp(s_h - top) (each input brought to the largest scale),
//          y[k] = sum_h w[k, h] c_h e_h[k], M = max(max_k y, tiny),
//          out = [y / M ; log M + top].
// backward (M, top and the scale rows constants, see semirings): gy = dout / M,
//          de_h[k] = w[k, h] c_h gy[k], dw[k, h] = sum_b c_h e_h[k] gy[k], and through the
//          softmax dlogits[k, h] = w[k, h] (dw[k, h] - sum_h' w[k, h'] dw[k, h']).
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

constexpr int64_t kColumns = 512;  // batch columns per tile

// n values at p as a tensor, for torch's vectorized elementwise functions.
template <typename T>
at::Tensor flat(T* p, int64_t n) {
  return at::from_blob(p, {n}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

// For folds begin..end-1: top[f, t] = max_h s_h[t], c[f, h, t] = exp(s_h[t] - top[t]), the
// exps by one call of torch's vectorized exp (scalar exps were most of a small layer's time).
template <typename T>
void block_scales(const T* xp, int64_t sf, int64_t sh, int64_t H, int64_t K, int64_t B,
                  int64_t begin, int64_t end, T* top, T* c) {
  for (int64_t f = begin; f < end; ++f) {
    const T* xf = xp + f * sf;
    T* tf = top + (f - begin) * B;
    T* cf = c + (f - begin) * H * B;
    const T* s0 = xf + K * B;
    std::copy(s0, s0 + B, tf);
    for (int64_t h = 1; h < H; ++h) {
      const T* s = xf + h * sh + K * B;
      for (int64_t t = 0; t < B; ++t) tf[t] = std::max(tf[t], s[t]);
    }
    for (int64_t h = 0; h < H; ++h) {
      const T* s = xf + h * sh + K * B;
      for (int64_t t = 0; t < B; ++t) cf[h * B + t] = s[t] - tf[t];
    }
  }
  flat(c, (end - begin) * H * B).exp_();
}

template <typename T>
void forward_impl(const at::Tensor& x, const at::Tensor& w, bool logits, at::Tensor& out,
                  at::Tensor& ms, at::Tensor& lo) {
  const int64_t F = x.size(0), H = x.size(1), K = x.size(2) - 1, B = x.size(3);
  const int64_t sf = x.stride(0), sh = x.stride(1);
  const int64_t bt = std::min(B, kColumns);
  const bool save = ms.defined(), watch = lo.defined();
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  T* op = out.data_ptr<T>();
  T* mp = save ? ms.data_ptr<T>() : nullptr;
  T* lp = watch ? lo.data_ptr<T>() : nullptr;
  const T tiny = std::numeric_limits<T>::min();
  at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> wf(K * H), top((end - begin) * B), c((end - begin) * H * B);
    std::vector<T> mxs((end - begin) * B), inv(bt), low(bt);
    block_scales(xp, sf, sh, H, K, B, begin, end, top.data(), c.data());
    for (int64_t f = begin; f < end; ++f) {
      const T* xf = xp + f * sf;
      T* of = op + f * (K + 1) * B;
      softmax_rows(wp + f * K * H, K, H, logits, wf.data());
      for (int64_t b0 = 0; b0 < B; b0 += bt) {
        const int64_t n = std::min(bt, B - b0);
        const T* cb = c.data() + (f - begin) * H * B + b0;  // c_h at cb + h * B
        T* mx = mxs.data() + (f - begin) * B + b0;
        std::fill(mx, mx + n, tiny);
        if (watch) std::fill(low.begin(), low.begin() + n, std::numeric_limits<T>::max());
        for (int64_t k = 0; k < K; ++k) {
          T* y = of + k * B + b0;
          std::fill(y, y + n, T(0));
          for (int64_t h = 0; h < H; ++h) {
            const T wv = wf[k * H + h];
            const T* ch = cb + h * B;
            const T* e = xf + h * sh + k * B + b0;
            for (int64_t t = 0; t < n; ++t) y[t] += wv * ch[t] * e[t];
          }
          for (int64_t t = 0; t < n; ++t) mx[t] = std::max(mx[t], y[t]);
          if (watch) {
            for (int64_t t = 0; t < n; ++t) low[t] = std::min(low[t], y[t]);
          }
        }
        for (int64_t t = 0; t < n; ++t) inv[t] = T(1) / mx[t];
        for (int64_t k = 0; k < K; ++k) {
          T* y = of + k * B + b0;
          for (int64_t t = 0; t < n; ++t) y[t] *= inv[t];
        }
        if (save) std::copy(mx, mx + n, mp + f * B + b0);
        if (watch) std::copy(low.data(), low.data() + n, lp + f * B + b0);
      }
    }
    // The scale rows: log M + top, the logs by one vectorized call for the block.
    flat(mxs.data(), (end - begin) * B).log_();
    for (int64_t f = begin; f < end; ++f) {
      T* so = op + (f * (K + 1) + K) * B;
      const T* lf = mxs.data() + (f - begin) * B;
      const T* tf = top.data() + (f - begin) * B;
      for (int64_t t = 0; t < B; ++t) so[t] = lf[t] + tf[t];
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& x, const at::Tensor& w, bool logits, const at::Tensor& ms,
                   const at::Tensor& grad, at::Tensor& gx, at::Tensor& gw) {
  const int64_t F = x.size(0), H = x.size(1), K = x.size(2) - 1, B = x.size(3);
  const int64_t sf = x.stride(0), sh = x.stride(1);
  const bool want_x = gx.defined(), want_w = gw.defined();
  const int64_t gsf = want_x ? gx.stride(0) : 0, gsh = want_x ? gx.stride(1) : 0;
  const int64_t bt = std::min(B, kColumns);
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  const T* mp = ms.data_ptr<T>();
  const T* gp = grad.data_ptr<T>();
  T* gxp = want_x ? gx.data_ptr<T>() : nullptr;
  T* gwp = want_w ? gw.data_ptr<T>() : nullptr;
  at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> wf(K * H), dw(K * H), top((end - begin) * B), c((end - begin) * H * B);
    std::vector<T> inv(bt), gy(bt);
    block_scales(xp, sf, sh, H, K, B, begin, end, top.data(), c.data());
    for (int64_t f = begin; f < end; ++f) {
      const T* xf = xp + f * sf;
      const T* gf = gp + f * (K + 1) * B;
      softmax_rows(wp + f * K * H, K, H, logits, wf.data());
      std::fill(dw.begin(), dw.end(), T(0));
      if (want_x) {
        for (int64_t h = 0; h < H; ++h) {
          T* sx = gxp + f * gsf + h * gsh + K * B;
          std::fill(sx, sx + B, T(0));  // the scale rows: no gradient
        }
      }
      for (int64_t b0 = 0; b0 < B; b0 += bt) {
        const int64_t n = std::min(bt, B - b0);
        const T* cb = c.data() + (f - begin) * H * B + b0;  // c_h at cb + h * B
        for (int64_t t = 0; t < n; ++t) inv[t] = T(1) / mp[f * B + b0 + t];
        for (int64_t k = 0; k < K; ++k) {
          const T* g = gf + k * B + b0;
          for (int64_t t = 0; t < n; ++t) gy[t] = g[t] * inv[t];
          for (int64_t h = 0; h < H; ++h) {
            const T* ch = cb + h * B;
            if (want_x) {
              T* de = gxp + f * gsf + h * gsh + k * B + b0;
              const T wv = wf[k * H + h];
              for (int64_t t = 0; t < n; ++t) de[t] = wv * ch[t] * gy[t];
            }
            if (want_w) {
              const T* e = xf + h * sh + k * B + b0;
              T acc = 0;
              for (int64_t t = 0; t < n; ++t) acc += ch[t] * e[t] * gy[t];
              dw[k * H + h] += acc;
            }
          }
        }
      }
      if (want_w) softmax_rows_backward(wf.data(), dw.data(), K, H, logits, gwp + f * K * H);
    }
  });
}

void check(const at::Tensor& x, const at::Tensor& w) {
  cirkit_ir_native::check_packed_input("mixing", x, w);
  TORCH_CHECK(w.is_contiguous() && w.dim() == 3 && w.size(0) == x.size(0) &&
                  w.size(1) == x.size(2) - 1 && w.size(2) == x.size(1),
              "mixing: w must be contiguous (F, K, H)");
}

}  // namespace

// Returns (out (F, K + 1, B), ms (F, B) with `save`, lo (F, B) with `watch`: each column's
// divisor M, and its smallest raw sum for the underflow watch; else undefined).
std::vector<at::Tensor> mixing_forward(const at::Tensor& x, const at::Tensor& w, bool logits,
                                       bool save, bool watch) {
  check(x, w);
  const int64_t F = x.size(0), K = x.size(2) - 1, B = x.size(3);
  at::Tensor out = at::empty({F, K + 1, B}, x.options());
  at::Tensor ms = save ? at::empty({F, B}, x.options()) : at::Tensor();
  at::Tensor lo = watch ? at::empty({F, B}, x.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mixing_forward",
                             [&] { forward_impl<scalar_t>(x, w, logits, out, ms, lo); });
  return {out, ms, lo};
}

// Returns (grad_x in x's layout or undefined, grad_w (F, K, H) or undefined: the logits'
// gradient with `logits`).
std::vector<at::Tensor> mixing_backward(const at::Tensor& x, const at::Tensor& w, bool logits,
                                        const at::Tensor& ms, const at::Tensor& grad,
                                        bool want_x, bool want_w) {
  check(x, w);
  at::Tensor g = grad.contiguous();
  at::Tensor gx = want_x ? cirkit_ir_native::packed_like(x) : at::Tensor();
  at::Tensor gw = want_w ? at::empty_like(w) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mixing_backward", [&] {
    backward_impl<scalar_t>(x, w, logits, ms, g, gx, gw);
  });
  return {gx, gw};
}

// Torch ops (torch.ops.cirkit_ir_native.*): see cp.cpp.
TORCH_LIBRARY_FRAGMENT(cirkit_ir_native, module) {
  module.def("mixing_forward", &mixing_forward);
  module.def("mixing_backward", &mixing_backward);
}
