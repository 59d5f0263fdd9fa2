// The fused binary Tucker layer in the packed lse-sum form (see semirings.py), CPU.
//
// x (F, 2, K + 1, B): per fold two inputs a, c of K linear values plus a log-scale row.
// w (F, O, K * K): linear weights, w[o, i * K + j] multiplies a[i] c[j].
// forward: y = w (a (x) c), m = max(max_o y, tiny), out = [y / m ; log m + s_a + s_c].
//
// The outer product exists only one tile of batch columns at a time (sized to stay in
// cache) and feeds one GEMM; the normalization reads the GEMM's tile while it is hot.
// Small layers (few units) skip the GEMM for plain loops over the batch, which vectorize.
// The backward forms P = w^T g once per tile and derives both inputs' gradients from it:
// da[i] = sum_j P[i, j] c[j], dc[j] = sum_i P[i, j] a[i]; dw = g (a (x) c)^T.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

constexpr int64_t kTileBytes = 192 * 1024;  // one outer-product tile
constexpr int64_t kSmallWork = 4096;        // O * K * K below this: plain loops

int64_t tile_columns(int64_t rows, int64_t batch, int64_t elem) {
  int64_t t = kTileBytes / std::max<int64_t>(1, rows * elem);
  t = std::max<int64_t>(32, (t / 16) * 16);
  return std::min(t, batch);
}

// y[o, t] for t < n, small layers: y[o] = sum_i a[i] * (sum_j w[o, i, j] c[j]).
template <typename T>
void small_contract(const T* w, const T* a, const T* c, int64_t ldx, int64_t K, int64_t O,
                    int64_t n, T* y, T* tmp) {
  for (int64_t o = 0; o < O; ++o) {
    T* yo = y + o * n;
    std::fill(yo, yo + n, T(0));
    for (int64_t i = 0; i < K; ++i) {
      std::fill(tmp, tmp + n, T(0));
      const T* wi = w + (o * K + i) * K;
      for (int64_t j = 0; j < K; ++j) {
        const T wj = wi[j];
        const T* cj = c + j * ldx;
        for (int64_t t = 0; t < n; ++t) tmp[t] += wj * cj[t];
      }
      const T* ai = a + i * ldx;
      for (int64_t t = 0; t < n; ++t) yo[t] += ai[t] * tmp[t];
    }
  }
}

template <typename T, typename U>
void build_outer(const T* a, const T* c, int64_t ldx, int64_t K, int64_t n, U* buf) {
  for (int64_t i = 0; i < K; ++i) {
    const T* ai = a + i * ldx;
    for (int64_t j = 0; j < K; ++j) {
      const T* cj = c + j * ldx;
      U* row = buf + (i * K + j) * n;
      for (int64_t t = 0; t < n; ++t) row[t] = static_cast<U>(ai[t] * cj[t]);
    }
  }
}

