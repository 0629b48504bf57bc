"""Web app benchmark on a fresh PostgreSQL database, against a real `reasongen serve` process.

    .venv/bin/python bench/web_bench.py queue --drafts 1000000
    .venv/bin/python bench/web_bench.py load --records 1000 --reviewers 10

queue: N drafts (SQL-generated: en/ja/zh, four fields, a tenth flagged (all of them pending), a fifth approved). Times the review
queue's next page (GET /api/drafts, keyset: after=<last id>) under several filters at positions spread over
the whole table, and single decisions (POST /api/drafts/ID/decision), as server time (the app's Server-Timing
header: routing, auth, SQL, JSON; no client or network). Competitor, in the same run and the same process:
the same page by LIMIT/OFFSET (the usual way) at the same positions, both through the same repository query.

load: a batch of R drafts decided by K concurrent reviewers, each a thread with its own token doing what the
desk does (GET /desk, which leases a draft; POST the decision). Checks that every draft has exactly one
decision event (none lost, none doubled) and reports request p95. Competitor: the same reviewers without
leases, each taking the first pending draft of the queue (optimistic locking alone: they collide).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdb import fresh_database  # noqa: E402
from reasongen.bootstrap import bootstrap  # noqa: E402
from reasongen.settings import Settings  # noqa: E402
from web import accounts  # noqa: E402
from web.queries import Filters  # noqa: E402

REASONGEN = str(Path(sys.executable).with_name("reasongen"))
SEED_SQL = [
    "INSERT INTO datasets (name, created_at, updated_at) VALUES ('bench', now(), now())",
    """INSERT INTO records (dataset_id, key, version, lang, instruction, input, output, field, uniqueness, meta,
       content_hash, created_at, updated_at)
       SELECT (SELECT id FROM datasets WHERE name = 'bench'), 'k' || g, 1, (ARRAY['en','ja','zh'])[1 + g % 3],
              'Question ' || g || '?', '', 'Answer ' || g, (ARRAY['math','ml','code','chat'])[1 + g % 4],
              (ARRAY['low','high'])[1 + g % 2], '{}'::jsonb, md5(g::text) || md5('r' || g), now(), now()
       FROM generate_series(1, :n) g""",
    """INSERT INTO drafts (record_id, cache_key, record_hash, template_name, template_hash, backend, model, params,
       transformed_input, reasoning, response, flags, is_fake, is_current, status, edited, version,
       prompt_tokens, completion_tokens, cost_usd, latency_s, created_at, updated_at)
       SELECT r.id, md5(r.id::text) || md5('d' || r.id), r.content_hash, 'reason', repeat('0', 64), 'fake',
              'fake', '{}'::jsonb, 'Input ' || r.id, 'Reasoning about question ' || r.id, 'Answer ' || r.id,
              CASE WHEN r.id % 10 = 3 THEN '["lang_mismatch"]'::jsonb ELSE '[]'::jsonb END, true, true,
              CASE WHEN :some_approved AND r.id % 5 = 0 THEN 'approved' ELSE 'pending' END, false, 1, 10, 20, 0,
              0, now(), now()
       FROM records r""",
    "ANALYZE",
]
FILTERS = {"pending": {}, "pending+ja": {"lang": "ja"}, "pending+flag": {"flag": "lang_mismatch"},
           "pending+ja+math": {"lang": "ja", "field": "math"}}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def seed(url: str, n: int, some_approved: bool = True) -> float:
    start = time.perf_counter()
    wired = bootstrap(Settings(database_url=url))
    with wired.engine.begin() as conn:
        for sql in SEED_SQL:
            params = {k: v for k, v in {"n": n, "some_approved": some_approved}.items() if f":{k}" in sql}
            conn.execute(text(sql), params)
    wired.close()
    return time.perf_counter() - start


def tokens(url: str, names: list[str]) -> dict[str, str]:
    wired = bootstrap(Settings(database_url=url))
    with wired.uow() as uow:
        found = {}
        for name in names:
            accounts.add_user(uow, name, "reviewer", None)
            found[name] = accounts.new_token(uow, name)
        uow.commit()
    wired.close()
    return found


@contextmanager
def server(url: str, port: int) -> Iterator[str]:
    env = dict(os.environ, REASONGEN_DATABASE_URL=url)
    proc = subprocess.Popen([REASONGEN, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("reasongen serve did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def server_ms(response: httpx.Response) -> float:
    return float(response.headers["server-timing"].split("dur=")[1])


# -- queue ----------------------------------------------------------------------------------------
def bench_queue(n: int, pages: int, port: int) -> None:
    with fresh_database("rgwebq") as url:
        print(f"seeding {n:,} records and drafts ...", flush=True)
        print(f"  seeded in {seed(url, n):.1f} s")
        token = tokens(url, ["bench"])["bench"]
        with server(url, port) as base, httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}) as c:
            c.get("/api/drafts")  # warm the pool
            positions = [int(n * k / pages) for k in range(pages)]
            for name, params in FILTERS.items():
                times = [server_ms(c.get("/api/drafts", params={**params, "after": after, "limit": 50}))
                         for after in positions]
                walk, after = [], None
                for _ in range(pages):  # a reviewer paging on: after = the last id of the previous page
                    r = c.get("/api/drafts", params={**params, "limit": 50, **({"after": after} if after else {})})
                    walk.append(server_ms(r))
                    after = r.json()["next_after"]
                print(f"  next page  {name:16} p50 {pct(times + walk, .5):6.2f} ms  p95 {pct(times + walk, .95):6.2f} ms"
                      f"  ({len(times + walk)} pages)")
            ids = random.Random(1).sample([i for i in range(1, n + 1) if i % 5], 300)
            decisions = [server_ms(c.post(f"/api/drafts/{i}/decision", json={"action": "approve", "version": 1}))
                         for i in ids]
            print(f"  decision   approve          p50 {pct(decisions, .5):6.2f} ms  p95 {pct(decisions, .95):6.2f} ms"
                  f"  ({len(decisions)} decisions)")
        compare_offset(url, n, pages)


def compare_offset(url: str, n: int, pages: int) -> None:
    """Keyset against LIMIT/OFFSET for the same pages (same process, same repository query)."""
    wired = bootstrap(Settings(database_url=url))
    flt = Filters(lang="ja")
    keyset, offset = [], []
    with wired.uow() as uow:
        base = uow.reviews._rows_stmt(flt.draft_filter())
        for k in range(0, pages, max(1, pages // 20)):
            skip = int(n * 0.8 / 3 * k / pages)  # pending ja drafts are ~27% of all
            start = time.perf_counter()
            rows = uow.session.execute(base.offset(skip).limit(50)).all()
            offset.append((time.perf_counter() - start) * 1000)
            after = rows[0][0].id - 1 if rows else None
            start = time.perf_counter()
            uow.reviews.find(flt.draft_filter(after), limit=50)
            keyset.append((time.perf_counter() - start) * 1000)
    wired.close()
    print(f"  in-process, pending+ja, same {len(keyset)} pages over the table: keyset p95 {pct(keyset, .95):.2f} ms,"
          f" LIMIT/OFFSET p95 {pct(offset, .95):.2f} ms -> {pct(offset, .95) / pct(keyset, .95):.0f}x")


# -- load -----------------------------------------------------------------------------------------
def bench_load(records: int, reviewers: int, port: int) -> None:
    results = {}
    for mode in ("leases", "no-leases"):
        with fresh_database("rgwebl") as url:
            seed(url, records, some_approved=False)
            with server(url, port) as base:
                results[mode] = run_reviewers(url, base, records, reviewers, mode)
    a, b = results["leases"], results["no-leases"]
    print(f"  ratio: no-leases took {b['seconds'] / a['seconds']:.2f}x the time and wasted {b['conflicts']} "
          f"requests on collisions (leases: {a['conflicts']})")


def run_reviewers(url: str, base: str, records: int, k: int, mode: str) -> dict[str, Any]:
    names = [f"rev{i}" for i in range(k)]
    toks = tokens(url, names)
    latencies: list[float] = []
    server_times: list[float] = []
    decided: list[int] = []
    conflicts = [0]
    lock = threading.Lock()

    def reviewer(name: str) -> None:
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {toks[name]}"}, timeout=30) as c:
            while True:
                draft = _next_draft(c, mode, latencies, server_times, lock)
                if draft is None:
                    return
                start = time.perf_counter()
                r = c.post(f"/api/drafts/{draft[0]}/decision", json={"action": "approve", "version": draft[1]})
                with lock:
                    latencies.append((time.perf_counter() - start) * 1000)
                    server_times.append(server_ms(r))
                    if r.status_code == 200:
                        decided.append(draft[0])
                    else:
                        conflicts[0] += 1
                        if conflicts[0] == 1:
                            print(f"    first refusal: {r.status_code} {r.text[:300]}")

    start = time.perf_counter()
    threads = [threading.Thread(target=reviewer, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    events, doubled, approved = _check(url)
    print(f"  {mode:9}: {k} reviewers decided {len(decided)} of {records} in {seconds:.1f} s; "
          f"request p95 {pct(latencies, .95):.1f} ms (server {pct(server_times, .95):.1f} ms); "
          f"{conflicts[0]} refused as conflicts; events {events}, doubled {doubled}, approved {approved}")
    assert len(decided) == len(set(decided)) == events == approved == records and doubled == 0
    return {"seconds": seconds, "conflicts": conflicts[0]}


def _next_draft(c: httpx.Client, mode: str, lat: list[float], srv: list[float],
                lock: threading.Lock) -> tuple[int, int] | None:
    start = time.perf_counter()
    if mode == "leases":
        r = c.get("/desk")
        found = re.search(r'data-draft-id="(\d+)" data-version="(\d+)"', r.text)
        result = (int(found.group(1)), int(found.group(2))) if found else None
    else:
        items = c.get("/api/drafts", params={"limit": 1}).json()["items"]
        r = None
        result = (items[0]["id"], items[0]["version"]) if items else None
    with lock:
        lat.append((time.perf_counter() - start) * 1000)
        if r is not None:
            srv.append(server_ms(r))
    return result


def _check(url: str) -> tuple[int, int, int]:
    wired = bootstrap(Settings(database_url=url))
    with wired.engine.connect() as conn:
        events = conn.scalar(text("SELECT count(*) FROM review_events"))
        doubled = conn.scalar(text("SELECT count(*) FROM (SELECT draft_id FROM review_events GROUP BY draft_id "
                                   "HAVING count(*) > 1) x"))
        approved = conn.scalar(text("SELECT count(*) FROM drafts WHERE status = 'approved'"))
    wired.close()
    return int(events or 0), int(doubled or 0), int(approved or 0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    q = sub.add_parser("queue")
    q.add_argument("--drafts", type=int, default=1_000_000)
    q.add_argument("--pages", type=int, default=100)
    ld = sub.add_parser("load")
    ld.add_argument("--records", type=int, default=1000)
    ld.add_argument("--reviewers", type=int, default=10)
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args(argv)
    run: Callable[[], None] = (lambda: bench_queue(args.drafts, args.pages, args.port)) if args.what == "queue" \
        else (lambda: bench_load(args.records, args.reviewers, args.port))
    run()


if __name__ == "__main__":
    main()
