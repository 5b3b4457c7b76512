"""Does the early-stopping proxy rank trials the way the final objective does? Rank correlations per rung.

ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning") and Hyperband (Li et al. 2018)
pay for themselves only if the cheap signal they cut on — here the KNN accuracy probed at each rung — orders
trials like the real objective (validation linear top-1 after the full budget). Under a StepLR schedule an early
ranking can mislead, so every finished search measures it: for each rung, Spearman's ρ and Kendall's τ-b between
the rung's proxy and the final objective over the trials that reached the end, plus two warnings:

- *weak proxy*: ρ < ``min_rho`` (default 0.5) at a rung;
- *cut within noise*: ASHA stopped a trial whose proxy at the rung was within noise of a survivor's. Noise is a
  configured tolerance in accuracy points when one is set, else ``z`` binomial standard errors of the difference
  of two accuracies measured on ``n`` validation samples: ``z·100·sqrt(p1(1-p1)/n + p2(1-p2)/n)``.

Pure functions (no SciPy, which is not a dependency): average ranks for ties, Spearman as the Pearson
correlation of those ranks, Kendall's τ-b with the tie correction of Kendall (1945).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MIN_TRIALS = 3  # below this a rank correlation is ±1 or undefined by construction


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of the ranks they span (``[10, 20, 20, 30]`` → ``[1, 2.5, 2.5, 4]``)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None when either side is constant (or fewer than 2 points)."""
    if len(x) != len(y):
        raise ValueError(f"pearson: {len(x)} != {len(y)} values")
    n = len(x)
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ with ties: the Pearson correlation of the average ranks."""
    return pearson(average_ranks(x), average_ranks(y))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's τ-b = (C − D) / sqrt((n0 − n1)(n0 − n2)); None when either side is constant.

    ``n0 = n(n−1)/2`` pairs, ``n1``/``n2`` the pairs tied in x / in y; a pair tied in both is counted in
    both and is neither concordant (C) nor discordant (D).
    """
    if len(x) != len(y):
        raise ValueError(f"kendall_tau_b: {len(x)} != {len(y)} values")
    n = len(x)
    concordant = discordant = tied_x = tied_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            tied_x += dx == 0
            tied_y += dy == 0
            if dx * dy > 0:
                concordant += 1
            elif dx * dy < 0:
                discordant += 1
    n0 = n * (n - 1) // 2
    denom = math.sqrt((n0 - tied_x) * (n0 - tied_y))
    return (concordant - discordant) / denom if denom > 0 else None


def accuracy_noise(p1: float, p2: float, n: int, z: float = 1.0) -> float:
    """``z`` standard errors, in points, of the difference of two accuracies (percent) measured on ``n`` samples."""
    if n < 1:
        raise ValueError(f"accuracy_noise: need n >= 1 samples, got {n}")
    var = sum((p / 100) * (1 - p / 100) / n for p in (min(max(p1, 0.0), 100.0), min(max(p2, 0.0), 100.0)))
    return z * 100 * math.sqrt(var)


@dataclass(frozen=True)
class Noise:
    """When two proxy values are indistinguishable: a fixed tolerance (points) if > 0, else binomial SEs."""

    tolerance: float = 0.0  # accuracy points; > 0 overrides the binomial rule
    n: int | None = None  # validation samples the proxy is measured on
    z: float = 1.0

    def of(self, p1: float, p2: float) -> float | None:
        """The noise, in points, between proxies ``p1`` and ``p2``; None when neither rule applies."""
        if self.tolerance > 0:
            return self.tolerance
        return accuracy_noise(p1, p2, self.n, self.z) if self.n else None

    def describe(self) -> str:
        """Which rule sets the noise, in words, for the report's fidelity section."""
        if self.tolerance > 0:
            return f"configured tolerance {self.tolerance:g} points"
        if self.n:
            return f"{self.z:g} binomial standard error(s) of the difference on {self.n} validation samples"
        return "unknown (no tolerance configured and no validation sample count)"


@dataclass(frozen=True)
class TrialHistory:
    """What fidelity needs of a trial: its proxy at each probed epoch, how it ended, and its final objective."""

    trial_id: str
    status: str  # "finished", "early_stopped", ... (see ms2l_ray.studies.search.summary)
    proxies: Mapping[int, float]  # epoch → proxy value reported at that epoch
    objective: float | None = None  # finished trials only


@dataclass(frozen=True)
class RungFidelity:
    """Rank agreement between the proxy at rung ``epoch`` and the final objective (None: too few trials).

    Why: ASHA cuts trials on the proxy, which is only sound when the proxy ranks trials as the objective does.
    """

    epoch: int
    n: int  # finished trials with a proxy at this rung
    spearman: float | None
    kendall: float | None


@dataclass(frozen=True)
class CloseCut:
    """A trial stopped at ``epoch`` whose proxy was within ``noise`` of a survivor's there."""

    trial_id: str
    epoch: int
    proxy: float
    survivor_id: str
    survivor_proxy: float
    noise: float


