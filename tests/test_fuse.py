"""`fuse`: one test per rule, IR text in and expected IR text out, unfolded and folded."""

from __future__ import annotations

import pytest

from cirkit_ir.ir import Graph
from cirkit_ir.ir.parser import parse_ir
from cirkit_ir.ir.printer import print_ir
from cirkit_ir.ir.verify import verify
from cirkit_ir.passes import Fuse

CAT = "num_channels=1, num_units=2, num_categories=3"

# Two categorical inputs (one folded op) that the circuits below start from.
INPUTS = f"""
%t = tensor() {{initializer=normal(), sources=0:2}} : 2x2x1x3
%c = categorical() [probs=%t] {{variables=0:2, {CAT}}} : 2x?x2
"""


def fuse(text: str) -> Graph:
    graph = parse_ir(text)
    Fuse().apply(graph)
    verify(graph)
    return graph


def check(before: str, after: str) -> None:
    got = fuse(INPUTS + before)
    expected = parse_ir(INPUTS + after)
    assert got == expected, print_ir(got)


def test_kronecker_then_dense_is_a_tucker() -> None:
    check(
        """
        %k = kronecker(%c[0], %c[1]) {in_units=2, num_inputs=2} : 1x?x4
        %w = tensor() {initializer=normal(), sources=[2]} : 1x3x4
        %d = dense(%k) [weight=%w] {in_units=4, out_units=3} : 1x?x3
        return %d
        """,
        """
        %w = tensor() {initializer=normal(), sources=[2]} : 1x3x4
        %d = tucker(%c[0], %c[1]) [weight=%w] {in_units=2, out_units=3, num_inputs=2} : 1x?x3
        return %d
        """,
    )


def test_hadamard_then_dense_is_a_cp_t() -> None:
    check(
        """
        %h = hadamard(%c[0], %c[1]) {units=2, num_inputs=2} : 1x?x2
        %w = tensor() {initializer=normal(), sources=[2]} : 1x3x2
        %d = dense(%h) [weight=%w] {in_units=2, out_units=3} : 1x?x3
        return %d
        """,
        """
        %w = tensor() {initializer=normal(), sources=[2]} : 1x3x2
        %d = cp-t(%c[0], %c[1]) [weight=%w] {in_units=2, out_units=3, num_inputs=2} : 1x?x3
        return %d
        """,
    )


def test_a_dense_per_hadamard_input_is_a_cp() -> None:
    check(
        """
        %w0 = tensor() {initializer=normal(), sources=[2]} : 1x3x2
        %d0 = dense(%c[0]) [weight=%w0] {in_units=2, out_units=3} : 1x?x3
        %w1 = tensor() {initializer=normal(), sources=[3]} : 1x3x2
        %d1 = dense(%c[1]) [weight=%w1] {in_units=2, out_units=3} : 1x?x3
        %h = hadamard(%d0, %d1) {units=3, num_inputs=2} : 1x?x3
        return %h
        """,
        """
        %w0 = tensor() {initializer=normal(), sources=[2]} : 1x3x2
        %w1 = tensor() {initializer=normal(), sources=[3]} : 1x3x2
        %s = stack(%w0, %w1) {num_inputs=2} : 1x2x3x2
        %h = cp(%c[0], %c[1]) [weight=%s] {in_units=2, out_units=3, num_inputs=2} : 1x?x3
        return %h
        """,
    )


def test_dense_then_dense_is_one_dense() -> None:
    check(
        """
        %w1 = tensor() {initializer=normal(), sources=[2]} : 1x3x2
        %d1 = dense(%c[0]) [weight=%w1] {in_units=2, out_units=3} : 1x?x3
        %w2 = tensor() {initializer=normal(), sources=[3]} : 1x4x3
        %d2 = dense(%d1) [weight=%w2] {in_units=3, out_units=4} : 1x?x4
        return %d2
        """,
        """
        %w2 = tensor() {initializer=normal(), sources=[3]} : 1x4x3
        %w1 = tensor() {initializer=normal(), sources=[2]} : 1x3x2
        %m = matmul(%w2, %w1) : 1x4x2
        %d = dense(%c[0]) [weight=%m] {in_units=2, out_units=4} : 1x?x4
        return %d
        """,
    )


@pytest.mark.parametrize(
    "op", ["hadamard(%c) {units=2, num_inputs=1}", "kronecker(%c) {in_units=2, num_inputs=1}"]
)
def test_one_input_products_go(op: str) -> None:
    check(
        f"""
        %p = {op} : 2x?x2
        %h = hadamard(%p[0], %p[1]) {{units=2, num_inputs=2}} : 1x?x2
        return %h, %p[1]
        """,
        """
        %h = hadamard(%c[0], %c[1]) {units=2, num_inputs=2} : 1x?x2
        return %h, %c[1]
        """,
    )


