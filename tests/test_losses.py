"""Tests of lt_paper.losses: every equation is recomputed independently here (numpy, explicit loops over
samples), never through the package's own helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lt_paper.losses as L

S = 30.0
LOG2 = math.log(2.0)
IMAGENET_LT_LIKE = np.array([1280, 900, 400, 120, 60, 20, 11, 5])  # max 1280, min 5 (ImageNet-LT's extremes)


# ----------------------------------------------------------------------------- independent references
def rng_case(seed: int, n: int = 24, c: int = 7):
    """Random cosines in [-1, 1] (float64 numpy), labels covering the classes, random positive counts."""
    rng = np.random.default_rng(seed)
    cos = rng.uniform(-1.0, 1.0, size=(n, c))
    y = rng.integers(0, c, size=n)
    y[:c] = np.arange(c)  # every class appears
    counts = rng.integers(1, 2000, size=c)
    return cos, y, counts


def np_a_cls(counts):
    counts = np.asarray(counts, dtype=np.float64)
    return np.array([LOG2 / math.log(n / counts.min() + 1.0) for n in counts])


def np_ldam(counts, max_margin=0.5):
    m = np.array([1.0 / n**0.25 for n in np.asarray(counts, dtype=np.float64)])
    return m * max_margin / m.max()


def np_logsumexp(z):
    zmax = max(z)
    return zmax + math.log(sum(math.exp(v - zmax) for v in z))


def np_adjustment(cos_y, cls_y, instance, class_term, counts):
    """A for one sample by the paper's definitions (eq. 3-5 and the Table 4 variants)."""
    if not instance and class_term is None:
        return 0.0
    a_ins = (1.0 - cos_y) / 2.0 if instance else 1.0
    a_cls = {"ala": np_a_cls(counts), "ldam": np_ldam(counts), None: np.ones(len(counts))}[class_term][cls_y]
    return a_ins * a_cls


def np_ala_per_sample(cos, y, counts, instance=True, class_term="ala", gamma=0.0, s=S):
    """Eq. 6 sample by sample (optionally with the focal factor of Table 4 #5)."""
    out = []
    for i in range(cos.shape[0]):
        z = [s * v for v in cos[i]]
        z[y[i]] = s * (cos[i, y[i]] - np_adjustment(cos[i, y[i]], y[i], instance, class_term, counts))
        ce = np_logsumexp(z) - z[y[i]]
        p = math.exp(-ce)
        out.append((1.0 - p) ** gamma * ce)
    return np.array(out)


