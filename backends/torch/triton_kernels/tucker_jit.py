"""Triton kernels of a binary Tucker layer in the packed lse-sum form (see `semirings`).

With x the layer's input (F, 2, K+1, B): rows 0..K-1 of each input are its values, normalized
(largest 1), row K its log scale; W (F, O, K*K) the linear weights, [o, i*K + j]. Forward:

    y = W (a (x) c),  m = max(max_o y, tiny),  out = [y / m ; log m + s_a + s_c]  (F, O+1, B)

one program per fold and block of batch columns: the outer product is formed a block of
its K*K rows at a time in registers and fed to the matrix units (`tl.dot`; see `products`
for the precision), so the (F, K*K, B) tensor the eager layer builds never exists. Backward,
with g = d out[:O] / m (the scale rows and m carry no gradient):

    dP = W^T g  (K*K, B per fold; formed a row of `a` at a time, never stored)
    da[i] = sum_j dP[(i, j)] c[j],  dc[j] = sum_i dP[(i, j)] a[i],  dW = g (a (x) c)^T

so W^T g is computed once for both inputs (the eager backward multiplies twice). dW reduces
over the batch inside one program per fold and block of K*K columns: no atomics, so the
result does not depend on scheduling.

The launchers take any strides for x (fold-gathered views are read in place) and return new
tensors; they run on CUDA tensors, or on CPU tensors under Triton's interpreter
(`TRITON_INTERPRET=1`, what the tests do on machines without a GPU).
"""

# ruff: noqa: E741 - the kernels name sizes by the docstring's letters (O, K, B)
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

MAX_UNITS = 256
"""The most output units one program keeps (the column maximum needs all of them)."""


def _block(n: int, least: int = 16) -> int:
    """A power of two >= n and >= `least` (the matrix units' smallest operand side)."""
    return max(least, triton.next_power_of_2(n))


def launch_config(units: int, inputs: int) -> tuple[int, int]:
    """(batch columns per program, warps per program) for a layer of `units` outputs and
    `inputs` units per input. Measured on an H200 (`examples/bench_triton.py --sweep`, one
    784-fold layer, batch 256): at 4 units 128 columns and 2 warps (0.018 ms; 64 columns and
    4 warps 0.059 ms), at 32 units 64 and 4 (0.52 ms; the others 0.61-1.2 ms), at 64 units 64
    and 8 (4.1 ms; 4.9-10 ms, and 125-230 ms where the accumulator spills). Wider layers keep
    the accumulator (units x columns) to about 4096 values per program."""
    if units <= 16:
        return 128, 2
    if units <= 32:
        return 64, 4
    if units <= 64:
        return 64, 8
    return 32, 8


def products(dtype: torch.dtype, low_precision: bool = False) -> str:
    """How the kernels multiply (`_matmul`'s PRODUCTS): 'fma' for float64 (Triton's dot does
    not take it on every GPU), 'bf16' when asked for (`low_precision`), 'tf32' where torch's
    own float32 matmuls may use TF32 (`torch.set_float32_matmul_precision`), else 'ieee'
    (exact float32 products, as torch computes by default)."""
    if dtype == torch.float64:
        return "fma"
    if low_precision:
        return "bf16"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


@triton.jit
def _matmul(a, b, PRODUCTS: tl.constexpr):
    """a @ b, float32 (or float64) accumulation, products as `products` chose."""
    if PRODUCTS == "fma":
        return tl.sum(a[:, :, None] * b[None, :, :], axis=1)
    elif PRODUCTS == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), out_dtype=tl.float32)
    else:
        return tl.dot(a, b, input_precision=PRODUCTS, out_dtype=tl.float32)


@triton.jit
def _outer_rows(x_f, r, rmask, cols, bmask, K, sh, sk, sb):
    """Rows r = i*K + j of a (x) c for one fold (x_f points at it): (R, BLOCK_B)."""
    i = r // K
    j = r - i * K
    mask = rmask[:, None] & bmask[None, :]
    a = tl.load(x_f + i[:, None] * sk + cols[None, :] * sb, mask=mask, other=0.0)
    c = tl.load(x_f + sh + j[:, None] * sk + cols[None, :] * sb, mask=mask, other=0.0)
    return a * c