template <typename T>
void forward_impl(const at::Tensor& x, const at::Tensor& w, const at::Tensor& wlow,
                  at::Tensor& out, at::Tensor& m) {
  const int64_t F = x.size(0), K = x.size(2) - 1, B = x.size(3), O = w.size(1);
  const int64_t KK = K * K;
  const bool small = O * KK <= kSmallWork && !wlow.defined();
  const bool low = wlow.defined();
  const int64_t lowsize = low ? wlow.element_size() : sizeof(T);
  const int64_t bt = small ? std::min<int64_t>(B, 256) : tile_columns(KK, B, lowsize);
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  T* op = out.data_ptr<T>();
  T* mp = m.data_ptr<T>();
  const T tiny = std::numeric_limits<T>::min();
  const auto opts = x.options();
  at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
    at::Tensor ybuf = at::empty({O, bt}, opts);
    at::Tensor obuf = small ? at::empty({bt}, opts)
                            : at::empty({KK, bt}, low ? wlow.options() : opts);
    T* yb = ybuf.data_ptr<T>();
    for (int64_t f = begin; f < end; ++f) {
      const T* a = xp + f * 2 * (K + 1) * B;
      const T* c = a + (K + 1) * B;
      const T* wf = wp + f * O * KK;
      T* of = op + f * (O + 1) * B;
      for (int64_t b0 = 0; b0 < B; b0 += bt) {
        const int64_t n = std::min(bt, B - b0);
        if (small) {
          small_contract(wf, a + b0, c + b0, B, K, O, n, yb, obuf.data_ptr<T>());
        } else {
          if (low) {
            build_outer(a + b0, c + b0, B, K, n, obuf.data_ptr<at::BFloat16>());
            at::Tensor tile = at::from_blob(obuf.data_ptr<at::BFloat16>(), {KK, n},
                                            wlow.options());
            at::from_blob(yb, {O, n}, opts).copy_(at::mm(wlow[f], tile));
          } else {
            build_outer(a + b0, c + b0, B, K, n, obuf.data_ptr<T>());
            at::Tensor wt = at::from_blob(const_cast<T*>(wf), {O, KK}, opts);
            at::Tensor yv = at::from_blob(yb, {O, n}, opts);
            at::mm_out(yv, wt, at::from_blob(obuf.data_ptr<T>(), {KK, n}, opts));
          }
        }
        // The column maxima, the normalized values and the scale row.
        T* mx = mp + f * B + b0;
        for (int64_t t = 0; t < n; ++t) mx[t] = tiny;
        for (int64_t o = 0; o < O; ++o) {
          const T* yo = yb + o * n;
          for (int64_t t = 0; t < n; ++t) mx[t] = std::max(mx[t], yo[t]);
        }
        for (int64_t o = 0; o < O; ++o) {
          const T* yo = yb + o * n;
          T* oo = of + o * B + b0;
          for (int64_t t = 0; t < n; ++t) oo[t] = yo[t] / mx[t];
        }
        const T* sa = a + K * B + b0;
        const T* sc = c + K * B + b0;
        T* so = of + O * B + b0;
        for (int64_t t = 0; t < n; ++t) so[t] = std::log(mx[t]) + sa[t] + sc[t];
      }
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& x, const at::Tensor& w, const at::Tensor& m,
                   const at::Tensor& grad, at::Tensor& gx, at::Tensor& gw, bool want_x,
                   bool want_w) {
  const int64_t F = x.size(0), K = x.size(2) - 1, B = x.size(3), O = w.size(1);
  const int64_t KK = K * K;
  const int64_t bt = tile_columns(KK, B, sizeof(T));
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  const T* mp = m.data_ptr<T>();
  const T* gp = grad.data_ptr<T>();
  T* gxp = want_x ? gx.data_ptr<T>() : nullptr;
  const auto opts = x.options();
  at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
    at::Tensor gbuf = at::empty({O, bt}, opts);
    at::Tensor pbuf = at::empty({KK, bt}, opts);
    at::Tensor obuf = want_w ? at::empty({KK, bt}, opts) : at::Tensor();
    T* g = gbuf.data_ptr<T>();
    T* P = pbuf.data_ptr<T>();
    for (int64_t f = begin; f < end; ++f) {
      const T* a = xp + f * 2 * (K + 1) * B;
      const T* c = a + (K + 1) * B;
      at::Tensor wt = at::from_blob(const_cast<T*>(wp + f * O * KK), {O, KK}, opts);
      const T* gf = gp + f * (O + 1) * B;
      const T* mf = mp + f * B;
      at::Tensor gwf = want_w ? gw[f] : at::Tensor();
      if (want_w) gwf.zero_();
      T* da = want_x ? gxp + f * 2 * (K + 1) * B : nullptr;
      T* dc = want_x ? da + (K + 1) * B : nullptr;
      if (want_x) {
        std::fill(da + K * B, da + (K + 1) * B, T(0));
        std::fill(dc + K * B, dc + (K + 1) * B, T(0));
      }
      for (int64_t b0 = 0; b0 < B; b0 += bt) {
        const int64_t n = std::min(bt, B - b0);
        for (int64_t o = 0; o < O; ++o) {
          const T* go = gf + o * B + b0;
          T* g_o = g + o * n;
          for (int64_t t = 0; t < n; ++t) g_o[t] = go[t] / mf[b0 + t];
        }
        at::Tensor gt = at::from_blob(g, {O, n}, opts);
        if (want_x) {
          at::Tensor pt = at::from_blob(P, {KK, n}, opts);
          at::mm_out(pt, wt.t(), gt);  // P = w^T g, once for both inputs
          for (int64_t i = 0; i < K; ++i) {
            T* dai = da + i * B + b0;
            std::fill(dai, dai + n, T(0));
          }
          for (int64_t j = 0; j < K; ++j) {
            T* dcj = dc + j * B + b0;
            std::fill(dcj, dcj + n, T(0));
          }
          for (int64_t i = 0; i < K; ++i) {
            const T* ai = a + i * B + b0;
            T* dai = da + i * B + b0;
            for (int64_t j = 0; j < K; ++j) {
              const T* pij = P + (i * K + j) * n;
              const T* cj = c + j * B + b0;
              T* dcj = dc + j * B + b0;
              for (int64_t t = 0; t < n; ++t) {
                dai[t] += pij[t] * cj[t];
                dcj[t] += pij[t] * ai[t];
              }
            }
          }
        }
        if (want_w) {
          build_outer(a + b0, c + b0, B, K, n, obuf.data_ptr<T>());
          at::Tensor ot = at::from_blob(obuf.data_ptr<T>(), {KK, n}, opts);
          gwf.addmm_(gt, ot.t());
        }
      }
    }
  });
}

