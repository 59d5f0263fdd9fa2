// The binary Tucker layer in max-sum (MAP), CPU: its upward max and its top-down argmax.
//
// x (F, 2, K, B): per fold the logs of two inputs a, c (any strides over F and the two); w (F, O, K * K): log weights,
// w[o, i * K + j] weighs a[i] + c[j].
// up:   out[f, o, b] = max_{i, j} w[f, o, i * K + j] + (a[i, b] + c[j, b]);
// down: (i, j) of the first i * K + j attaining that max for o = units[f, b] (-1: none).
// Both add in that order, (a + c) first and then w, so that their values and the indices
// they pick are the eager passes' bit for bit (topdown.py: outer_sum, then the weights).
//
// The upward pass is a max-plus "GEMM": per (fold, tile of kCols batch columns) the outer
// sums s = a (+) c are laid out once, (K * K, kCols), then kRows output units at a time run
// over them with their maxima held in registers (kRows x kCols, vectorized over the
// columns), so that each element costs one add and one max. The top-down pass scores one
// unit per (fold, column), K * K sums: small layers a tile of columns at a time, one
// column per lane (the rows of w gathered); large ones a column at a time, lanes of
// indices over its row.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

constexpr int64_t kCols = 16;  // batch columns per tile: one AVX-512 register of floats
constexpr int64_t kRows = 8;   // output units whose maxima stay in registers together
constexpr int64_t kGatherWork = 256;  // K * K up to which the argmax runs a tile at a time

// kCols values of T in one vector (GCC/Clang vector extensions: the compiler maps it onto
// the machine's registers, one AVX-512 register of floats, two of doubles).
template <typename T>
struct Lanes {
  typedef T type __attribute__((vector_size(kCols * sizeof(T))));
};
template <typename T>
using Vec = typename Lanes<T>::type;

// The tile's outer sums s[i * K + j][t] = a[i][b0 + t] + c[j][b0 + t], zeros past n.
template <typename T>
void outer_sums(const T* a, const T* c, int64_t K, int64_t B, int64_t b0, int64_t n,
                Vec<T>* abuf, Vec<T>* cbuf, Vec<T>* s) {
  for (int64_t i = 0; i < K; ++i) {
    if (n == kCols) {
      __builtin_memcpy(&abuf[i], a + i * B + b0, sizeof(Vec<T>));
      __builtin_memcpy(&cbuf[i], c + i * B + b0, sizeof(Vec<T>));
      continue;
    }
    abuf[i] = Vec<T>{};
    cbuf[i] = Vec<T>{};
    for (int64_t t = 0; t < n; ++t) {
      abuf[i][t] = a[i * B + b0 + t];
      cbuf[i][t] = c[i * B + b0 + t];
    }
  }
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) s[i * K + j] = abuf[i] + cbuf[j];
}

// out[r, t] = max over ij of w[r * KK + ij] + s[ij][t] for R rows, t < n.
template <typename T, int64_t R>
void max_rows(const T* w, int64_t KK, const Vec<T>* s, T* out, int64_t ldo, int64_t n) {
  Vec<T> acc[R];
  for (int64_t r = 0; r < R; ++r) acc[r] = Vec<T>{} - std::numeric_limits<T>::infinity();
  for (int64_t ij = 0; ij < KK; ++ij) {
    const Vec<T> sij = s[ij];
    for (int64_t r = 0; r < R; ++r) {
      const Vec<T> v = w[r * KK + ij] + sij;
      acc[r] = acc[r] < v ? v : acc[r];  // std::max, lane by lane
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    if (n == kCols) {
      __builtin_memcpy(out + r * ldo, &acc[r], sizeof(Vec<T>));
      continue;
    }
    for (int64_t t = 0; t < n; ++t) out[r * ldo + t] = acc[r][t];
  }
}

template <typename T>
void up_impl(const at::Tensor& x, const at::Tensor& w, at::Tensor& out) {
  const int64_t F = x.size(0), K = x.size(2), B = x.size(3), O = w.size(1);
  const int64_t KK = K * K;
  const int64_t tiles = (B + kCols - 1) / kCols;
  const T* xp = x.data_ptr<T>();
  const int64_t sf = x.stride(0), sh = x.stride(1);  // a fold, an input: (K, B) rows apart
  const T* wp = w.data_ptr<T>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, F * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<Vec<T>> sbuf(KK), abuf(K), cbuf(K);
    Vec<T>* s = sbuf.data();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t f = task / tiles, b0 = (task % tiles) * kCols;
      const int64_t n = std::min(kCols, B - b0);
      const T* a = xp + f * sf;
      const T* c = a + sh;
      outer_sums<T>(a, c, K, B, b0, n, abuf.data(), cbuf.data(), s);
      const T* wf = wp + f * O * KK;
      T* of = op + f * O * B + b0;
      int64_t o = 0;
      for (; o + kRows <= O; o += kRows) max_rows<T, kRows>(wf + o * KK, KK, s, of + o * B, B, n);
      for (; o + 4 <= O; o += 4) max_rows<T, 4>(wf + o * KK, KK, s, of + o * B, B, n);
      for (; o + 2 <= O; o += 2) max_rows<T, 2>(wf + o * KK, KK, s, of + o * B, B, n);
      for (; o < O; ++o) max_rows<T, 1>(wf + o * KK, KK, s, of + o * B, B, n);
    }
  });
}

