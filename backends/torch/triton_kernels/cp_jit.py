"""Triton kernels of a CP layer in the packed lse-sum form (see `semirings`).

With x the layer's input (F, H, K+1, B): rows 0..K-1 of each input h are its values e_h,
normalized (largest 1), row K its log scale s_h; W (F, H, O, K) one linear weight matrix per
input. Forward, as the eager layer computes it (each input's sum normalized before the
product, so that a product of small sums does not underflow):

    z_h = W_h e_h,  m_h = max(max_o z_h, tiny),  p = prod_h z_h / m_h,  M = max(max_o p, tiny)
    out = [p / M ; log M + sum_h (log m_h + s_h)]  (F, O+1, B)

one program per fold and block of batch columns: each sum goes through the matrix units
(`tl.dot`, a block of K at a time; see `tucker_jit.products` for the precision) and is
normalized and multiplied into p in registers, so neither the (F, H, O, B) sums nor their
packed forms are written, except zn_h = z_h / m_h and the divisors when the backward needs
them. Backward, with the divisors constants (the scale rows and m_h, M carry no gradient):

    g_h = d out[:O] * prod_{h' != h} zn_h' / (m_h M)
    de_h = W_h^T g_h,  dW_h = g_h e_h^T

dW reduces over the batch inside one program per fold, input and block of K columns: no
atomics, so the result does not depend on scheduling.

The launchers take any strides for x and W (fold-gathered views are read in place) and
return new tensors; they run on CUDA tensors, or on CPU tensors under Triton's interpreter
(`TRITON_INTERPRET=1`, what the tests do on machines without a GPU).
"""

# ruff: noqa: E741 - the kernels name sizes by the docstring's letters (O, K, B)
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from cirkit_ir.backends.torch.triton_kernels.tucker_jit import (
    _block,
    _matmul,
    launch_config,
    products,
)

MAX_UNITS = 256
"""The most output units one program keeps (the column maxima need all of them)."""


@triton.jit
def _dense(x_h, w_h, units, omask, cols, bmask, K, sk, sb, swo, swk,
           PRODUCTS: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr,
           BLOCK_B: tl.constexpr):  # fmt: skip
    """z = W_h e_h for one input (x_h, w_h point at it): (BLOCK_O, BLOCK_B), padding 0."""
    z = tl.zeros((BLOCK_O, BLOCK_B), dtype=x_h.dtype.element_ty)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        kmask = ks < K
        wt = tl.load(
            w_h + units[:, None] * swo + ks[None, :] * swk,
            mask=omask[:, None] & kmask[None, :],
            other=0.0,
        )
        e = tl.load(
            x_h + ks[:, None] * sk + cols[None, :] * sb,
            mask=kmask[:, None] & bmask[None, :],
            other=0.0,
        )
        z += _matmul(wt, e, PRODUCTS)
    return z


@triton.jit
def _sum_grad(grad, zn, ms, f, h, H, O, B, units, omask, cols, bmask):
    """g_h = d out[:O] * prod_{h' != h} zn_h' / (m_h M) for fold f: (BLOCK_O, BLOCK_B)."""
    mask = omask[:, None] & bmask[None, :]
    ms_f = ms + f.to(tl.int64) * (H + 1) * B
    big_m = tl.load(ms_f + H * B + cols, mask=bmask, other=1.0)
    m_h = tl.load(ms_f + h * B + cols, mask=bmask, other=1.0)
    g = tl.load(
        grad + f.to(tl.int64) * (O + 1) * B + units[:, None] * B + cols[None, :],
        mask=mask,
        other=0.0,
    )
    g = g / (big_m * m_h)[None, :]
    for h2 in range(0, H):
        z = tl.load(
            zn + (f.to(tl.int64) * H + h2) * O * B + units[:, None] * B + cols[None, :],
            mask=mask & (h2 != h),
            other=1.0,
        )
        g = g * z
    return g


