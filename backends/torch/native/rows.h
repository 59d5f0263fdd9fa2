// Helpers shared by the fused contraction kernels (cp.cpp, cpt.cpp, mixing.cpp): the weight
// softmax done inside a kernel's loop, its backward, and the check of the packed input.
#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <cmath>

namespace cirkit_ir_native {

// One fold's weights (rows, cols) into `out`: copied, or the softmax of each row of logits.
template <typename T>
void softmax_rows(const T* w, int64_t rows, int64_t cols, bool logits, T* out) {
  if (!logits) {
    std::copy(w, w + rows * cols, out);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = w + r * cols;
    T* o = out + r * cols;
    T top = row[0];
    for (int64_t c = 1; c < cols; ++c) top = std::max(top, row[c]);
    T total = 0;
    for (int64_t c = 0; c < cols; ++c) total += (o[c] = std::exp(row[c] - top));
    for (int64_t c = 0; c < cols; ++c) o[c] /= total;
  }
}

// The gradient of one fold's weights from `dw`, the gradient of the weights the kernel used
// (`wf`, from softmax_rows): dw itself, or through each row's softmax back to its logits.
template <typename T>
void softmax_rows_backward(const T* wf, const T* dw, int64_t rows, int64_t cols, bool logits,
                           T* out) {
  if (!logits) {
    std::copy(dw, dw + rows * cols, out);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const T* wr = wf + r * cols;
    const T* dr = dw + r * cols;
    T dot = 0;
    for (int64_t c = 0; c < cols; ++c) dot += wr[c] * dr[c];
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = wr[c] * (dr[c] - dot);
  }
}

// What every contraction kernel reads: CPU tensors of one dtype, x (F, H, K + 1, B) packed
// (each input's K + 1 rows of B columns contiguous, any strides between folds and inputs).
inline void check_packed_input(const char* kernel, const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(x.device().is_cpu() && w.device().is_cpu(), kernel, ": CPU tensors only");
  TORCH_CHECK(x.dim() == 4, kernel, ": x must be (F, H, K + 1, B)");
  TORCH_CHECK(x.stride(3) == 1 && x.stride(2) == x.size(3), kernel,
              ": x's last two axes must be contiguous");
  TORCH_CHECK(x.scalar_type() == w.scalar_type(), kernel, ": x and w differ in dtype");
}

// A tensor for x's gradient in x's packed layout: x's own strides where they are packed (the
// fold gather's view), else contiguous.
inline at::Tensor packed_like(const at::Tensor& x) {
  at::Tensor g = at::empty_like(x);
  if (g.stride(3) == 1 && g.stride(2) == g.size(3)) return g;
  return at::empty(x.sizes(), x.options());
}

}  // namespace cirkit_ir_native