// Integers as wide as T, to hold indices beside values in vectors of kCols lanes.
template <typename T>
struct IndexLanes;
template <>
struct IndexLanes<float> {
  typedef int32_t scalar;
  typedef int32_t type __attribute__((vector_size(kCols * sizeof(int32_t))));
};
template <>
struct IndexLanes<double> {
  typedef int64_t scalar;
  typedef int64_t type __attribute__((vector_size(kCols * sizeof(int64_t))));
};

// v[t] = base[offset[t]] for the kCols lanes: one AVX-512 gather for floats where the
// compiler targets it, else lane by lane.
template <typename T>
inline Vec<T> gather(const T* base, const int32_t* offset) {
  Vec<T> v;
  for (int64_t t = 0; t < kCols; ++t) v[t] = base[offset[t]];
  return v;
}
#if defined(__AVX512F__)
template <>
inline Vec<float> gather<float>(const float* base, const int32_t* offset) {
  static_assert(kCols == 16, "one __m512 of floats");
  const __m512i index = _mm512_loadu_si512(offset);
  return reinterpret_cast<Vec<float>>(_mm512_i32gather_ps(index, base, sizeof(float)));
}
#endif

// The input units (i, j) = (ij / K, ij % K) a column visiting `unit` passes down, into
// the fold's (2, B) slots; -1 for both when it visits none.
inline void put_slots(int64_t* out, int64_t K, int64_t B, int64_t b, int64_t unit, int64_t ij) {
  out[b] = unit < 0 ? -1 : ij / K;
  out[B + b] = unit < 0 ? -1 : ij % K;
}

// The lanes' weights at ij, w[units[t], ij]: gathered from the fold's rows.
template <typename T>
struct GatheredWeights {
  const T* w;
  int32_t offset[kCols];
  Vec<T> operator()(int64_t ij) const { return gather<T>(w + ij, offset); }
};

#if defined(__AVX512F__)
// The same from the fold's weights transposed, wt[ij * kCols + o], when the units fit in
// one register (O <= kCols floats): one permutation per ij rather than a gather.
struct PermutedWeights {
  const float* wt;
  __m512i lanes;
  Vec<float> operator()(int64_t ij) const {
    return reinterpret_cast<Vec<float>>(
        _mm512_permutexvar_ps(lanes, _mm512_loadu_ps(wt + ij * kCols)));
  }
};
#endif

// One tile of kCols columns: each column t visits unit units[t]; out[t] is the first ij
// attaining max_ij w[units[t], ij] + s[ij][t]. Each lane is one column: it keeps its
// first strict maximum over ij in ascending order (0 when every score is -inf).
template <typename T, typename Weights>
void argmax_tile(const Weights& weights, int64_t K, const Vec<T>* s, int64_t* out, int64_t n,
                 int64_t B, const int64_t* units) {
  using I = typename IndexLanes<T>::type;
  using Int = typename IndexLanes<T>::scalar;
  Vec<T> best = Vec<T>{} - std::numeric_limits<T>::infinity();
  I first{}, second{};  // (i, j) apart: no division per lane afterwards
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) {
      const int64_t ij = i * K + j;
      const Vec<T> v = weights(ij) + s[ij];
      const auto better = v > best;
      best = better ? v : best;
      first = better ? I{} + static_cast<Int>(i) : first;
      second = better ? I{} + static_cast<Int>(j) : second;
    }
  }
  for (int64_t t = 0; t < n; ++t) {
    out[t] = units[t] < 0 ? -1 : first[t];
    out[B + t] = units[t] < 0 ? -1 : second[t];
  }
}