def np_softmax_rows(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def t32(a):
    return torch.tensor(a, dtype=torch.float32)


VARIANTS = [(inst, ct) for inst in (True, False) for ct in ("ala", "ldam", None)]


# ----------------------------------------------------------------------------- eq. 3
def test_instance_term_values_range_and_detached():
    cos, _, _ = rng_case(0)
    cos_t = t32(cos).requires_grad_(True)
    a = L.instance_term(cos_t)
    expected = np.array([[(1.0 - v) / 2.0 for v in row] for row in cos])
    np.testing.assert_allclose(a.numpy(), expected, rtol=0, atol=1e-7)
    assert not a.requires_grad
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert L.instance_term(torch.tensor([1.0, -1.0])).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("instance,class_term", VARIANTS)
def test_gradient_treats_adjustment_as_constant(instance, class_term):
    """dL_i/dcos_ij = s (p_ij - [j = y_i]) with p the adjusted softmax: A carries no gradient."""
    cos, y, counts = rng_case(1)
    loss = L.ALALoss(counts, instance_term=instance, class_term=class_term)
    cos_t = t32(cos).requires_grad_(True)
    loss.per_sample_loss(cos_t, torch.tensor(y)).sum().backward()

    z = S * cos.copy()
    for i in range(len(y)):  # adjustment computed once, as a plain number
        z[i, y[i]] -= S * np_adjustment(cos[i, y[i]], y[i], instance, class_term, counts)
    expected = S * np_softmax_rows(z)
    expected[np.arange(len(y)), y] -= S
    np.testing.assert_allclose(cos_t.grad.numpy(), expected, rtol=1e-4, atol=1e-4)

    # the batch loss is the mean: its gradient is the per-sample one over N
    cos_t.grad = None
    loss(cos_t, torch.tensor(y)).backward()
    np.testing.assert_allclose(cos_t.grad.numpy(), expected / len(y), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- eq. 4
def test_ala_class_term_values_and_shape():
    _, _, counts = rng_case(2, c=11)
    a = L.ala_class_term(counts)
    assert a.dtype == torch.float32 and a.shape == (11,)
    np.testing.assert_allclose(a.numpy(), np_a_cls(counts), rtol=1e-6)
    assert float(a[int(np.argmin(counts))]) == pytest.approx(1.0, abs=1e-7)
    assert bool((a > 0).all()) and bool((a <= 1.0 + 1e-7).all())


def test_ala_class_term_decreases_with_count():
    counts = np.array([5, 7, 20, 21, 100, 1280])
    a = L.ala_class_term(counts).numpy()
    assert np.all(np.diff(a) < 0)
    assert L.ala_class_term([50, 50, 50]).tolist() == pytest.approx([1.0, 1.0, 1.0])


# ----------------------------------------------------------------------------- eq. 5-6 and Table 4
@pytest.mark.parametrize("instance,class_term", VARIANTS)
def test_loss_value_matches_loop(instance, class_term):
    cos, y, counts = rng_case(3)
    loss = L.ALALoss(counts, instance_term=instance, class_term=class_term)
    got = loss(t32(cos), torch.tensor(y))
    expected = np_ala_per_sample(cos, y, counts, instance, class_term).mean()
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_only_target_logit_is_adjusted():
    cos, y, counts = rng_case(4)
    loss = L.ALALoss(counts)
    adjusted = loss.adjusted_logits(t32(cos), torch.tensor(y)).double().numpy()
    diff = adjusted - S * cos
    target = np.zeros_like(diff, dtype=bool)
    target[np.arange(len(y)), y] = True
    np.testing.assert_allclose(diff[~target], 0.0, atol=2e-5)
    for i in range(len(y)):
        a = (1.0 - cos[i, y[i]]) / 2.0 * np_a_cls(counts)[y[i]]
        assert diff[i, y[i]] == pytest.approx(-S * a, abs=2e-5)
        assert diff[i, y[i]] < 0 or a == 0


@pytest.mark.parametrize("instance,class_term", VARIANTS)
def test_adjustment_within_unit_interval(instance, class_term):
    cos, y, counts = rng_case(5, n=64)
    cos[:8, :] = 1.0  # extremes of the cosine range
    cos[8:16, :] = -1.0
    loss = L.ALALoss(counts, instance_term=instance, class_term=class_term)
    a = loss.target_adjustment(t32(cos), torch.tensor(y))
    assert a.shape == (64,) and not a.requires_grad
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_table4_variants_by_name():
    """Each Table 4 row built by name equals its formula (A = A_ins, A_cls, A_ins A_LDAM, A_ins A_cls)."""
    cos, y, counts = rng_case(6)
    cases = {
        "ldam": dict(instance=False, class_term="ldam"),
        "ains": dict(instance=True, class_term=None),
        "acls": dict(instance=False, class_term="ala"),
        "focal_acls": dict(instance=False, class_term="ala", gamma=1.0),
        "ldam_ains": dict(instance=True, class_term="ldam"),
        "ala": dict(instance=True, class_term="ala"),
        "cos_ce": dict(instance=False, class_term=None),
    }
    for name, kw in cases.items():
        got = float(L.build_loss(name, counts)(t32(cos), torch.tensor(y)))
        assert got == pytest.approx(np_ala_per_sample(cos, y, counts, **kw).mean(), rel=1e-5), name


def test_focal_plus_acls_with_gamma_two():
    cos, y, counts = rng_case(7)
    loss = L.ALALoss(counts, instance_term=False, class_term="ala", focal_gamma=2.0)
    got = float(loss(t32(cos), torch.tensor(y)))
    assert got == pytest.approx(np_ala_per_sample(cos, y, counts, False, "ala", gamma=2.0).mean(), rel=1e-5)


# ----------------------------------------------------------------------------- LDAM
def test_ldam_margins():
    _, _, counts = rng_case(8, c=9)
    m = L.ldam_margins(counts)
    np.testing.assert_allclose(m.numpy(), np_ldam(counts), rtol=1e-6)
    assert float(m.max()) == pytest.approx(0.5) and int(m.argmax()) == int(np.argmin(counts))
    assert float(L.ldam_margins(counts, max_margin=0.3).max()) == pytest.approx(0.3)
    # equal counts give a uniform margin of max_margin, not zero margins
    assert L.ldam_margins([40, 40, 40]).tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_ldam_equals_independent_implementation():
    cos, y, counts = rng_case(9)
    got = float(L.ALALoss(counts, instance_term=False, class_term="ldam")(t32(cos), torch.tensor(y)))
    m = np_ldam(counts)
    per = []
    for i in range(len(y)):  # CE on s * (cos - m_y one-hot)
        z = [S * (cos[i, j] - (m[y[i]] if j == y[i] else 0.0)) for j in range(cos.shape[1])]
        per.append(np_logsumexp(z) - z[y[i]])
    assert got == pytest.approx(np.mean(per), rel=1e-5)


def test_zero_adjustment_is_cross_entropy_on_scaled_cosines():
    """With every margin zero (max_margin = 0), LDAM is F.cross_entropy(s * cos); so is cos_ce."""
    cos, y, counts = rng_case(10)
    cos_t, y_t = t32(cos), torch.tensor(y)
    reference = F.cross_entropy(S * cos_t, y_t)
    ldam0 = L.ALALoss(counts, instance_term=False, class_term="ldam", max_margin=0.0)
    torch.testing.assert_close(ldam0(cos_t, y_t), reference)
    torch.testing.assert_close(L.build_loss("cos_ce", counts)(cos_t, y_t), reference)
    cos_ce5 = L.build_loss("cos_ce", counts, s=5.0)
    torch.testing.assert_close(cos_ce5(cos_t, y_t), F.cross_entropy(5.0 * cos_t, y_t))


# ----------------------------------------------------------------------------- Figure 2(a)
def test_figure2a_relations():
    counts = IMAGENET_LT_LIKE
    hard = L.adjusting_terms(counts, target_cos=-0.5)
    easy = L.adjusting_terms(counts, target_cos=0.5)
    tail, head = int(np.argmin(counts)), int(np.argmax(counts))
    np.testing.assert_allclose(hard["acls_only"], np_a_cls(counts), rtol=1e-6)
    np.testing.assert_allclose(hard["ldam"], np_ldam(counts), rtol=1e-6)
    np.testing.assert_allclose(hard["ala"], 0.75 * np_a_cls(counts), rtol=1e-6)
    np.testing.assert_allclose(easy["ala"], 0.25 * np_a_cls(counts), rtol=1e-6)
    # rarest class: A_cls = 1, twice LDAM's largest margin
    assert hard["acls_only"][tail] == pytest.approx(1.0) and hard["ldam"][tail] == pytest.approx(0.5)
    assert hard["acls_only"][tail] == pytest.approx(2.0 * hard["ldam"][tail])
    # ALA's hard-sample term exceeds LDAM at the tail; hard > easy for every class; A_cls only bounds ALA
    assert hard["ala"][tail] > hard["ldam"][tail]
    assert np.all(hard["ala"] > easy["ala"]) and np.all(hard["acls_only"] >= hard["ala"])
    # head of ImageNet-LT (ratio 256): A_cls and LDAM agree within 0.1 %, so ALA < LDAM for every sample
    assert hard["acls_only"][head] == pytest.approx(hard["ldam"][head], rel=1e-3)
    for c in (-1.0, -0.5, 0.0, 0.5, 1.0):
        assert L.adjusting_terms(counts, c)["ala"][head] < hard["ldam"][head]


def test_acls_exceeds_ldam_for_small_ratios():
    """log 2 / log(r + 1) > 0.5 r^(-1/4) for r <= 12; the curves cross near 12.7 and again near 258.6."""
    ratios = np.array([1, 2, 3, 5, 8, 12, 13, 50, 100, 250, 270, 1000], dtype=np.float64)
    counts = 5 * ratios
    a, m = L.ala_class_term(counts).numpy(), L.ldam_margins(counts).numpy()
    expect_acls_larger = (ratios <= 12) | (ratios >= 259)
    assert np.array_equal(a > m, expect_acls_larger)


# ----------------------------------------------------------------------------- Figure 2(b)
def test_figure2b_gradients_match_closed_forms():
    x = np.linspace(-30.0, 30.0, 601)
    for ratio, gamma in ((None, 2.0), (10.0, 1.0), (256.0, 3.0)):
        g = L.target_logit_gradients(x, s=S, class_count_ratio=ratio, gamma=gamma)
        sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
        p = sig(x)
        a_cls = LOG2 / math.log((1.0 if ratio is None else ratio) + 1.0)
        p_ala = sig(x - S * a_cls * (1.0 - x / S) / 2.0)
        np.testing.assert_allclose(g["x"], x)
        np.testing.assert_allclose(g["ce"], p - 1.0, atol=1e-12)
        np.testing.assert_allclose(g["ala"], p_ala - 1.0, atol=1e-12)
        fl = gamma * p * (1.0 - p) ** gamma * np.log(p) - (1.0 - p) ** (gamma + 1.0)
        np.testing.assert_allclose(g["focal"], fl, atol=1e-10)
        np.testing.assert_allclose(g["focal_star"], sig(2.0 * x + 1.0) - 1.0, atol=1e-12)


def test_figure2b_paper_claims():
    # FL (gamma = 2): |g| is not monotonic on [-5, 0]: an interior maximum (near x = -2.8, |g| = 1.129)
    x = np.linspace(-5.0, 0.0, 501)
    mag = np.abs(L.target_logit_gradients(x, gamma=2.0)["focal"])
    k = int(mag.argmax())
    assert 0 < k < len(x) - 1 and mag[k] > mag[0] + 0.05 and mag[k] > mag[-1] + 0.5
    assert x[k] == pytest.approx(-2.79, abs=0.02)
    # ALA for the rarest class: adjusted logit 1.5 x - 15, so |g| = 1/2 at x = 10 and > 1/2 below it
    x = np.linspace(-30.0, 30.0, 601)
    g = L.target_logit_gradients(x)
    assert g["ala"][x == 10.0][0] == pytest.approx(-0.5, abs=1e-12)
    assert np.all(np.abs(g["ala"][x < 10.0]) > 0.5) and np.all(np.abs(g["focal"][x > 2.0]) < 0.01)


def test_focal_gamma_is_1_for_training_and_2_for_figure2b():
    """docs/decisions.md, decision 10: the trained Focal baseline and Table 4 #5 use LDAM-DRW's gamma = 1; Figure 2(b)
    plots "the commonly used formulation" (gamma = 2)."""
    assert L.build_loss("focal").gamma == 1.0
    assert L.build_loss("focal_acls", IMAGENET_LT_LIKE).focal_gamma == 1.0
    x = np.linspace(-30.0, 30.0, 61)
    np.testing.assert_array_equal(L.target_logit_gradients(x)["focal"],
                                  L.target_logit_gradients(x, gamma=2.0)["focal"])
    gamma_one = L.target_logit_gradients(x, gamma=1.0)["focal"]
    assert not np.allclose(L.target_logit_gradients(x)["focal"], gamma_one)


# ----------------------------------------------------------------------------- baselines
def test_focal_loss():
    rng = np.random.default_rng(11)
    z, y = rng.normal(0, 3, size=(20, 6)), rng.integers(0, 6, size=20)
    z_t, y_t = t32(z), torch.tensor(y)
    torch.testing.assert_close(L.FocalLoss(gamma=0.0)(z_t, y_t), F.cross_entropy(z_t, y_t))
    assert L.FocalLoss().gamma == 1.0
    for gamma in (1.0, 2.0, 0.5):
        per = []
        for i in range(20):
            p = math.exp(z[i, y[i]] - np_logsumexp(z[i]))
            per.append(-((1.0 - p) ** gamma) * math.log(p))
        assert float(L.FocalLoss(gamma)(z_t, y_t)) == pytest.approx(np.mean(per), rel=1e-5)


def test_logit_adjusted_loss():
    rng = np.random.default_rng(12)
    z, y, counts = rng.normal(0, 3, size=(20, 5)), rng.integers(0, 5, size=20), np.array([500, 120, 40, 9, 2])
    z_t, y_t = t32(z), torch.tensor(y)
    torch.testing.assert_close(L.LogitAdjustedLoss(counts, tau=0.0)(z_t, y_t), F.cross_entropy(z_t, y_t))
    for tau in (1.0, 1.5):
        prior = counts / counts.sum()
        per = []
        for i in range(20):
            a = [z[i, j] + tau * math.log(prior[j]) for j in range(5)]
            per.append(np_logsumexp(a) - a[y[i]])
        assert float(L.LogitAdjustedLoss(counts, tau=tau)(z_t, y_t)) == pytest.approx(np.mean(per), rel=1e-5)


def test_cross_entropy_loss():
    rng = np.random.default_rng(13)
    z, y = rng.normal(0, 3, size=(20, 5)), rng.integers(0, 5, size=20)
    per = [np_logsumexp(z[i]) - z[i, y[i]] for i in range(20)]
    assert float(L.CrossEntropyLoss()(t32(z), torch.tensor(y))) == pytest.approx(np.mean(per), rel=1e-5)


# ----------------------------------------------------------------------------- DRW weights and reduction
def test_class_balanced_weights():
    counts = np.array([5000, 2000, 300, 50, 10])
    w = L.class_balanced_weights(counts)
    beta = 0.9999
    ref = np.array([(1.0 - beta) / (1.0 - beta**n) for n in counts])
    ref = ref / ref.sum() * len(counts)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-5)
    assert float(w.sum()) == pytest.approx(len(counts), rel=1e-6)
    assert int(w.argmax()) == int(np.argmin(counts))
    assert L.class_balanced_weights(counts, beta=0.0).tolist() == pytest.approx([1.0] * 5)
    with pytest.raises(ValueError, match="beta"):
        L.class_balanced_weights(counts, beta=1.0)


def test_weighted_reduction():
    cos, y, counts = rng_case(14)
    w = np.random.default_rng(14).uniform(0.1, 3.0, size=len(counts))
    per = np_ala_per_sample(cos, y, counts)
    expected = sum(w[y[i]] * per[i] for i in range(len(y))) / sum(w[y[i]] for i in range(len(y)))
    got = L.ALALoss(counts)(t32(cos), torch.tensor(y), weight=t32(w))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    z, y_t, w_t = t32(3 * cos), torch.tensor(y), t32(w)
    torch.testing.assert_close(L.CrossEntropyLoss()(z, y_t, weight=w_t), F.cross_entropy(z, y_t, weight=w_t))
    with pytest.raises(ValueError, match="weight"):
        L.CrossEntropyLoss()(z, y_t, weight=torch.ones(3))


# ----------------------------------------------------------------------------- distillation, RIDE
def np_kl(p_logits, q_logits):
    p, q = np_softmax_rows(p_logits), np_softmax_rows(q_logits)
    rows = [sum(p[i, j] * math.log(p[i, j] / q[i, j]) for j in range(p.shape[1])) for i in range(len(p))]
    return np.array(rows)


def test_distillation_loss():
    rng = np.random.default_rng(15)
    student, teacher = rng.normal(0, 8, size=(12, 6)), rng.normal(0, 8, size=(12, 6))
    kd = L.DistillationLoss()
    assert kd.temperature == 2.0 and kd.scale == 1.0
    s_t, t_t = t32(student).requires_grad_(True), t32(teacher).requires_grad_(True)
    got = kd(s_t, t_t)
    assert float(got.detach()) == pytest.approx(4.0 * np_kl(teacher / 2.0, student / 2.0).mean(), rel=1e-5)
    got.backward()
    assert t_t.grad is None and s_t.grad is not None and float(s_t.grad.abs().sum()) > 0
    assert float(kd(t32(student), t32(student))) == pytest.approx(0.0, abs=1e-6)


def test_ride_diversity_loss():
    rng = np.random.default_rng(16)
    n, k, c, temp = 10, 3, 5, 1.5
    experts = rng.normal(0, 5, size=(n, k, c))
    mean = experts.mean(axis=1)
    expected = sum(temp**2 * np_kl(mean / temp, experts[:, j] / temp).mean() for j in range(k))
    e_t = t32(experts).requires_grad_(True)
    got = L.ride_diversity_loss(e_t, temperature=temp)
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)
    # d/d expert_k = T (softmax(expert_k / T) - softmax(mean / T)) / N (the path through the mean cancels)
    got.backward()
    q = np.stack([np_softmax_rows(experts[:, j] / temp) for j in range(k)], axis=1)
    grad = temp * (q - np_softmax_rows(mean / temp)[:, None, :]) / n
    np.testing.assert_allclose(e_t.grad.numpy(), grad, atol=1e-6)
    identical = t32(np.repeat(mean[:, None], k, axis=1))  # every expert equals the mean
    assert float(L.ride_diversity_loss(identical)) == pytest.approx(0.0, abs=1e-6)
    # an explicit reference (e.g. a router aggregate) is a fixed target: it receives no gradient
    ref = t32(rng.normal(0, 5, size=(n, c))).requires_grad_(True)
    e_t.grad = None
    L.ride_diversity_loss(e_t, temperature=temp, reference_scaled_logits=ref).backward()
    assert ref.grad is None and e_t.grad is not None
    ref_np = ref.detach().numpy().astype(np.float64)
    expected = sum(temp**2 * np_kl(ref_np / temp, experts[:, j] / temp).mean() for j in range(k))
    got = L.ride_diversity_loss(t32(experts), temperature=temp, reference_scaled_logits=ref.detach())
    assert float(got) == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- the training objective
