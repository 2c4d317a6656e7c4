"""Data-curation scores and pruning (reluflow.training.curation) against brute-force recounts and their contracts."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import xarray as xr

from reluflow import monitor
from reluflow.training import curation as cur
from reluflow.training.gd import backprop_gradient

N_STEPS, EVERY, SCORE_STEP = 40, 4, 16


def _problem(seed=0, n=36, d=4, q=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(q, d)) * 1.5
    y = np.arange(n) % q
    X = centres[y] + rng.normal(size=(n, d))
    return X, y


@pytest.fixture(scope="module")
def tiny():
    X, y = _problem()
    runs = [cur.engine_run(X, y, hidden=[5, 3], seed=s, n_steps=N_STEPS, lr=0.3, record_every=EVERY)
            for s in (0, 1)]
    return X, y, runs


def _plain(params, X):
    weights, biases, W_out, b_out = params
    pre, h = [], X
    for W, b in zip(weights, biases):
        pre.append(h @ W.T + b)
        h = np.maximum(pre[-1], 0.0)
    return pre, h @ W_out.T + b_out


def test_scores_match_a_brute_force_recount(tiny):
    X, y, runs = tiny
    got = cur.run_scores(runs[0], X, y, score_step=SCORE_STEP, seed=3)
    states, steps = monitor.trajectory_parameters(runs[0]), runs[0].step.values
    S = len(states)
    win = [k for k in range(S) if steps[k] <= SCORE_STEP]
    for i in range(len(y)):  # one point at a time, loops over the records
        T, ok = [], []
        for k in range(S):
            pre, z = _plain(states[k], X[i:i + 1])
            T.append(np.concatenate([p[0] for p in pre]) <= 0)
            ok.append(int(np.argmax(z[0])) == y[i])
        frac = np.mean([T[k].mean() for k in win])
        changes = sum(int((T[k] != T[k - 1]).sum()) for k in win[1:])
        forgot = sum(ok[k - 1] and not ok[k] for k in range(1, S)) if any(ok) else S
        z = _plain(states[win[-1]], X[i:i + 1])[1][0]
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert got["truncation"][i] == pytest.approx(frac, abs=1e-15)
        assert got["truncation_changes"][i] == changes
        assert got["forgetting"][i] == forgot
        assert got["el2n"][i] == pytest.approx(np.linalg.norm(p - np.eye(3)[y[i]]), rel=1e-12)
    assert list(got) == list(cur.SCORES)


def test_never_learnt_points_get_more_than_any_count():
    X, y = _problem(seed=4)
    run = cur.engine_run(X, y, hidden=[3], seed=0, n_steps=8, lr=1e-6, record_every=2)  # barely moves
    got = cur.run_scores(run, X, y, score_step=4)
    states = monitor.trajectory_parameters(run)
    never = ~np.any([_plain(s, X)[1].argmax(axis=1) == y for s in states], axis=0)
    assert never.any()
    assert np.all(got["forgetting"][never] == len(states))
    assert np.all(got["forgetting"][~never] <= (len(states) - 1) // 2 + 1)


def test_grand_matches_single_point_backprop_and_finite_differences(tiny):
    X, y, runs = tiny
    got = cur.run_scores(runs[1], X, y, score_step=SCORE_STEP)["grand"]
    params = monitor.trajectory_parameters(runs[1])[SCORE_STEP // EVERY]
    weights, biases, W_out, b_out = params
    arrays = [*weights, *biases, W_out, b_out]

    def loss(i):
        z = _plain((arrays[:2], arrays[2:4], arrays[4], arrays[5]), X[i:i + 1])[1][0]
        return np.log(np.exp(z - z.max()).sum()) + z.max() - z[y[i]]

    for i in range(6):
        g = backprop_gradient(weights, biases, X[i:i + 1], y[i:i + 1], cost="cross_entropy", W_out=W_out,
                              b_out=b_out, max_condition=np.inf)
        bp = np.sqrt(sum(float((a ** 2).sum()) for a in [*g.weights, *g.biases, g.W_out, g.b_out]))
        assert got[i] == pytest.approx(bp, rel=1e-12)
        fd2, h = 0.0, 1e-6
        for a in arrays:
            for idx in np.ndindex(a.shape):
                old = a[idx]
                a[idx] = old + h
                up = loss(i)
                a[idx] = old - h
                down = loss(i)
                a[idx] = old
                fd2 += ((up - down) / (2 * h)) ** 2
        assert got[i] == pytest.approx(np.sqrt(fd2), rel=1e-6)


def test_random_score_ignores_training_and_follows_the_seed(tiny):
    X, y, runs = tiny
    a = cur.run_scores(runs[0], X, y, score_step=SCORE_STEP, seed=7)["random"]
    b = cur.run_scores(runs[1], X, y, score_step=SCORE_STEP, seed=7)["random"]
    c = cur.run_scores(runs[1], X, y, score_step=SCORE_STEP, seed=8)["random"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_scores_dataset_means_and_direction(tiny):
    X, y, runs = tiny
    ds = cur.scores(runs, X, y, score_step=SCORE_STEP, seed=2)
    assert ds.score_per_run.dims == ("run", "score", "point") and ds.mean_score.dims == ("score", "point")
    np.testing.assert_array_equal(ds.mean_score.values, ds.score_per_run.values.mean(axis=0))
    assert int(ds.hard_when_high.sel(score="truncation")) == -1 and int(ds.hard_when_high.sel(score="el2n")) == 1
    for v in ds.variables.values():
        assert "long_name" in v.attrs and "units" in v.attrs


def test_determinism_and_executor_invariance(tiny):
    X, y, runs = tiny
    a = cur.scores(runs, X, y, score_step=SCORE_STEP, seed=1)
    b = cur.scores(runs, X, y, score_step=SCORE_STEP, seed=1)
    with ThreadPoolExecutor(2) as ex:
        c = cur.scores(runs, X, y, score_step=SCORE_STEP, seed=1, executor=ex)
    xr.testing.assert_identical(a, b)
    xr.testing.assert_identical(a, c)
    data = cur.CurationData("tiny", X, y, X[:12], y[:12], 3)
    kw = dict(fractions=[1.0, 0.5, 0.25], seeds=[0, 1], hidden=[5, 3], n_steps=10, lr=0.3)
    s1 = cur.curation_sweep(data, a, **kw)
    with ThreadPoolExecutor(2) as ex:
        s2 = cur.curation_sweep(data, a, executor=ex, **kw)
    xr.testing.assert_identical(s1, s2)
    with ProcessPoolExecutor(2) as ex:  # the tasks are module-level functions of picklable arguments
        xr.testing.assert_identical(a, cur.scores(runs, X, y, score_step=SCORE_STEP, seed=1, executor=ex))
        xr.testing.assert_identical(s1, cur.curation_sweep(data, a, executor=ex, **kw))
    assert s1.accuracy.dims == ("score", "keep", "fraction", "seed") and np.isfinite(s1.accuracy.values).all()
    # f = 1 keeps every point: the retrain is the full run of that seed
    full = cur.engine_run(X, y, hidden=[5, 3], seed=1, n_steps=10, lr=0.3, record_every=10)
    assert np.all(s1.accuracy.sel(fraction=1.0, seed=1).values == cur.accuracy_on(full, X[:12], y[:12]))


def test_engine_run_does_not_depend_on_record_every():
    X, y = _problem()
    a = cur.engine_run(X, y, hidden=[4], seed=5, n_steps=12, lr=0.2, record_every=1)
    b = cur.engine_run(X, y, hidden=[4], seed=5, n_steps=12, lr=0.2, record_every=12)
    (wa, ba, Wa, bo_a), (wb, bb, Wb, bo_b) = (monitor.trajectory_parameters(t)[-1] for t in (a, b))
    for u, v in zip([*wa, *ba, Wa, bo_a], [*wb, *bb, Wb, bo_b]):
        np.testing.assert_array_equal(u, v)


def test_rank_correlations_match_scipy(tiny):
    from scipy.stats import spearmanr

    X, y, runs = tiny
    ds = cur.scores(runs, X, y, score_step=SCORE_STEP)
    rho = cur.rank_correlations(ds.mean_score)
    assert rho.dims == ("score", "score_other")
    np.testing.assert_allclose(np.diag(rho.values), 1.0)
    np.testing.assert_allclose(rho.values, rho.values.T)
    ref = spearmanr(ds.mean_score.sel(score="el2n"), ds.mean_score.sel(score="forgetting")).statistic
    assert float(rho.sel(score="el2n", score_other="forgetting")) == pytest.approx(ref, abs=1e-14)


# ------------------------------------------------------------------------------------------------------ prune


@pytest.mark.parametrize("f", [1.0, 0.9, 0.5, 0.31, 0.1, 0.03])
def test_prune_keeps_round_f_n_and_hardest_easiest_partition(f):
    s = np.random.default_rng(0).integers(0, 5, size=101).astype(float)  # many ties
    for keep in cur.KEEPS:
        kept = cur.prune(s, f, keep=keep, seed=3)
        assert kept.size == round(f * 101) and np.all(np.diff(kept) > 0)
    hard = cur.prune(s, f, keep="hardest", seed=3)
    if f < 1:
        easy = cur.prune(s, (101 - hard.size) / 101, keep="easiest", seed=3)  # the other N - n points
        assert np.array_equal(np.sort(np.concatenate([hard, easy])), np.arange(101))
        assert s[hard].min() >= s[easy].max()  # the hardest are the highest


def test_prune_direction_from_the_dataset_and_seeded_ties():
    s = np.array([0.1, 0.5, 0.3, 0.9, 0.2])
    da = xr.DataArray(s, dims="point", coords={"hard_when_high": -1})
    assert cur.prune(da, 0.4, keep="hardest").tolist() == [0, 4]  # low = hard
    assert cur.prune(s, 0.4, keep="hardest").tolist() == [1, 3]
    flat = np.zeros(50)
    a, b = cur.prune(flat, 0.5, seed=1), cur.prune(flat, 0.5, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, cur.prune(flat, 0.5, seed=2))


def test_prune_keeps_a_point_of_every_class():
    s = np.arange(20, dtype=float)
    y = np.array([0] * 10 + [1] * 8 + [2] * 2)  # class 0 holds the 10 easiest points
    kept = cur.prune(s, 0.25, keep="hardest", labels=y)
    assert kept.size == 5 and set(y[kept]) == {0, 1, 2}
    assert 9 in kept  # the hardest point of the missing class
    assert cur.prune(s, 0.25, keep="hardest", labels=y, min_per_class=0).tolist() == [15, 16, 17, 18, 19]


@pytest.mark.parametrize("kwargs, word", [
    (dict(fraction=0.0), "fraction"), (dict(fraction=1.5), "fraction"), (dict(fraction=float("nan")), "fraction"),
    (dict(fraction=0.001), "fraction"), (dict(fraction=0.5, keep="middle"), "keep"),
    (dict(fraction=0.5, labels=np.zeros(7, dtype=int)), "labels"), (dict(fraction=0.5, seed=-1), "seed"),
])
def test_prune_refuses_bad_input(kwargs, word):
    with pytest.raises(ValueError, match=word):
        cur.prune(np.arange(10.0), **kwargs)


def test_prune_refuses_bad_scores():
    for bad in (np.zeros((3, 3)), np.array([]), np.array([1.0, np.nan])):
        with pytest.raises(ValueError, match="scores"):
            cur.prune(bad, 0.5)
    with pytest.raises(ValueError, match="scores"):
        cur.prune(xr.DataArray(np.zeros((2, 3)), dims=("score", "point")), 0.5)


def test_run_scores_refuses_bad_input(tiny):
    X, y, runs = tiny
    with pytest.raises(ValueError, match="score_step"):
        cur.run_scores(runs[0], X, y, score_step=SCORE_STEP + 1)
    with pytest.raises(ValueError, match="labels"):
        cur.run_scores(runs[0], X, y[:-1], score_step=SCORE_STEP)
    with pytest.raises(ValueError, match="X"):
        cur.run_scores(runs[0], X[:, :2], y, score_step=SCORE_STEP)
    with pytest.raises(TypeError, match="run"):
        cur.run_scores(3, X, y, score_step=0)
    with pytest.raises(ValueError, match="run steps"):
        params = monitor.trajectory_parameters(runs[0])[0]
        cur.run_scores([(4, params), (2, params)], X, y, score_step=2)
    with pytest.raises(ValueError, match="fractions"):
        ds = cur.scores(runs, X, y, score_step=SCORE_STEP)
        cur.curation_sweep(cur.CurationData("t", X, y, X, y, 3), ds, fractions=[0.5, 0.5], seeds=[0, 1],
                           hidden=[5, 3], n_steps=5, lr=0.1)


# ------------------------------------------------------------------------------------------------ torch path


def test_torch_model_gives_the_same_truncation_scores_through_the_monitor(tiny):
    torch = pytest.importorskip("torch")
    from torch import nn

    X, y, _ = tiny
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 3)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    pairs = [(0, cur.network_parameters(model))]
    with monitor.watch(model, X, labels=y, every=EVERY) as mon:
        for step in range(1, N_STEPS + 1):
            opt.zero_grad()
            nn.functional.cross_entropy(model(Xt), yt).backward()
            opt.step()
            mon.step()
            if step % EVERY == 0:
                pairs.append((step, cur.network_parameters(model)))
    record = mon.result()
    assert record.attrs["model"] == "torch.nn.Sequential"
    via_monitor = cur.truncation_score(record, SCORE_STEP)
    got = cur.run_scores(pairs, X, y, score_step=SCORE_STEP)
    np.testing.assert_allclose(got["truncation"], via_monitor, rtol=0, atol=1e-12)
    # a recount of the changes and forgetting from torch's own forward pass at the recorded weights
    snaps = []
    for _, (weights, biases, W_out, b_out) in pairs:
        net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 3)).double()
        with torch.no_grad():
            for lin, (W, b) in zip(net[::2], [*zip(weights, biases), (W_out, b_out)]):
                lin.weight.copy_(torch.as_tensor(W))
                lin.bias.copy_(torch.as_tensor(b))
            z1 = net[0](Xt)
            z2 = net[2](net[1](z1))
            snaps.append((torch.cat([z1, z2], dim=1).numpy() <= 0, net(Xt).argmax(dim=1).numpy() == y))
    win = [k for k, (s, _) in enumerate(pairs) if s <= SCORE_STEP]
    changes = sum((snaps[k][0] != snaps[k - 1][0]).sum(axis=1) for k in win[1:])
    ok = np.array([c for _, c in snaps])
    forgot = np.where(ok.any(axis=0), (ok[:-1] & ~ok[1:]).sum(axis=0), len(pairs))
    assert np.array_equal(got["truncation_changes"], changes)
    assert np.array_equal(got["forgetting"], forgot)
    w = model[0].weight.detach().numpy()
    assert np.array_equal(cur.network_parameters(model)[0][0], w)
    with pytest.raises(ValueError, match="model"):
        cur.network_parameters(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)))
