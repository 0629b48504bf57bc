"""Ingest benchmark: `reasongen ingest` of N synthetic JSONL records into PostgreSQL vs plain COPY.

    /work/venv/bin/python bench/ingest_bench.py --records 1000000

Generates N mixed en/ja/zh records (lang given, so no language detection) into a temp dir, creates a
fresh migrated PostgreSQL database, and runs the real CLI (`reasongen ingest ... --json`) in a child
process, timing it and reading the child's peak RSS from os.wait4. It then ingests the same file again
(the idempotent path: every record unchanged) and, as the competitor, COPYs the same rows from a
prepared CSV file into a plain table (no indexes) in the same database. Prints records/s, peak RSS and
the ratios. Targets: >= 20,000 records/s and <= 400 MB peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.migrate import upgrade  # noqa: E402

TARGET_RATE, TARGET_RSS_MB = 20_000, 400
FIELDS = ("quality-engineering", "machine-learning", "math", "general")
TEXTS = {
    "en": ("Explain step {i} of the inspection plan for lot {j}.", "The lot has {j} parts from line {k}.",
           "Step {i} checks a sample of {k} parts; if more than {m} fail, the whole lot {j} is held for review."),
    "ja": ("ロット{j}の検査計画の手順{i}を説明してください。", "ロットには{j}個の部品があります。",
           "手順{i}では{k}個を抜き取り、{m}個を超える不良があればロット{j}全体を保留にします。"),
    "zh": ("请说明批次{j}检验计划的第{i}步。", "该批次共有{j}个零件。",
           "第{i}步抽取{k}个零件，如果超过{m}个不合格，就暂扣整个批次{j}。"),
}
LANGS = ("en", "ja", "zh")


def synthetic(i: int) -> dict[str, str]:
    lang = LANGS[i % 3]
    instruction, input_text, output = TEXTS[lang]
    values = {"i": i, "j": i * 7 % 100_003, "k": i % 97 + 3, "m": i % 5}
    return {"id": f"{lang}-{i:08d}", "lang": lang, "field": FIELDS[i % 4], "uniqueness": "high" if i % 5 else "low",
            "instruction": instruction.format(**values), "input": input_text.format(**values) if i % 2 else "",
            "output": output.format(**values)}


def write_inputs(folder: Path, n: int) -> tuple[Path, Path]:
    """The JSONL file to ingest, and the same rows as CSV for the COPY competitor."""
    jsonl, flat = folder / "records.jsonl", folder / "records.csv"
    with open(jsonl, "wb") as out_j, open(flat, "w", newline="", encoding="utf-8") as out_c:
        rows = csv.writer(out_c)
        for i in range(n):
            rec = synthetic(i)
            line = orjson.dumps(rec)
            out_j.write(line + b"\n")
            rows.writerow([1, rec["id"], rec["lang"], rec["instruction"], rec["input"], rec["output"], rec["field"],
                           rec["uniqueness"], "{}", hashlib.sha256(line).hexdigest(), 1])
    return jsonl, flat


def run_ingest(db_url: str, path: Path, batch_size: int, folder: Path) -> tuple[float, float, dict]:
    """(seconds, peak RSS in MB, summary) of one `reasongen ingest` in a child process."""
    cmd = [sys.executable, "-c", "from cli.main import app; app(prog_name='reasongen')",
           "--database-url", db_url, "ingest", str(path), "--dataset", "bench", "--json",
           "--batch-size", str(batch_size)]
    out, err = folder / "stdout", folder / "stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=stderr)
        _, status, rusage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not any other's
        seconds = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"ingest failed ({code}):\n{err.read_text()[-2000:]}")
    return seconds, rusage.ru_maxrss / 1024, orjson.loads(out.read_bytes())  # ru_maxrss is in KiB on Linux


def copy_plain(admin: str, db: str, flat: Path) -> float:
    with psycopg.connect(_db(admin, db), autocommit=True) as conn:
        conn.execute("CREATE TABLE copy_plain (dataset_id int, key text, lang text, instruction text, input text,"
                     " output text, field text, uniqueness text, meta jsonb, content_hash text, version int)")
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY copy_plain FROM STDIN WITH (FORMAT csv)") as copy, \
                open(flat, "rb") as fh:
            while chunk := fh.read(1 << 20):
                copy.write(chunk)
        return time.perf_counter() - start


def _db(admin: str, name: str) -> str:
    return admin.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--pg", default=os.environ.get("REASONGEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="an admin connection; a fresh database is created next to it and dropped after")
    args = parser.parse_args()
    db = f"rg_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _bench(args, db, Path(tmp))
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _bench(args: argparse.Namespace, db: str, folder: Path) -> None:
    n = args.records
    t0 = time.perf_counter()
    jsonl, flat = write_inputs(folder, n)
    print(f"generated {n:,} records ({jsonl.stat().st_size / 2**20:.0f} MiB JSONL) in {time.perf_counter() - t0:.1f}s")
    url = _db(args.pg, db)
    upgrade(url)
    first_s, first_rss, first = run_ingest(url, jsonl, args.batch_size, folder)
    assert first["inserted"] == n and first["rejected"] == 0, first
    again_s, again_rss, again = run_ingest(url, jsonl, args.batch_size, folder)
    assert again["unchanged"] == n and again["inserted"] == again["updated"] == 0, again
    copy_s = copy_plain(args.pg, db, flat)
    report(n, first_s, first_rss, again_s, again_rss, copy_s)


def report(n: int, first_s: float, first_rss: float, again_s: float, again_rss: float, copy_s: float) -> None:
    rate = n / first_s
    print(f"{'':28}{'seconds':>10}{'records/s':>12}{'peak RSS':>11}")
    print(f"{'reasongen ingest (new)':28}{first_s:10.1f}{rate:12,.0f}{first_rss:9.0f}MB")
    print(f"{'reasongen ingest (again)':28}{again_s:10.1f}{n / again_s:12,.0f}{again_rss:9.0f}MB")
    print(f"{'COPY into a plain table':28}{copy_s:10.1f}{n / copy_s:12,.0f}")
    print(f"ratio ingest/COPY time: {first_s / copy_s:.1f}x (re-ingest: {again_s / copy_s:.1f}x)")
    ok = rate >= TARGET_RATE and max(first_rss, again_rss) <= TARGET_RSS_MB
    print(f"target >= {TARGET_RATE:,} records/s and <= {TARGET_RSS_MB} MB: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
