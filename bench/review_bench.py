"""Review benchmark: what the safety of bulk decisions costs, on a fresh PostgreSQL database.

    /work/venv/bin/python bench/review_bench.py --drafts 5000

Creates N records with fake drafts, then times `review.bulk.auto_approve` (a version check and an
audit event for every draft, one UPDATE ... RETURNING per chunk of 200) against the competitor: a
single plain `UPDATE drafts SET status = 'approved'` with no version check and no audit trail. Then
times an export to CSV and the import of an approve decision for every row (each row checked on
its own: load, versioned UPDATE, event). Prints drafts/s and the ratio.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generation.backends import create_backend  # noqa: E402
from generation.run import generate_drafts  # noqa: E402
from generation.templates import load_template  # noqa: E402
from reasongen.bootstrap import bootstrap  # noqa: E402
from reasongen.settings import Settings  # noqa: E402
from review import bulk, exchange  # noqa: E402
from benchdb import fresh_database  # noqa: E402
from storage.models import Record  # noqa: E402
from storage.repositories.reviews import DraftFilter  # noqa: E402



def seed(wired, n: int) -> None:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        ds = uow.records.get_or_create_dataset("bench")
        uow.session.add_all(
            Record(dataset_id=ds.id, key=f"r{i}", lang="en", instruction=f"Question {i}?", input="", output=f"A{i}",
                   content_hash=f"{i:064d}", meta={}) for i in range(n))
        uow.commit()
        ids = uow.records.ids(ds.id)
    generate_drafts(wired.uow, ids, create_backend("fake", wired.settings), load_template(), sub_batch_size=500)


def timed(label: str, n: int, fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    took = time.perf_counter() - start
    print(f"{label:<52} {took:7.2f} s  {n / took:9.0f} drafts/s")
    return took


def reset(wired) -> None:  # type: ignore[no-untyped-def]
    with wired.uow() as uow:
        uow.session.execute(text("UPDATE drafts SET status = 'pending'"))
        uow.commit()


def run(wired, n: int) -> None:  # type: ignore[no-untyped-def]
    safe = timed("auto_approve (versioned + audit event per draft)", n,
                 lambda: bulk.auto_approve(wired.uow, DraftFilter(), "bench"))
    reset(wired)

    def plain() -> None:
        with wired.uow() as uow:
            uow.session.execute(text("UPDATE drafts SET status = 'approved' WHERE status = 'pending'"))
            uow.commit()

    unsafe = timed("competitor: one plain UPDATE (no check, no audit)", n, plain)
    print(f"ratio safe/plain: {safe / unsafe:.1f}x")
    reset(wired)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pending.csv"
        with wired.uow() as uow:
            timed("export CSV", n, lambda: exchange.export_file(uow, DraftFilter(), path, "csv"))
        decided = io.StringIO()
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        decided.write(lines[0] + "\n" + "".join(line[:-2] + ",approve,\n" for line in lines[1:]))
        path.write_text(decided.getvalue(), encoding="utf-8")
        timed("import CSV (approve every row, each checked alone)", n,
              lambda: exchange.import_decisions(wired.uow, path, "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=5000)
    args = parser.parse_args()
    with fresh_database("rgbench_review") as url:
        wired = bootstrap(Settings(database_url=url, broker_url=None))
        seed(wired, args.drafts)
        run(wired, args.drafts)
        wired.close()


if __name__ == "__main__":
    main()