@triton.jit
def _forward_kernel(
    x, w, out, zn, ms, low_out,
    H, O, K, B,
    sf, sh, sk, sb,
    swf, swh, swo, swk,
    TINY: tl.constexpr, SAVE: tl.constexpr, WATCH: tl.constexpr, PRODUCTS: tl.constexpr,
    BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_B: tl.constexpr,
):  # fmt: skip
    f = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = cols < B
    units = tl.arange(0, BLOCK_O)
    omask = units < O
    mask = omask[:, None] & bmask[None, :]
    x_f = x + f.to(tl.int64) * sf
    w_f = w + f.to(tl.int64) * swf
    p = tl.full((BLOCK_O, BLOCK_B), 1.0, dtype=x.dtype.element_ty)
    scale = tl.zeros((BLOCK_B,), dtype=x.dtype.element_ty)
    least = tl.full((BLOCK_B,), float("inf"), dtype=x.dtype.element_ty)
    for h in range(0, H):
        x_h = x_f + tl.cast(h, tl.int64) * sh
        z = _dense(
            x_h, w_f + tl.cast(h, tl.int64) * swh, units, omask, cols, bmask, K, sk, sb, swo, swk,
            PRODUCTS, BLOCK_O, BLOCK_K, BLOCK_B,
        )  # fmt: skip
        m = tl.maximum(tl.max(tl.where(omask[:, None], z, float("-inf")), axis=0), TINY)
        if WATCH:
            least = tl.minimum(least, tl.min(tl.where(omask[:, None], z, float("inf")), axis=0))
        z = z / m[None, :]
        p = p * z
        scale += tl.log(m) + tl.load(x_h + K * sk + cols * sb, mask=bmask, other=0.0)
        if SAVE:
            zn_h = zn + (f.to(tl.int64) * H + h) * O * B
            tl.store(zn_h + units[:, None] * B + cols[None, :], z, mask=mask)
            tl.store(ms + (f.to(tl.int64) * (H + 1) + h) * B + cols, m, mask=bmask)
    big_m = tl.maximum(tl.max(tl.where(omask[:, None], p, float("-inf")), axis=0), TINY)
    out_f = out + f.to(tl.int64) * (O + 1) * B
    tl.store(out_f + units[:, None] * B + cols[None, :], p / big_m[None, :], mask=mask)
    tl.store(out_f + O * B + cols, scale + tl.log(big_m), mask=bmask)
    if SAVE:
        tl.store(ms + (f.to(tl.int64) * (H + 1) + H) * B + cols, big_m, mask=bmask)
    if WATCH:
        least = tl.minimum(least, tl.min(tl.where(omask[:, None], p, float("inf")), axis=0))
        tl.store(low_out + f.to(tl.int64) * B + cols, least, mask=bmask)


@triton.jit
def _inputs_backward_kernel(
    w, zn, ms, grad, gx,
    H, O, K, B,
    swf, swh, swo, swk,
    PRODUCTS: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_B: tl.constexpr,
):  # fmt: skip
    f = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = cols < B
    units = tl.arange(0, BLOCK_O)
    omask = units < O
    w_f = w + f.to(tl.int64) * swf
    for h in range(0, H):
        g = _sum_grad(grad, zn, ms, f, h, H, O, B, units, omask, cols, bmask)
        w_h = w_f + tl.cast(h, tl.int64) * swh
        gx_h = gx + (f.to(tl.int64) * H + h) * (K + 1) * B
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            kmask = ks < K
            wt = tl.load(  # W_h^T, (BLOCK_K, BLOCK_O)
                w_h + ks[:, None] * swk + units[None, :] * swo,
                mask=kmask[:, None] & omask[None, :],
                other=0.0,
            )
            de = _matmul(wt, g, PRODUCTS)
            tl.store(
                gx_h + ks[:, None] * B + cols[None, :], de, mask=kmask[:, None] & bmask[None, :]
            )
        tl.store(gx_h + K * B + cols, tl.zeros((BLOCK_B,), dtype=g.dtype), mask=bmask)


