"""A judgement row for a draft (what the judge stage writes), for the desk's score filter and highlights."""

from __future__ import annotations

import hashlib

from storage.models import Judgement


def add_judgement(wired, draft_id: int, overall: float, reason: str = "The reasoning never translates the input.") -> None:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        uow.session.add(Judgement(
            draft_id=draft_id, cache_key=hashlib.sha256(f"{draft_id}-{overall}".encode()).hexdigest(),
            backend="fake", model="judge-fake", rubric_name="default", rubric_hash="0" * 64,
            scores={"faithfulness": {"score": 2, "reason": reason}, "fluency": {"score": 4, "reason": "Reads well."}},
            overall=overall))
        uow.commit()