def test_one_input_mixing_with_softmax_weights_goes() -> None:
    check(
        """
        %w = tensor() {initializer=normal(), sources=2:4} : 2x2x1
        %s = softmax(%w) {axis=-1} : 2x2x1
        %m = mixing(%c) [weight=%s] {units=2, num_inputs=1} : 2x?x2
        %h = hadamard(%m[1], %m[0]) {units=2, num_inputs=2} : 1x?x2
        return %h
        """,
        """
        %h = hadamard(%c[1], %c[0]) {units=2, num_inputs=2} : 1x?x2
        return %h
        """,
    )


def test_mixing_with_other_weights_stays() -> None:
    text = (
        INPUTS
        + """
        %w = tensor() {initializer=normal(), sources=2:4} : 2x2x1
        %m = mixing(%c) [weight=%w] {units=2, num_inputs=1} : 2x?x2
        %h = hadamard(%m[1], %m[0]) {units=2, num_inputs=2} : 1x?x2
        return %h
        """
    )
    assert fuse(text) == parse_ir(text)


def test_parameter_rules() -> None:
    check(
        """
        %x = tensor() {initializer=normal(), sources=2:4} : 2x2x1x3
        %s = softmax(%x) {axis=-1} : 2x2x1x3
        %l = log(%s) : 2x2x1x3
        %c2 = categorical() [log_probs=%l] {variables=2:4, %s, param=log_probs} : 2x?x2
        %y = tensor() {initializer=normal(), sources=[5]} : 1x3x2
        %e = exp(%y) : 1x3x2
        %le = log(%e) : 1x3x2
        %ele = exp(%le) : 1x3x2
        %d = dense(%c2[0]) [weight=%ele] {in_units=2, out_units=3} : 1x?x3
        %z = tensor() {initializer=normal(), sources=[6]} : 1x3x2
        %ls = log-softmax(%z) {axis=-2} : 1x3x2
        %els = exp(%ls) : 1x3x2
        %d2 = dense(%c[1]) [weight=%els] {in_units=2, out_units=3} : 1x?x3
        %h = hadamard(%d, %d2) {units=3, num_inputs=2} : 1x?x3
        return %h
        """.replace("%s, param", f"{CAT}, param"),
        # log(softmax) -> log-softmax; exp(log(exp(y))) -> exp(y); exp(log-softmax) -> softmax;
        # then the two dense ops under the hadamard become a cp.
        """
        %x = tensor() {initializer=normal(), sources=2:4} : 2x2x1x3
        %ls = log-softmax(%x) {axis=-1} : 2x2x1x3
        %c2 = categorical() [log_probs=%ls] {variables=2:4, %s, param=log_probs} : 2x?x2
        %y = tensor() {initializer=normal(), sources=[5]} : 1x3x2
        %e = exp(%y) : 1x3x2
        %z = tensor() {initializer=normal(), sources=[6]} : 1x3x2
        %sz = softmax(%z) {axis=-2} : 1x3x2
        %st = stack(%e, %sz) {num_inputs=2} : 1x2x3x2
        %h = cp(%c2[0], %c[1]) [weight=%st] {in_units=2, out_units=3, num_inputs=2} : 1x?x3
        return %h
        """.replace("%s, param", f"{CAT}, param"),
    )


def test_an_intermediate_op_with_another_user_is_not_fused() -> None:
    text = (
        INPUTS
        + """
        %k = kronecker(%c[0], %c[1]) {in_units=2, num_inputs=2} : 1x?x4
        %w = tensor() {initializer=normal(), sources=[2]} : 1x2x4
        %d = dense(%k) [weight=%w] {in_units=4, out_units=2} : 1x?x2
        %w2 = tensor() {initializer=normal(), sources=[3]} : 1x2x4
        %d2 = dense(%k) [weight=%w2] {in_units=4, out_units=2} : 1x?x2
        %v = tensor() {initializer=normal(), sources=[4]} : 1x2x2
        %m = mixing(%d, %d2) [weight=%v] {units=2, num_inputs=2} : 1x?x2
        return %m
        """
    )
    assert fuse(text) == parse_ir(text)
    shared_softmax = (
        INPUTS
        + """
        %x = tensor() {initializer=normal(), sources=2:4} : 2x2x1x3
        %s = softmax(%x) {axis=-1} : 2x2x1x3
        %l = log(%s) : 2x2x1x3
        %c2 = categorical() [log_probs=%l] {variables=2:4, %s, param=log_probs} : 2x?x2
        %c3 = categorical() [probs=%s] {variables=4:6, %s} : 2x?x2
        %h = hadamard(%c[0], %c2[0], %c3[0]) {units=2, num_inputs=3} : 1x?x2
        return %h
        """.replace("%s, param", f"{CAT}, param").replace("6, %s}", f"6, {CAT}}}")
    )
    assert fuse(shared_softmax) == parse_ir(shared_softmax)