@triton.jit
def _weights_backward_kernel(
    x, zn, ms, grad, gw,
    H, O, K, B,
    sf, sh, sk, sb,
    PRODUCTS: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_B: tl.constexpr,
):  # fmt: skip
    fh = tl.program_id(0)
    f = fh // H
    h = fh - f * H
    ks = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    kmask = ks < K
    units = tl.arange(0, BLOCK_O)
    omask = units < O
    x_h = x + f.to(tl.int64) * sf + tl.cast(h, tl.int64) * sh
    acc = tl.zeros((BLOCK_O, BLOCK_K), dtype=x.dtype.element_ty)
    for b0 in range(0, B, BLOCK_B):
        cols = b0 + tl.arange(0, BLOCK_B)
        bmask = cols < B
        g = _sum_grad(grad, zn, ms, f, h, H, O, B, units, omask, cols, bmask)
        et = tl.load(  # e_h^T, (BLOCK_B, BLOCK_K)
            x_h + cols[:, None] * sb + ks[None, :] * sk,
            mask=bmask[:, None] & kmask[None, :],
            other=0.0,
        )
        acc += _matmul(g, et, PRODUCTS)
    tl.store(
        gw + fh.to(tl.int64) * O * K + units[:, None] * K + ks[None, :],
        acc,
        mask=omask[:, None] & kmask[None, :],
    )


def cp_forward(x: Tensor, w: Tensor, save: bool = False, watch: bool = False):
    """(out (F, O+1, B), zn (F, H, O, B), ms (F, H+1, B), low (F, B)): the packed result; with
    `save` the normalized sums and their divisors (m_h, then M) for the backward, else None;
    with `watch` each column's smallest raw sum or product, else None."""
    f, h, k1, b = x.shape
    o = w.shape[2]
    k = k1 - 1
    out = x.new_empty((f, o + 1, b))
    zn = x.new_empty((f, h, o, b)) if save else out
    ms = x.new_empty((f, h + 1, b)) if save else out
    low = x.new_empty((f, b)) if watch else out
    block_b, warps = launch_config(o, k)
    _forward_kernel[(f, triton.cdiv(b, block_b))](
        x, w, out, zn, ms, low,
        h, o, k, b,
        *x.stride(),
        *w.stride(),
        TINY=torch.finfo(x.dtype).tiny, SAVE=save, WATCH=watch,
        PRODUCTS=products(x.dtype),
        BLOCK_O=_block(o), BLOCK_K=_block(min(k, 32)), BLOCK_B=block_b, num_warps=warps,
    )  # fmt: skip
    return out, (zn if save else None), (ms if save else None), (low if watch else None)


def cp_backward(
    x: Tensor, w: Tensor, zn: Tensor, ms: Tensor, grad: Tensor, want_x: bool, want_w: bool
):
    """(grad_x (F, H, K+1, B), grad_w (F, H, O, K)), each None unless wanted: the gradients
    of `cp_forward`'s out (its scale row and the divisors carry none; grad_x's scale rows are
    zero), from what `cp_forward(save=True)` kept."""
    f, h, k1, b = x.shape
    o = w.shape[2]
    k = k1 - 1
    grad = grad.contiguous()
    grad_x = grad_w = None
    if want_x:
        grad_x = x.new_empty((f, h, k1, b))
        block_b, warps = launch_config(o, k)
        _inputs_backward_kernel[(f, triton.cdiv(b, block_b))](
            w, zn, ms, grad, grad_x,
            h, o, k, b,
            *w.stride(),
            PRODUCTS=products(x.dtype),
            BLOCK_O=_block(o), BLOCK_K=_block(min(k, 32)), BLOCK_B=block_b, num_warps=warps,
        )  # fmt: skip
    if want_w:
        grad_w = w.new_empty((f, h, o, k))
        block_k = _block(min(k, 64))
        _weights_backward_kernel[(f * h, triton.cdiv(k, block_k))](
            x, zn, ms, grad, grad_w,
            h, o, k, b,
            *x.stride(),
            PRODUCTS=products(x.dtype), BLOCK_O=_block(o), BLOCK_K=block_k, BLOCK_B=32,
        )  # fmt: skip
    return grad_x, grad_w