// The first index of the max of w[m] + s[m] over m < M (0 when every value is -inf): each
// lane keeps its first strict maximum over the indices it sees in ascending order; the
// answer is the smallest index among the lanes holding the overall max; then the tail.
template <typename T>
int64_t first_argmax(const T* w, const T* s, int64_t M) {
  using I = typename IndexLanes<T>::type;
  using Int = typename IndexLanes<T>::scalar;
  Vec<T> best = Vec<T>{} - std::numeric_limits<T>::infinity();
  I index{}, iota{};
  for (int64_t t = 0; t < kCols; ++t) iota[t] = static_cast<Int>(t);
  int64_t m = 0;
  for (; m + kCols <= M; m += kCols) {
    Vec<T> wv, sv;
    __builtin_memcpy(&wv, w + m, sizeof(wv));
    __builtin_memcpy(&sv, s + m, sizeof(sv));
    const Vec<T> v = wv + sv;
    const auto better = v > best;
    best = better ? v : best;
    index = better ? iota + static_cast<Int>(m) : index;
  }
  T top = -std::numeric_limits<T>::infinity();
  int64_t found = 0;
  if (m > 0) {
    for (int64_t t = 0; t < kCols; ++t) top = std::max(top, best[t]);
    found = M;
    for (int64_t t = 0; t < kCols; ++t)
      if (best[t] == top) found = std::min<int64_t>(found, index[t]);
    if (found == M) found = 0;  // every score -inf
  }
  for (; m < M; ++m) {
    const T v = w[m] + s[m];
    if (v > top) {
      top = v;
      found = m;
    }
  }
  return found;
}

// Large layers: one column at a time, its row of scores scanned by lanes of indices (the
// rows of w a tile of columns would gather from do not stay in cache).
template <typename T>
void argmax_rows(const T* a, const T* c, const T* w, int64_t K, int64_t B, const int64_t* units,
                 int64_t* out, T* srow, T* acol, T* ccol) {
  const int64_t KK = K * K;
  for (int64_t b = 0; b < B; ++b) {
    if (units[b] < 0) {
      put_slots(out, K, B, b, -1, 0);
      continue;
    }
    for (int64_t i = 0; i < K; ++i) {
      acol[i] = a[i * B + b];
      ccol[i] = c[i * B + b];
    }
    for (int64_t i = 0; i < K; ++i) {
      const T ai = acol[i];
      T* si = srow + i * K;
      for (int64_t j = 0; j < K; ++j) si[j] = ai + ccol[j];
    }
    put_slots(out, K, B, b, units[b], first_argmax<T>(w + units[b] * KK, srow, KK));
  }
}