@dataclass
class Fidelity:
    """How far early stopping can be trusted: per-rung rank correlations and the trials cut within noise."""

    rungs: list[RungFidelity] = field(default_factory=list)
    close_cuts: list[CloseCut] = field(default_factory=list)
    min_rho: float = 0.5
    noise: str = ""

    def weak(self) -> list[RungFidelity]:
        """Rungs whose Spearman correlation is below ``min_rho``: cutting trials there may drop good ones."""
        return [r for r in self.rungs if r.spearman is not None and r.spearman < self.min_rho]

    def warnings(self) -> list[str]:
        """One line per weak rung and per close cut, for the console and the report."""
        out = [f"weak proxy at epoch {r.epoch}: Spearman rho={r.spearman:.2f} < {self.min_rho:g} over {r.n} "
               f"finished trials; ranking on it may cut good trials" for r in self.weak()]
        out += [f"trial {c.trial_id} was stopped at epoch {c.epoch} with proxy {c.proxy:.2f}, within noise "
                f"(±{c.noise:.2f}) of survivor {c.survivor_id}'s {c.survivor_proxy:.2f}" for c in self.close_cuts]
        return out

    def metrics(self) -> dict[str, float]:
        """Parent-run metrics: ``proxy_spearman_rung<epoch>``, ``proxy_kendall_rung<epoch>``, ``proxy_n_rung…``."""
        out: dict[str, float] = {}
        for r in self.rungs:
            out[f"proxy_n_rung{r.epoch}"] = float(r.n)
            if r.spearman is not None:
                out[f"proxy_spearman_rung{r.epoch}"] = r.spearman
            if r.kendall is not None:
                out[f"proxy_kendall_rung{r.epoch}"] = r.kendall
        out["proxy_close_cuts"] = float(len(self.close_cuts))
        return out

    def lines(self) -> list[str]:
        """Human-readable summary (one line per rung), then the warnings."""
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:+.2f}"

        out = [f"epoch {r.epoch}: Spearman {f(r.spearman)}, Kendall tau-b {f(r.kendall)} over {r.n} finished trials"
               + ("" if r.n >= MIN_TRIALS else f" (needs >= {MIN_TRIALS})") for r in self.rungs]
        return out + [f"WARNING: {w}" for w in self.warnings()]


def rung_correlation(trials: Sequence[TrialHistory], epoch: int) -> RungFidelity:
    """Spearman and Kendall between the proxy at ``epoch`` and the final objective, over finished trials."""
    pairs = [(t.proxies[epoch], t.objective) for t in trials
             if t.status == "finished" and t.objective is not None and epoch in t.proxies]
    if len(pairs) < MIN_TRIALS:
        return RungFidelity(epoch, len(pairs), None, None)
    xs, ys = [p for p, _ in pairs], [float(o) for _, o in pairs]  # type: ignore[misc]
    return RungFidelity(epoch, len(pairs), spearman(xs, ys), kendall_tau_b(xs, ys))


def close_cuts(trials: Sequence[TrialHistory], rungs: Sequence[int], mode: str, noise: Noise) -> list[CloseCut]:
    """Trials stopped at a rung whose proxy there was within noise of (or better than) a survivor's.

    A trial is *cut at rung r* when it was early-stopped and ``r`` is its last probed epoch; a *survivor* of
    ``r`` has a proxy at ``r`` and went on (a later probe, or it finished). The survivor with the smallest margin
    over the cut trial (most negative when the cut trial was in fact ahead) is reported.
    """
    sign = 1.0 if mode == "max" else -1.0
    out: list[CloseCut] = []
    for t in trials:
        if t.status != "early_stopped" or not t.proxies:
            continue
        epoch = max(t.proxies)
        if epoch not in rungs:
            continue
        a = t.proxies[epoch]
        survivors = [s for s in trials if s is not t and epoch in s.proxies
                     and (s.status == "finished" or max(s.proxies) > epoch)]
        close = []
        for s in survivors:
            b = s.proxies[epoch]
            tol = noise.of(a, b)
            if tol is not None and sign * (b - a) <= tol:
                close.append((sign * (b - a), s, b, tol))
        if close:
            _, s, b, tol = min(close, key=lambda c: c[0])
            out.append(CloseCut(t.trial_id, epoch, a, s.trial_id, b, tol))
    return out


def proxy_fidelity(trials: Sequence[TrialHistory], rungs: Sequence[int], mode: str, noise: Noise,
                   min_rho: float = 0.5) -> Fidelity:
    """Rank correlation at every rung (that any trial reported) and the cuts that were within noise."""
    seen = {e for t in trials for e in t.proxies}
    epochs = sorted(e for e in rungs if e in seen)
    return Fidelity(rungs=[rung_correlation(trials, e) for e in epochs],
                    close_cuts=close_cuts(trials, epochs, mode, noise), min_rho=min_rho, noise=noise.describe())
