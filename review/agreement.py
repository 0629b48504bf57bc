"""Agreement between raters: Cohen's kappa for two, Fleiss' kappa for several (labels are any strings).

Shared by the web app's multi-reviewer figures and the judge's people-vs-policy comparison.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when undefined (no items)."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca.keys() | cb.keys()) / (n * n)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else 0.0  # both raters used one label throughout
    return (observed - expected) / (1 - expected)


def fleiss_kappa(items: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa; every item must have the same number (>= 2) of ratings. None when undefined."""
    if not items:
        return None
    m = len(items[0])
    if m < 2 or any(len(i) != m for i in items):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings per item")
    n = len(items)
    totals: Counter[str] = Counter()
    p_items = 0.0
    for ratings in items:
        counts = Counter(ratings)
        totals.update(counts)
        p_items += (sum(c * c for c in counts.values()) - m) / (m * (m - 1))
    p_bar = p_items / n
    p_e = sum((t / (n * m)) ** 2 for t in totals.values())
    if p_e == 1.0:
        return 1.0 if p_bar == 1.0 else 0.0
    return (p_bar - p_e) / (1 - p_e)