void check(const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(x.device().is_cpu() && w.device().is_cpu(), "tucker2: CPU tensors only");
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 2, "tucker2: x must be (F, 2, K + 1, B)");
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous(), "tucker2: contiguous tensors only");
  const int64_t K = x.size(2) - 1;
  TORCH_CHECK(w.dim() == 3 && w.size(0) == x.size(0) && w.size(2) == K * K,
              "tucker2: w must be (F, O, K * K)");
  TORCH_CHECK(x.scalar_type() == w.scalar_type(), "tucker2: x and w differ in dtype");
}

}  // namespace

// Returns (out (F, O + 1, B), m (F, 1, B)). `wlow`, when defined, is w in bfloat16: the
// contraction then multiplies in bfloat16 (the normalization stays in x's dtype).
std::vector<at::Tensor> tucker2_forward(const at::Tensor& x, const at::Tensor& w,
                                        const c10::optional<at::Tensor>& wlow) {
  check(x, w);
  at::Tensor out = at::empty({x.size(0), w.size(1) + 1, x.size(3)}, x.options());
  at::Tensor m = at::empty({x.size(0), 1, x.size(3)}, x.options());
  at::Tensor low = wlow.has_value() ? wlow->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "tucker2_forward",
                             [&] { forward_impl<scalar_t>(x, w, low, out, m); });
  return {out, m};
}

// Returns (grad_x (F, 2, K + 1, B) or undefined, grad_w (F, O, K * K) or undefined).
std::vector<at::Tensor> tucker2_backward(const at::Tensor& x, const at::Tensor& w,
                                         const at::Tensor& m, const at::Tensor& grad,
                                         bool want_x, bool want_w) {
  check(x, w);
  at::Tensor g = grad.contiguous();
  at::Tensor gx = want_x ? at::empty_like(x) : at::Tensor();
  at::Tensor gw = want_w ? at::empty_like(w) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "tucker2_backward", [&] {
    backward_impl<scalar_t>(x, w, m, g, gx, gw, want_x, want_w);
  });
  return {gx, gw};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("tucker2_forward", &tucker2_forward, "fused binary Tucker layer, packed lse-sum");
  module.def("tucker2_backward", &tucker2_backward, "its backward");
}