def moe_case(seed: int, n: int = 9, k: int = 3, c: int = 6):
    """Expert cosines (N, K, C) in [-1, 1], router weights (N, K) on the simplex, labels, counts."""
    rng = np.random.default_rng(seed)
    experts = rng.uniform(-1.0, 1.0, size=(n, k, c))
    weights = np_softmax_rows(rng.normal(0, 1, size=(n, k)))
    y = rng.integers(0, c, size=n)
    counts = rng.integers(5, 1000, size=c)
    return experts, weights, y, counts


def moe_output(experts, weights):
    from lt_paper.models import ModelOutput

    logits = (weights[:, :, None] * experts).sum(axis=1)  # (N, C), eq. 7
    return ModelOutput(t32(logits), t32(experts), t32(weights), torch.zeros(len(experts), 1))


@pytest.mark.parametrize("router_active", [False, True])
def test_vanilla_ride_objective_is_per_expert_ldam_plus_diversity(router_active):
    """Table 5 RIDE*: sum_k LDAM(l^k) - 0.2 sum_k KL(ref || expert_k), no term on the aggregate; the
    diversity reference is the model output (the routed logits once the router is on, else the mean)."""
    from lt_paper.train.objective import Objective

    experts, weights, y, counts = moe_case(21)
    if not router_active:
        weights = np.full_like(weights, 1.0 / weights.shape[1])
    objective = Objective(L.build_loss("ldam", counts.tolist()), diversity_weight=-0.2, aggregate_loss=False)
    got = objective(moe_output(experts, weights), torch.tensor(y), None, router_active=router_active)
    ldam = sum(np_ala_per_sample(experts[:, j], y, counts, instance=False, class_term="ldam").mean()
               for j in range(experts.shape[1]))
    output = (weights[:, :, None] * experts).sum(axis=1)  # (N, C)
    diversity = sum(np_kl(S * output, S * experts[:, j]).mean() for j in range(experts.shape[1]))
    assert float(got) == pytest.approx(ldam - 0.2 * diversity, rel=1e-5)


