"""EM from circuit flows and the `fit` helper: closed forms, monotonicity, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cirkit_ir.errors import LearningError
from cirkit_ir.learning import EM, em_targets, fit, log_likelihoods
from cirkit_ir.pipeline import PipelineContext
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.symbolic.initializers import DirichletInitializer
from cirkit_ir.symbolic.layers import (
    BinomialLayer,
    CategoricalLayer,
    DenseLayer,
    GaussianLayer,
    HadamardLayer,
)
from cirkit_ir.symbolic.parameters import ClampParameter, ExpParameter, TensorParameter
from cirkit_ir.templates import circuit_templates

K, V = 3, 4  # mixture components, categories


def mixture(form: str = "softmax") -> Circuit:
    """A mixture of K products of two categoricals over V values, weights read as `form`."""
    if form == "none":
        weight = TensorParameter((1, K), initializer=DirichletInitializer(1.0))
        probs = [TensorParameter((K, 1, V), initializer=DirichletInitializer(1.0)) for _ in "ab"]
        inputs = [CategoricalLayer([v], K, num_categories=V, probs=p) for v, p in enumerate(probs)]
        dense = DenseLayer(K, 1, weight=weight)
    elif form == "exp":
        weight = ExpParameter(TensorParameter((1, K)))
        inputs = [CategoricalLayer([v], K, num_categories=V) for v in range(2)]
        dense = DenseLayer(K, 1, weight=weight)
    else:
        inputs = [CategoricalLayer([v], K, num_categories=V) for v in range(2)]
        dense = DenseLayer(K, 1)
    product = HadamardLayer(K, 2)
    return Circuit([*inputs, product, dense], {product: inputs, dense: [product]}, [dense])


def compile_(symbolic, fold=True, optimize=True, semiring="lse-sum"):
    ctx = PipelineContext(backend="torch", semiring=semiring, fold=fold, optimize=optimize, seed=0)
    return ctx.compile(symbolic)


def data(n=40, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(V, (n, 1, 2), generator=g)


def by_hand(circuit, x: torch.Tensor, alpha: float):
    """One EM step of a mixture of two categoricals, in closed form from its posteriors."""
    w, (p0, p1) = mixture_params(circuit)
    x0, x1 = x[:, 0, 0], x[:, 0, 1]
    joint = w * p0[:, x0].T * p1[:, x1].T  # (B, K)
    r = joint / joint.sum(1, keepdim=True)
    new_w = (r.sum(0) + alpha) / (r.sum() + K * alpha)
    onehot = [torch.nn.functional.one_hot(v, V).double() for v in (x0, x1)]
    new_p = [(r.T @ o + alpha) / (r.sum(0)[:, None] + V * alpha) for o in onehot]
    return new_w, new_p


def mixture_params(circuit):
    cats = [m for m in circuit.layers if type(m).__name__ == "TorchCategoricalLayer"]
    with torch.no_grad():
        probs = torch.cat([getattr(m, m.param_names[0])() for m in cats])  # (2, K, 1, V)
        if cats[0].param == "logits":
            probs = torch.softmax(probs, -1)
        dense = [m for m in circuit.layers if m.param_names and m not in cats][0]
        w = getattr(dense, dense.param_names[0])().reshape(K)
    return w / w.sum(), [probs[0, :, 0], probs[-1, :, 0]]


@pytest.mark.parametrize("form", ["softmax", "none", "exp"])
@pytest.mark.parametrize("fold", [False, True])
def test_em_step_matches_closed_form(form, fold):
    circuit = compile_(mixture(form), fold=fold, optimize=fold)
    circuit.double()
    x = data()
    new_w, new_p = by_hand(circuit, x, alpha=0.5)
    em = EM(circuit, pseudocount=0.5)
    em.accumulate(x)
    em.step()
    w, p = mixture_params(circuit)
    torch.testing.assert_close(w, new_w, atol=1e-9, rtol=1e-7)
    for got, want in zip(p, new_p, strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)


def test_gaussian_em_step_matches_closed_form():
    inputs = [GaussianLayer([v], K) for v in range(2)]
    product, dense = HadamardLayer(K, 2), DenseLayer(K, 1)
    symbolic = Circuit([*inputs, product, dense], {product: inputs, dense: [product]}, [dense])
    circuit = compile_(symbolic)
    circuit.double()
    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [torch.randn(20, 1, 2, generator=g, dtype=torch.float64) * 0.2 + m for m in (-0.5, 0.5)]
    )
    (layer,) = [m for m in circuit.layers if type(m).__name__ == "TorchGaussianLayer"]
    with torch.no_grad():
        mean, std = layer.mean()[:, :, 0], layer.stddev()[:, :, 0]  # (2 folds, K)
        w = circuit.layers[-1].weight().reshape(K)
        log_p = torch.distributions.Normal(mean, std).log_prob(x[:, 0, :, None])  # (B, 2, K)
        r = torch.softmax(torch.log(w) + log_p.sum(1), 1)  # (B, K) posteriors
        n = r.sum(0)
        want_mean = (r.T @ x[:, 0]) / n[:, None]  # (K, 2)
        want_var = (r.T @ x[:, 0] ** 2) / n[:, None] - want_mean**2
    em = EM(circuit, pseudocount=0.0)
    em.accumulate(x)
    em.step()
    with torch.no_grad():
        torch.testing.assert_close(layer.mean()[:, :, 0], want_mean.T)
        torch.testing.assert_close(layer.stddev()[:, :, 0], want_var.sqrt().T, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(circuit.layers[-1].weight().reshape(K), n / n.sum())


def test_binomial_em_step_matches_closed_form():
    n = 5
    inputs = [BinomialLayer([v], K, total_count=n) for v in range(2)]
    product, dense = HadamardLayer(K, 2), DenseLayer(K, 1)
    symbolic = Circuit([*inputs, product, dense], {product: inputs, dense: [product]}, [dense])
    circuit = compile_(symbolic)
    circuit.double()
    x = torch.randint(n + 1, (30, 1, 2), generator=torch.Generator().manual_seed(0))
    (layer,) = [m for m in circuit.layers if type(m).__name__ == "TorchBinomialLayer"]
    with torch.no_grad():
        p = getattr(layer, layer.param_names[0])()[:, :, 0]  # (2 folds, K)
        p = torch.sigmoid(p) if layer.param == "logits" else p
        w = circuit.layers[-1].weight().reshape(K)
        log_p = torch.distributions.Binomial(n, probs=p).log_prob(x[:, 0, :, None].double())
        r = torch.softmax(torch.log(w) + log_p.sum(1), 1)  # (B, K)
        want = (r.T @ x[:, 0].double() + 0.5) / (n * r.sum(0)[:, None] + 1.0)  # (K, 2)
    em = EM(circuit, pseudocount=0.5)
    em.accumulate(x)
    em.step()
    with torch.no_grad():
        got = getattr(layer, layer.param_names[0])()[:, :, 0]
        got = torch.sigmoid(got) if layer.param == "logits" else got
        torch.testing.assert_close(got, want.T)


def small_image_circuit(layer="cp", fold=True, optimize=True, semiring="lse-sum"):
    symbolic = circuit_templates.image_data(
        (1, 4, 4),
        region_graph="quad-graph",
        input_layer="categorical",
        num_input_units=3,
        sum_product_layer=layer,
        num_sum_units=3,
        sum_weight_param="softmax",
    )
    return compile_(symbolic, fold=fold, optimize=optimize, semiring=semiring)


@pytest.mark.parametrize("layer", ["cp", "tucker"])
def test_full_batch_em_never_decreases_the_likelihood(layer):
    circuit = small_image_circuit(layer)
    circuit.double()
    x = torch.randint(256, (64, 1, 16), generator=torch.Generator().manual_seed(1)) // 64
    em = EM(circuit, pseudocount=0.01)
    lls = []
    for _ in range(6):
        for batch in x.split(16):  # full batch: every batch's counts, then one step
            total = em.accumulate(batch).sum()
        em.step()
        with torch.no_grad():
            lls.append(float(log_likelihoods(circuit, x).sum()))
    assert all(b >= a - 1e-9 for a, b in zip(lls, lls[1:], strict=False)), lls
    assert lls[-1] > lls[0]
    del total


def test_em_is_the_same_on_folded_fused_and_plain_circuits():
    x = torch.randint(4, (32, 1, 16), generator=torch.Generator().manual_seed(2))
    results = []
    for fold, optimize in [(False, False), (True, False), (True, True)]:
        circuit = small_image_circuit("tucker", fold, optimize)
        circuit.double()
        em = EM(circuit)
        for _ in range(2):
            em.accumulate(x)
            em.step()
        with torch.no_grad():
            results.append(float(log_likelihoods(circuit, x).sum()))
    assert results[0] == pytest.approx(results[1], rel=1e-9)
    assert results[0] == pytest.approx(results[2], rel=1e-9)


def test_em_on_sum_product_semiring_matches_lse_sum():
    x = data()
    out = []
    for semiring in ("sum-product", "lse-sum"):
        circuit = compile_(mixture(), semiring=semiring)
        circuit.double()
        em = EM(circuit)
        em.accumulate(x)
        em.step()
        out.append(mixture_params(circuit)[0])
    torch.testing.assert_close(out[0], out[1])


def test_em_refuses_what_it_cannot_update():
    inputs = [CategoricalLayer([v], 2, num_categories=V) for v in range(2)]
    weight = ClampParameter(TensorParameter((1, 2)), vmin=0.0)
    product, dense = HadamardLayer(2, 2), DenseLayer(2, 1, weight=weight)
    circuit = compile_(
        Circuit([*inputs, product, dense], {product: inputs, dense: [product]}, [dense])
    )
    with pytest.raises(LearningError, match="method='sgd'"):
        em_targets(circuit)
    with pytest.raises(LearningError, match="complex-lse-sum"):
        em_targets(small_image_circuit(semiring="complex-lse-sum"))
    with pytest.raises(LearningError, match="step_size"):
        EM(compile_(mixture()), step_size=0.0)


def test_fit_em_and_sgd_lower_the_nll_and_keep_history():
    x = data(80)
    for method in ("em", "sgd"):
        circuit = compile_(mixture())
        history = fit(circuit, x, method, epochs=3, batch_size=20, lr=0.1, progress=False)
        assert len(history.epochs) == 3
        assert history.train_nll[-1] < history.train_nll[0]
        assert history.epochs[0].train_bpd == pytest.approx(
            history.train_nll[0] / (2 * 0.6931471805599453)
        )


def test_fit_early_stopping_restores_the_best_state():
    x = data(120)
    circuit = compile_(mixture())
    history = fit(
        circuit,
        x,
        "sgd",
        epochs=30,
        lr=0.5,
        batch_size=10,
        validation=0.25,
        patience=2,
        progress=False,
    )
    best = history.epochs[history.best_epoch].val_nll
    assert min(v for v in history.val_nll) == best
    val = x[torch.randperm(120, generator=torch.Generator().manual_seed(0))[90:]]
    with torch.no_grad():
        assert float(-log_likelihoods(circuit, val).mean()) == pytest.approx(best, rel=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.full((5, 1, 2), V), "out of range"),
        (torch.full((5, 1, 2), -1), "negative"),
        (torch.zeros(5, 1, 3, dtype=torch.long), "does not fit"),
        (torch.zeros(5, 2, dtype=torch.long).tolist(), "torch.Tensor"),
    ],
)
def test_fit_refuses_bad_data_before_the_first_step(bad, match):
    circuit = compile_(mixture())
    before = {k: v.clone() for k, v in circuit.state_dict().items()}
    with pytest.raises(LearningError, match=match):
        fit(circuit, bad, "em", epochs=1, progress=False)
    for k, v in circuit.state_dict().items():
        assert torch.equal(v, before[k])


def test_a_loss_turning_nan_names_the_parameter_and_step_and_restores_the_state():
    circuit = compile_(mixture())
    x = data(40)

    class Poison(torch.optim.SGD):
        """Plain SGD until its third step, which writes a NaN into the first parameter."""

        def step(self, closure=None):
            super().step(closure)
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 3:
                with torch.no_grad():
                    self.param_groups[0]["params"][0].view(-1)[0] = float("nan")

    opt = Poison(circuit.parameters(), lr=0.01)
    snapshots = []
    original = opt.step

    def recording_step(closure=None):
        snapshots.append({k: v.clone() for k, v in circuit.state_dict().items()})
        return original(closure)

    opt.step = recording_step
    name = next(n for n, _ in circuit.named_parameters())
    with pytest.raises(LearningError, match=rf"step 3 .*{name}"):
        fit(circuit, x, "sgd", optimizer=opt, epochs=2, batch_size=10, progress=False)
    for k, v in circuit.state_dict().items():
        assert torch.equal(v, snapshots[2][k])
    assert torch.isfinite(log_likelihoods(circuit, x)).all()


def test_plain_torch_optim_loops_keep_working():
    circuit = compile_(mixture())
    opt = torch.optim.Adam(circuit.parameters(), lr=0.1)
    x = data(40)
    first = None
    for _ in range(10):
        opt.zero_grad()
        loss = -circuit(x).mean()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert -circuit(x).mean().item() < first


# -- data-parallel ------------------------------------------------------------------------------


def _train(x, method, distributed, model_wrap=False):
    torch.manual_seed(0)
    circuit = compile_(mixture())
    circuit.double()
    model = None
    if model_wrap:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(circuit)
    optimizer = torch.optim.SGD(circuit.parameters(), lr=0.5) if method == "sgd" else None
    fit(
        circuit, x, method, epochs=3, batch_size=len(x), optimizer=optimizer, full_batch=True,
        shuffle=False, distributed=distributed, model=model, progress=False,
    )  # fmt: skip
    return {k: v.detach().clone() for k, v in circuit.state_dict().items()}


def _ddp_worker(rank, world, init_file, x, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        shard = x.chunk(world)[rank]
        results = {
            "em": _train(shard, "em", None),  # auto-detected: the process group is initialized
            "sgd": _train(shard, "sgd", True),
            "ddp": _train(shard, "sgd", True, model_wrap=True),
        }
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def _train_two_gloo_processes(directory: str) -> None:
    """Trains on two gloo processes forked from this (fresh) interpreter; rank 0 saves."""
    import torch.multiprocessing as mp

    args = (2, f"{directory}/init", data(40), f"{directory}/ddp.pt")
    mp.start_processes(_ddp_worker, args=args, nprocs=2, join=True, start_method="fork")


def test_two_gloo_processes_train_like_one(tmp_path):
    # The processes fork from a fresh interpreter, never from pytest's: a fork of a process
    # whose OpenMP or gloo threads already run can deadlock. Spawn would cost ~30 s here.
    child = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_learning as t;"
        " t._train_two_gloo_processes(sys.argv[2])"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-c", child, str(Path(__file__).parent), str(tmp_path)]
    subprocess.run(run, check=True, timeout=300, env=env)
    got = torch.load(tmp_path / "ddp.pt", weights_only=True)
    x = data(40)
    single = {"em": _train(x, "em", False), "sgd": _train(x, "sgd", False)}
    single["ddp"] = single["sgd"]
    for key in ("em", "sgd", "ddp"):
        for name, value in single[key].items():
            torch.testing.assert_close(
                got[key][name], value, atol=1e-6, rtol=0, msg=f"{key} {name}"
            )


def test_mini_batch_em_with_momentum_keeps_weights_normalized_and_learns():
    circuit = small_image_circuit("cp")
    x = torch.randint(4, (64, 1, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = float(log_likelihoods(circuit, x).mean())
    history = fit(
        circuit, x, "em", epochs=3, batch_size=16, step_size=0.5, momentum=0.5, progress=False
    )
    with torch.no_grad():
        after = float(log_likelihoods(circuit, x).mean())
        for target in em_targets(circuit):
            total = torch.softmax(target.leaf.value, -1).sum(-1)
            torch.testing.assert_close(total, torch.ones_like(total))
    assert after > before and len(history.epochs) == 3
