"""Paired statistics over seeds: is a cell's difference to another cell more than seed noise?

Every cell of an ablation grid runs with the same seeds, and a seed fixes the data split, the
validation hold-out and the evaluation's initialisation for *every* cell (``Grid.cell_config``), so cell
A at seed 3 and cell B at seed 3 share everything the ablation does not vary. The right test is then the
**paired** t-test on the per-seed differences, matched by seed value (a seed present in only one of the
two cells is dropped, never matched to another seed). With the 2–5 seeds of an ablation (REFERENCE.md §4:
mean ± std over seeds) the unpaired test would drown the cell effect in the between-seed variance the
pairing removes.

For differences d₁..dₙ: mean d̄, sample sd s (ddof 1), se = s/√n, t = d̄/se with n − 1 degrees of freedom,
two-sided p = P(|T| ≥ |t|), 95 % CI d̄ ± t₀.₉₇₅,ₙ₋₁·se.

Edge cases, explicitly:

- n < 2 paired seeds: no variance estimate, so no CI and no p ("n too small"); the mean difference of the
  single pair is still reported.
- zero variance (every seed gives the same difference — deterministic runs, or a cell compared with
  itself): the limit of the t-test as s → 0, i.e. p = 0 when d̄ ≠ 0 and p = 1 when d̄ = 0; CI = [d̄, d̄].

Pure Python (``math``): the Student-t distribution comes from the regularized incomplete beta function,
P(|T| ≥ |t|) = I_{ν/(ν+t²)}(ν/2, 1/2), evaluated by its continued fraction (Lentz's method); the quantile
is found by bisection on that tail. No SciPy dependency for three numbers per table cell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LEVEL = 0.95  # confidence level of the reported intervals
SIGNIFICANCE = ((0.01, "**"), (0.05, "*"))  # strictest first: p < 0.01 → "**", p < 0.05 → "*"
TOO_SMALL = "n too small"


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), valid for x < (a+1)/(a+b+2)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1."""
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"betainc needs a, b > 0 and 0 <= x <= 1, got a={a}, b={b}, x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b  # symmetry: I_x(a,b) = 1 − I_{1−x}(b,a)


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (0 < q < 1), by bisection on the two-sided tail (monotone in |t|)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    tail = 2.0 * (1.0 - q)  # two-sided tail mass beyond the quantile
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > tail:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > tail else (lo, mid)
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Paired:
    """A paired comparison A − B over the seeds both have; NaN fields where n is too small."""

    seeds: tuple[int, ...]
    mean: float  # mean of the per-seed differences (NaN with no common seed)
    sd: float  # sample sd of the differences (ddof 1)
    t: float
    df: int
    p: float  # two-sided
    ci_low: float
    ci_high: float
    level: float = LEVEL

    @property
    def n(self) -> int:
        """Number of paired seeds."""
        return len(self.seeds)

    @property
    def too_small(self) -> bool:
        """Fewer than two paired seeds: there is no variance to test against."""
        return self.n < 2

    @property
    def half_width(self) -> float:
        """Half the confidence interval's width, the ± shown beside the mean difference."""
        return (self.ci_high - self.ci_low) / 2.0

    def mark(self) -> str:
        """``**`` (p < 0.01), ``*`` (p < 0.05), "" otherwise, ``n too small`` below two pairs."""
        if self.too_small:
            return TOO_SMALL
        return next((m for cut, m in SIGNIFICANCE if self.p < cut), "")


def paired_t(diffs: Sequence[float], seeds: Sequence[int] | None = None, level: float = LEVEL) -> Paired:
    """Two-sided paired t-test and CI on per-seed differences (see the module docstring for the edge cases)."""
    seeds = tuple(seeds) if seeds is not None else tuple(range(len(diffs)))
    if len(seeds) != len(diffs):
        raise ValueError(f"{len(diffs)} differences but {len(seeds)} seeds")
    n, nan = len(diffs), math.nan
    mean = math.fsum(diffs) / n if n else nan
    if n < 2:
        return Paired(seeds, mean, nan, nan, max(n - 1, 0), nan, nan, nan, level)
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    df = n - 1
    if sd == 0.0:  # identical differences: the s → 0 limit of the test
        t = math.copysign(math.inf, mean) if mean != 0.0 else nan
        return Paired(seeds, mean, 0.0, t, df, 0.0 if mean != 0.0 else 1.0, mean, mean, level)
    se = sd / math.sqrt(n)
    t = mean / se
    half = t_quantile(0.5 + level / 2.0, df) * se
    return Paired(seeds, mean, sd, t, df, t_two_sided_p(t, df), mean - half, mean + half, level)


def paired_by_seed(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> Paired:
    """A − B on the seeds present in both (sorted by seed); unmatched seeds are dropped."""
    common = sorted(set(a) & set(b))
    return paired_t([a[s] - b[s] for s in common], common, level)