def test_moe_objective_adds_the_aggregate_term_of_eq8_once_the_router_is_on():
    from lt_paper.train.objective import Objective

    experts, weights, y, counts = moe_case(22)
    out, targets = moe_output(experts, weights), torch.tensor(y)
    objective = Objective(L.build_loss("ala", counts.tolist()))  # aggregate_loss defaults to True
    per_expert = sum(np_ala_per_sample(experts[:, j], y, counts).mean() for j in range(experts.shape[1]))
    aggregate = np_ala_per_sample((weights[:, :, None] * experts).sum(axis=1), y, counts).mean()
    assert float(objective(out, targets, None, router_active=False)) == pytest.approx(per_expert, rel=1e-5)
    assert float(objective(out, targets, None, router_active=True)) == pytest.approx(per_expert + aggregate,
                                                                                      rel=1e-5)
    without = Objective(L.build_loss("ala", counts.tolist()), aggregate_loss=False)
    assert float(without(out, targets, None, router_active=True)) == pytest.approx(per_expert, rel=1e-5)


# ----------------------------------------------------------------------------- dtype, registry, buffers
def test_bfloat16_logits_give_float32_loss():
    cos, y, counts = rng_case(17)
    cos16 = t32(cos).bfloat16()
    y_t = torch.tensor(y)
    for name in L.LOSS_NAMES:
        loss = L.build_loss(name, counts)
        got = loss(cos16, y_t)
        assert got.dtype == torch.float32, name
        torch.testing.assert_close(got, loss(cos16.float(), y_t), rtol=1e-6, atol=1e-6)
        assert float(got) == pytest.approx(float(loss(t32(cos), y_t)), rel=0.05), name