# -- folded graphs: fold maps compose and the consumer keeps its fold order ---------------------


def test_tucker_on_folded_ops_composes_fold_maps() -> None:
    before = f"""
    %t = tensor() {{initializer=normal(), sources=0:4}} : 4x2x1x3
    %c = categorical() [probs=%t] {{variables=0:4, {CAT}}} : 4x?x2
    %k = kronecker(%c[0,2], %c[1,3]) {{in_units=2, num_inputs=2}} : 2x?x4
    %w = tensor() {{initializer=normal(), sources=4:6}} : 2x3x4
    %d = dense(%k[1,0]) [weight=%w] {{in_units=4, out_units=3}} : 2x?x3
    return %d[0], %d[1]
    """
    after = f"""
    %t = tensor() {{initializer=normal(), sources=0:4}} : 4x2x1x3
    %c = categorical() [probs=%t] {{variables=0:4, {CAT}}} : 4x?x2
    %w = tensor() {{initializer=normal(), sources=4:6}} : 2x3x4
    %d = tucker(%c[2,0], %c[3,1]) [weight=%w] {{in_units=2, out_units=3, num_inputs=2}} : 2x?x3
    return %d[0], %d[1]
    """
    assert fuse(before) == parse_ir(after)


def test_cp_on_folded_ops_rebuilds_private_weights_per_input() -> None:
    # One folded dense op feeds both inputs of a folded hadamard: its 4 folds are used once
    # each, so it fuses, and its weight chain is rebuilt per cp input (sources reordered)
    # rather than gathered, which is what fusing before folding gives too.
    before = f"""
    %t = tensor() {{initializer=normal(), sources=0:4}} : 4x2x1x3
    %c = categorical() [probs=%t] {{variables=0:4, {CAT}}} : 4x?x2
    %w = tensor() {{initializer=normal(), sources=4:8}} : 4x3x2
    %s = softmax(%w) {{axis=-1}} : 4x3x2
    %d = dense(%c) [weight=%s] {{in_units=2, out_units=3}} : 4x?x3
    %h = hadamard(%d[0,2], %d[3,1]) {{units=3, num_inputs=2}} : 2x?x3
    return %h
    """
    after = f"""
    %t = tensor() {{initializer=normal(), sources=0:4}} : 4x2x1x3
    %c = categorical() [probs=%t] {{variables=0:4, {CAT}}} : 4x?x2
    %w0 = tensor() {{initializer=normal(), sources=[4,6]}} : 2x3x2
    %s0 = softmax(%w0) {{axis=-1}} : 2x3x2
    %w1 = tensor() {{initializer=normal(), sources=[7,5]}} : 2x3x2
    %s1 = softmax(%w1) {{axis=-1}} : 2x3x2
    %st = stack(%s0, %s1) {{num_inputs=2}} : 2x2x3x2
    %h = cp(%c[0,2], %c[3,1]) [weight=%st] {{in_units=2, out_units=3, num_inputs=2}} : 2x?x3
    return %h
    """
    assert fuse(before) == parse_ir(after)


def test_shared_weights_are_gathered_not_copied() -> None:
    before = f"""
    %t = tensor() {{initializer=normal(), sources=0:2}} : 2x2x1x3
    %c = categorical() [probs=%t] {{variables=0:2, {CAT}}} : 2x?x2
    %w = tensor() {{initializer=normal(), sources=[4]}} : 1x2x2
    %d1 = dense(%c) [weight=%w[0,0]] {{in_units=2, out_units=2}} : 2x?x2
    %v = tensor() {{initializer=normal(), sources=[5]}} : 1x2x2
    %d2 = dense(%d1[1,0]) [weight=%v[0,0]] {{in_units=2, out_units=2}} : 2x?x2
    return %d2[0], %d2[1]
    """
    after = f"""
    %t = tensor() {{initializer=normal(), sources=0:2}} : 2x2x1x3
    %c = categorical() [probs=%t] {{variables=0:2, {CAT}}} : 2x?x2
    %v = tensor() {{initializer=normal(), sources=[5]}} : 1x2x2
    %w = tensor() {{initializer=normal(), sources=[4]}} : 1x2x2
    %m = matmul(%v[0,0], %w[0,0]) : 2x2x2
    %d = dense(%c[1,0]) [weight=%m] {{in_units=2, out_units=2}} : 2x?x2
    return %d[0], %d[1]
    """
    assert fuse(before) == parse_ir(after)


def test_fuse_reports_no_change_at_a_fixed_point() -> None:
    graph = parse_ir(
        INPUTS
        + """
        %h = hadamard(%c[0], %c[1]) {units=2, num_inputs=2} : 1x?x2
        return %h
        """
    )
    assert Fuse().apply(graph) is False