@triton.jit
def _forward_kernel(
    x, w, out, m_out, low_out,
    O, K, B,
    sf, sh, sk, sb,
    swf, swo, swr,
    TINY: tl.constexpr, WATCH: tl.constexpr, PRODUCTS: tl.constexpr,
    BLOCK_O: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr,
):  # fmt: skip
    f = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = cols < B
    units = tl.arange(0, BLOCK_O)
    omask = units < O
    x_f = x + f.to(tl.int64) * sf
    w_f = w + f.to(tl.int64) * swf
    kk = K * K
    acc = tl.zeros((BLOCK_O, BLOCK_B), dtype=x.dtype.element_ty)
    for r0 in range(0, kk, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        rmask = r < kk
        p = _outer_rows(x_f, r, rmask, cols, bmask, K, sh, sk, sb)
        wt = tl.load(
            w_f + units[:, None] * swo + r[None, :] * swr,
            mask=omask[:, None] & rmask[None, :],
            other=0.0,
        )
        acc += _matmul(wt, p, PRODUCTS)
    top = tl.max(tl.where(omask[:, None], acc, float("-inf")), axis=0)
    m = tl.maximum(top, TINY)  # a constant: a float argument would be float32 (0 for float64's)
    scale = tl.log(m)
    scale += tl.load(x_f + K * sk + cols * sb, mask=bmask, other=0.0)
    scale += tl.load(x_f + sh + K * sk + cols * sb, mask=bmask, other=0.0)
    out_f = out + f.to(tl.int64) * (O + 1) * B
    tl.store(
        out_f + units[:, None] * B + cols[None, :],
        acc / m[None, :],
        mask=omask[:, None] & bmask[None, :],
    )
    tl.store(out_f + O * B + cols, scale, mask=bmask)
    tl.store(m_out + f.to(tl.int64) * B + cols, m, mask=bmask)
    if WATCH:
        least = tl.min(tl.where(omask[:, None], acc, float("inf")), axis=0)
        tl.store(low_out + f.to(tl.int64) * B + cols, least, mask=bmask)


@triton.jit
def _inputs_backward_kernel(
    x, w, m, grad, gx,
    O, K, B,
    sf, sh, sk, sb,
    swf, swo, swr,
    PRODUCTS: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_B: tl.constexpr,
):  # fmt: skip
    f = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = cols < B
    units = tl.arange(0, BLOCK_O)
    omask = units < O
    ks = tl.arange(0, BLOCK_K)
    kmask = ks < K
    x_f = x + f.to(tl.int64) * sf
    w_f = w + f.to(tl.int64) * swf
    f_ob = f.to(tl.int64) * (O + 1) * B
    mf = tl.load(m + f.to(tl.int64) * B + cols, mask=bmask, other=1.0)
    g = tl.load(
        grad + f_ob + units[:, None] * B + cols[None, :],
        mask=omask[:, None] & bmask[None, :],
        other=0.0,
    )
    g = g / mf[None, :]
    kb = kmask[:, None] & bmask[None, :]
    c = tl.load(x_f + sh + ks[:, None] * sk + cols[None, :] * sb, mask=kb, other=0.0)
    dc = tl.zeros((BLOCK_K, BLOCK_B), dtype=g.dtype)
    gx_f = gx + f.to(tl.int64) * 2 * (K + 1) * B
    for i in range(0, K):
        # dP[(i, j), :] = sum_o W[o, i*K + j] g[o, :], as a (BLOCK_K, BLOCK_B) tile
        wt = tl.load(
            w_f + ks[:, None] * swr + (i * K) * swr + units[None, :] * swo,
            mask=kmask[:, None] & omask[None, :],
            other=0.0,
        )
        dp = _matmul(wt, g, PRODUCTS)
        a_i = tl.load(x_f + i * sk + cols * sb, mask=bmask, other=0.0)
        tl.store(gx_f + i * B + cols, tl.sum(dp * c, axis=0), mask=bmask)
        dc += dp * a_i[None, :]
    tl.store(gx_f + (K + 1) * B + ks[:, None] * B + cols[None, :], dc, mask=kb)
    zero = tl.zeros((BLOCK_B,), dtype=g.dtype)
    tl.store(gx_f + K * B + cols, zero, mask=bmask)
    tl.store(gx_f + (K + 1) * B + K * B + cols, zero, mask=bmask)


@triton.jit
def _weights_backward_kernel(
    x, m, grad, gw,
    O, K, B,
    sf, sh, sk, sb,
    PRODUCTS: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr,
):  # fmt: skip
    f = tl.program_id(0)
    r = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
    kk = K * K
    rmask = r < kk
    units = tl.arange(0, BLOCK_O)
    omask = units < O
    x_f = x + f.to(tl.int64) * sf
    f_ob = f.to(tl.int64) * (O + 1) * B
    acc = tl.zeros((BLOCK_O, BLOCK_R), dtype=x.dtype.element_ty)
    for b0 in range(0, B, BLOCK_B):
        cols = b0 + tl.arange(0, BLOCK_B)
        bmask = cols < B
        mf = tl.load(m + f.to(tl.int64) * B + cols, mask=bmask, other=1.0)
        g = tl.load(
            grad + f_ob + units[:, None] * B + cols[None, :],
            mask=omask[:, None] & bmask[None, :],
            other=0.0,
        )
        g = g / mf[None, :]
        p = _outer_rows(x_f, r, rmask, cols, bmask, K, sh, sk, sb)
        acc += _matmul(g, tl.trans(p), PRODUCTS)
    tl.store(
        gw + f.to(tl.int64) * O * kk + units[:, None] * kk + r[None, :],
        acc,
        mask=omask[:, None] & rmask[None, :],
    )


def tucker2_forward(
    x: Tensor,
    w: Tensor,
    watch: bool = False,
    low_precision: bool = False,
    out: Tensor | None = None,
):
    """(out (F, O+1, B), m (F, 1, B), low (F, 1, B) or None): the packed result (written into
    `out`, contiguous, if given), the column divisors (saved for the backward) and, when
    `watch`, each column's smallest raw sum. `low_precision` multiplies in bfloat16."""
    f, _, k1, b = x.shape
    o = w.shape[1]
    k = k1 - 1
    if out is None:
        out = x.new_empty((f, o + 1, b))
    m = x.new_empty((f, 1, b))
    low = x.new_empty((f, 1, b)) if watch else m
    block_b, warps = launch_config(o, k)
    grid = (f, triton.cdiv(b, block_b))
    _forward_kernel[grid](
        x, w, out, m, low,
        o, k, b,
        x.stride(0), x.stride(1), x.stride(2), x.stride(3),
        w.stride(0), w.stride(1), w.stride(2),
        TINY=torch.finfo(x.dtype).tiny, WATCH=watch, PRODUCTS=products(x.dtype, low_precision),
        BLOCK_O=_block(o), BLOCK_R=_block(min(k * k, 32)), BLOCK_B=block_b, num_warps=warps,
    )  # fmt: skip
    return out, m, (low if watch else None)


def tucker2_backward(x: Tensor, w: Tensor, m: Tensor, grad: Tensor, want_x: bool, want_w: bool):
    """(grad_x, grad_w), each None unless wanted: the gradients of `tucker2_forward`'s out
    (its scale row and m carry none; grad_x's scale rows are zero)."""
    f, _, k1, b = x.shape
    o = w.shape[1]
    k = k1 - 1
    grad = grad.contiguous()
    strides = (x.stride(0), x.stride(1), x.stride(2), x.stride(3))
    grad_x = grad_w = None
    if want_x:
        grad_x = x.new_empty((f, 2, k1, b))
        block_b, warps = launch_config(o, k)
        _inputs_backward_kernel[(f, triton.cdiv(b, block_b))](
            x, w, m, grad, grad_x,
            o, k, b,
            *strides,
            w.stride(0), w.stride(1), w.stride(2),
            PRODUCTS=products(x.dtype), BLOCK_O=_block(o), BLOCK_K=_block(k), BLOCK_B=block_b,
            num_warps=warps,
        )  # fmt: skip
    if want_w:
        grad_w = w.new_empty((f, o, k * k))
        block_r = _block(min(k * k, 64))
        _weights_backward_kernel[(f, triton.cdiv(k * k, block_r))](
            x, m, grad, grad_w,
            o, k, b,
            *strides,
            PRODUCTS=products(x.dtype), BLOCK_O=_block(o), BLOCK_R=block_r, BLOCK_B=32,
        )  # fmt: skip
    return grad_x, grad_w