def test_registry_names_heads_and_scale():
    counts = [300, 100, 20, 4]
    assert set(L.LOSS_NAMES) == set(L.LOSS_HEADS) == {
        "ce", "focal", "la", "ldam", "ala", "ains", "acls", "focal_acls", "ldam_ains", "cos_ce",
    }
    for name in L.LOSS_NAMES:
        loss = L.build_loss(name, counts)
        assert loss.scale == (30.0 if L.LOSS_HEADS[name] == "cosine" else 1.0), name
        assert loss.state_dict() == {}, name  # constants are derived from counts, not checkpointed
    assert L.build_loss("ce").scale == 1.0  # no counts needed
    assert L.build_loss("focal", counts, gamma=2.0).gamma == 2.0
    assert L.build_loss("focal_acls", counts).focal_gamma == 1.0
    with pytest.raises(ValueError, match="class_counts"):
        L.build_loss("ala")


def test_constants_are_buffers_that_move_with_to():
    loss = L.ALALoss([100, 10, 1])
    assert "class_adjustment" in dict(loss.named_buffers())
    assert loss.to(torch.float64).class_adjustment.dtype == torch.float64
    assert "log_prior" in dict(L.LogitAdjustedLoss([100, 10, 1]).named_buffers())
    # a loss cast to float64 still computes (and returns) float32
    assert loss(torch.zeros(2, 3), torch.tensor([0, 2])).dtype == torch.float32


# ----------------------------------------------------------------------------- errors
def test_bad_labels_raise():
    loss = L.ALALoss([10, 5, 2])
    for bad in (3, -1):
        with pytest.raises(ValueError, match=f"target label {bad} "):
            loss(torch.zeros(2, 3), torch.tensor([0, bad]))
    with pytest.raises(ValueError, match="target label 7"):
        L.CrossEntropyLoss()(torch.zeros(2, 3), torch.tensor([7, 0]))
    with pytest.raises(ValueError, match="3 classes"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        loss(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("counts,index", [([10, 0, 3], 1), ([10, 4, -2], 2), ([float("nan"), 1], 0)])
def test_bad_counts_raise(counts, index):
    for build in (L.ala_class_term, L.ldam_margins, L.class_balanced_weights, L.ALALoss, L.LogitAdjustedLoss):
        with pytest.raises(ValueError, match=rf"class_counts\[{index}\]"):
            build(counts)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="valid names: ce, focal, la, ldam, ala"):
        L.build_loss("lade", [3, 2])
    with pytest.raises(ValueError, match="class_term"):
        L.ALALoss([3, 2], class_term="cb")
