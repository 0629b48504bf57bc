"""Agreement between raters: Cohen's kappa for two, Fleiss' kappa for several (labels are any strings).

Shared by the web app's multi-reviewer figures and the judge's people-vs-policy comparison.

People vs policy (``reasongen review agreement``): a draft counts when a policy decided it (audit reviewer
``policy:NAME@HASH``) and a person decided it too (any other reviewer: a spot check from ``review next --sample``,
or a later override). The latest decision of each side is compared: a 2x2 confusion matrix (person x policy,
approve/reject) and Cohen's kappa, overall and per language.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from review.policy import POLICY_PREFIX
from storage.models import Draft, Record, ReviewEvent
from storage.uow import UnitOfWork


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


LABELS = ("approve", "reject")


def _latest(uow: UnitOfWork, policy_side: bool, policy: str | None) -> dict[int, str]:
    stmt = select(ReviewEvent.draft_id, ReviewEvent.action, ReviewEvent.reviewer).where(
        ReviewEvent.action.in_(LABELS)).order_by(ReviewEvent.id)
    if policy_side:
        prefix = f"{POLICY_PREFIX}{policy}@" if policy else POLICY_PREFIX
        stmt = stmt.where(ReviewEvent.reviewer.startswith(prefix, autoescape=True))
    else:
        stmt = stmt.where(~ReviewEvent.reviewer.startswith(POLICY_PREFIX, autoescape=True))
    latest: dict[int, str] = {}
    for draft_id, action, _ in uow.session.execute(stmt):
        latest[int(draft_id)] = str(action)
    return latest


def _matrix(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    cells = Counter(pairs)
    return {
        "n": len(pairs),
        "matrix": {f"person_{a}": {f"policy_{b}": cells[(a, b)] for b in LABELS} for a in LABELS},
        "agree": sum(cells[(x, x)] for x in LABELS),
        "kappa": _kappa(pairs),
    }


def agreement(uow: UnitOfWork, policy: str | None = None) -> dict[str, Any]:
    by_policy = _latest(uow, True, policy)
    by_person = _latest(uow, False, None)
    both = sorted(set(by_policy) & set(by_person))
    langs: dict[int, str] = {}
    for start in range(0, len(both), 5000):
        stmt = (select(Draft.id, Record.lang).join(Record, Record.id == Draft.record_id)
                .where(Draft.id.in_(both[start : start + 5000])))
        langs.update({int(i): str(lang) for i, lang in uow.session.execute(stmt)})
    pairs = {d: (by_person[d], by_policy[d]) for d in both}
    per_lang: dict[str, list[tuple[str, str]]] = {}
    for d, pair in pairs.items():
        per_lang.setdefault(langs.get(d, "?"), []).append(pair)
    return {"policy": policy, "policy_decided": len(by_policy), **_matrix(list(pairs.values())),
            "by_lang": {lang: _matrix(p) for lang, p in sorted(per_lang.items())}}


def decided_by_policy(uow: UnitOfWork, name: str) -> dict[str, int]:
    return dict(Counter(_latest(uow, True, name).values()))


def render_agreement(report: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table

    def fmt(k: float | None) -> str:
        return "n/a" if k is None else f"{k:.3f}"

    if not report["n"]:
        who = f"policy {report['policy']}" if report["policy"] else "a policy"
        return (f"No draft was decided by both a person and {who} yet ({report['policy_decided']} decided by the "
                "policy). Spot-check some: reasongen review next --sample 20")
    matrix = Table("", "policy approve", "policy reject", title="person x policy")
    for a in LABELS:
        row = report["matrix"][f"person_{a}"]
        matrix.add_row(f"person {a}", str(row["policy_approve"]), str(row["policy_reject"]))
    langs = Table("lang", "n", "agree", "kappa")
    langs.add_row("all", str(report["n"]), str(report["agree"]), fmt(report["kappa"]))
    for lang, m in report["by_lang"].items():
        langs.add_row(lang, str(m["n"]), str(m["agree"]), fmt(m["kappa"]))
    return Group(matrix, langs)


def _kappa(pairs: list[tuple[str, str]]) -> float | None:
    k = cohen_kappa([a for a, _ in pairs], [b for _, b in pairs])
    return None if k is None else round(k, 4)