template <typename T>
void down_impl(const at::Tensor& x, const at::Tensor& w, const at::Tensor& units,
               at::Tensor& arg) {
  const int64_t F = x.size(0), K = x.size(2), B = x.size(3), O = w.size(1);
  const int64_t KK = K * K;
  const int64_t tiles = (B + kCols - 1) / kCols;
  const T* xp = x.data_ptr<T>();
  const int64_t sf = x.stride(0), sh = x.stride(1);  // a fold, an input: (K, B) rows apart
  const T* wp = w.data_ptr<T>();
  const int64_t* up = units.data_ptr<int64_t>();
  int64_t* ap = arg.data_ptr<int64_t>();
  if (KK > kGatherWork) {
    at::parallel_for(0, F, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> srow(KK), acol(K), ccol(K);
      for (int64_t f = begin; f < end; ++f) {
        const T* a = xp + f * sf;
        argmax_rows<T>(a, a + sh, wp + f * O * KK, K, B, up + f * B, ap + f * 2 * B,
                       srow.data(), acol.data(), ccol.data());
      }
    });
    return;
  }
  at::parallel_for(0, F * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<Vec<T>> sbuf(KK), abuf(K), cbuf(K);
    std::vector<T> wt(KK * kCols, T(0));
    int64_t transposed = -1;  // the fold whose weights wt holds
    for (int64_t task = begin; task < end; ++task) {
      const int64_t f = task / tiles, b0 = (task % tiles) * kCols;
      const int64_t n = std::min(kCols, B - b0);
      const T* a = xp + f * sf;
      const T* wf = wp + f * O * KK;
      const int64_t* uf = up + f * B + b0;
      int64_t* out = ap + f * 2 * B + b0;
      outer_sums<T>(a, a + sh, K, B, b0, n, abuf.data(), cbuf.data(), sbuf.data());
      int32_t lane[kCols];
      for (int64_t t = 0; t < kCols; ++t)
        lane[t] = t < n ? static_cast<int32_t>(std::max<int64_t>(uf[t], 0)) : 0;
#if defined(__AVX512F__)
      if constexpr (std::is_same<T, float>::value) {
        if (O <= kCols) {
          if (transposed != f) {
            for (int64_t o = 0; o < O; ++o)
              for (int64_t ij = 0; ij < KK; ++ij) wt[ij * kCols + o] = wf[o * KK + ij];
            transposed = f;
          }
          const PermutedWeights weights{wt.data(), _mm512_loadu_si512(lane)};
          argmax_tile<T>(weights, K, sbuf.data(), out, n, B, uf);
          continue;
        }
      }
#endif
      GatheredWeights<T> weights{wf, {}};
      for (int64_t t = 0; t < kCols; ++t) weights.offset[t] = static_cast<int32_t>(lane[t] * KK);
      argmax_tile<T>(weights, K, sbuf.data(), out, n, B, uf);
    }
  });
}

void check(const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(x.device().is_cpu() && w.device().is_cpu(), "maxsum_tucker2: CPU tensors only");
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 2, "maxsum_tucker2: x must be (F, 2, K, B)");
  TORCH_CHECK(x.stride(3) == 1 && x.stride(2) == x.size(3) && w.is_contiguous(),
              "maxsum_tucker2: x must have contiguous (K, B) rows, w must be contiguous");
  const int64_t K = x.size(2);
  TORCH_CHECK(w.dim() == 3 && w.size(0) == x.size(0) && w.size(2) == K * K,
              "maxsum_tucker2: w must be (F, O, K * K)");
  TORCH_CHECK(x.scalar_type() == w.scalar_type(), "maxsum_tucker2: x and w differ in dtype");
}

// (F, O, B): the max-sum binary Tucker layer's upward values.
at::Tensor maxsum_tucker2_up(const at::Tensor& x, const at::Tensor& w) {
  check(x, w);
  at::Tensor out = at::empty({x.size(0), w.size(1), x.size(3)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "maxsum_tucker2_up",
                             [&] { up_impl<scalar_t>(x, w, out); });
  return out;
}

// (F, 2, B) int64: per (fold, column), the input units (i, j) of its unit's best pair;
// -1 for both where the column visits no unit (units[f, b] < 0).
at::Tensor maxsum_tucker2_down(const at::Tensor& x, const at::Tensor& w,
                               const at::Tensor& units) {
  check(x, w);
  TORCH_CHECK(units.scalar_type() == at::kLong && units.is_contiguous() &&
                  units.dim() == 2 && units.size(0) == x.size(0) && units.size(1) == x.size(3),
              "maxsum_tucker2_down: units must be a contiguous (F, B) int64 tensor");
  TORCH_CHECK(units.numel() == 0 || units.max().item<int64_t>() < w.size(1),
              "maxsum_tucker2_down: a unit is out of range");
  at::Tensor arg = at::empty({x.size(0), 2, x.size(3)}, units.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "maxsum_tucker2_down",
                             [&] { down_impl<scalar_t>(x, w, units, arg); });
  return arg;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cirkit_ir_native, module) {
  module.def("maxsum_tucker2_up", &maxsum_tucker2_up);
  module.def("maxsum_tucker2_down", &maxsum_tucker2_down);
}
