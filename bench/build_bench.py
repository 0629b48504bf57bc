"""Build benchmark: `reasongen build-sft` over N approved drafts in PostgreSQL vs a plain `datasets` writer.

    /work/venv/bin/python bench/build_bench.py --drafts 100000

Creates a fresh migrated PostgreSQL database, bulk-inserts N mixed en/ja/zh records and one approved
current draft each (SQLAlchemy executemany, not timed), then times the real CLI
(`reasongen build-sft --dataset bench --out DIR --json`, default formats: prompt_completion, messages,
alpaca, sharegpt, parquet, hf_dataset, llama_factory, axolotl) in a child process, import time included.
A second build (same state) checks that every data file is byte-identical. The competitor writes the
same examples the usual way with `datasets` (Dataset.from_list, to_json for the four JSONL formats,
to_parquet, save_to_disk) in this process, after the same query and example rendering, so it times the
writing alone and has no split, dedupe, manifest or hashing. Target: build under 10 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from reasongen.bootstrap import bootstrap  # noqa: E402
from reasongen.settings import Settings  # noqa: E402
from benchdb import fresh_database  # noqa: E402
from storage.models import Draft, Record  # noqa: E402

TARGET_S = 10.0
FIELDS = ("quality-engineering", "machine-learning", "math", "general")
TEXTS = {
    "en": ("Explain step {i} of the inspection plan for lot {j}.", "The lot has {j} parts from line {k}."),
    "ja": ("ロット{j}の検査計画の手順{i}を説明してください。", "ロットには{j}個の部品があります。"),
    "zh": ("请说明批次{j}检验计划的第{i}步。", "该批次共有{j}个零件。"),
}


def record_row(dataset_id: int, i: int) -> dict:
    lang = ("en", "ja", "zh")[i % 3]
    instruction, input_text = (t.format(i=i, j=i * 7 % 100_003, k=i % 97) for t in TEXTS[lang])
    output = f"Step {i} checks a sample of {i % 97 + 3} parts; if more than {i % 5} fail, the lot is held."
    return dict(dataset_id=dataset_id, key=f"rec-{i:07d}", lang=lang, instruction=instruction, input=input_text,
                output=output, field=FIELDS[i % 4], uniqueness=("low", "high")[i % 2], meta={},
                content_hash=hashlib.sha256(f"{i}".encode()).hexdigest())


def draft_row(record_id: int, i: int) -> dict:
    reasoning = (f"The question asks about step {i} of an inspection plan. The plan samples parts and compares the "
                 f"failures with a limit; the lot is held when the limit is passed, so the answer states both. " * 2)
    return dict(record_id=record_id, cache_key=uuid.uuid4().hex, record_hash="h", template_name="default",
                template_hash="t" * 64, backend="fake", model="bench", params={},
                transformed_input=f"Explain step {i} of the inspection plan for lot {i * 7 % 100_003}.",
                reasoning=reasoning, response=f"Step {i} checks a sample; more failures than the limit hold the lot.",
                flags=[], is_fake=True, is_current=True, status="approved")


def fill(url: str, n: int, chunk: int = 10_000) -> None:
    wired = bootstrap(Settings(database_url=url))
    with wired.uow() as uow:
        dataset_id = uow.records.get_or_create_dataset("bench").id
        for start in range(0, n, chunk):
            rows = [record_row(dataset_id, i) for i in range(start, min(n, start + chunk))]
            ids = uow.session.scalars(insert(Record).returning(Record.id, sort_by_parameter_order=True), rows).all()
            uow.session.execute(insert(Draft), [draft_row(rid, start + k) for k, rid in enumerate(ids)])
        uow.commit()
    # What autovacuum does a minute after a bulk load; without statistics PostgreSQL estimates one row per
    # table and picks a nested loop that makes the build query take minutes.
    with wired.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE records, drafts")
    wired.close()


def phases(url: str, out: Path) -> dict[str, float]:
    """The same build in this process, with the time of each writer (the rest is query, render, manifest)."""
    from training import formats
    from training.build import BuildOptions, build_sft

    times: dict[str, float] = {}

    def timed(name, writer):  # type: ignore[no-untyped-def]
        def run(*args):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            writer(*args)
            times[name] = time.perf_counter() - start
        return run

    formats.WRITERS.update({n: timed(n, w) for n, w in formats.WRITERS.items()})
    wired = bootstrap(Settings(database_url=url))
    start = time.perf_counter()
    build_sft(wired.uow, BuildOptions("bench", out_dir=str(out)))
    times["total in-process"] = time.perf_counter() - start
    wired.close()
    return times


def run_cli(url: str, out: Path) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds of the child, its JSON summary). CPU time shows what the wall time would
    be on an idle machine when other work shares the cores."""
    cmd = [str(Path(sys.executable).with_name("reasongen")), "--database-url", url, "build-sft", "--dataset",
           "bench", "--out", str(out), "--json"]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        stdout.seek(0), stderr.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"build-sft failed: {stderr.read()[-2000:].decode(errors='replace')}")
        return elapsed, usage.ru_utime + usage.ru_stime, json.loads(stdout.read())


def competitor(url: str, out: Path) -> float:
    """The same examples written with `datasets` only (no split/dedupe/manifest)."""
    from datasets import Dataset, disable_progress_bars

    from training.examples import DEFAULT_TEMPLATE, make_example

    disable_progress_bars()
    wired = bootstrap(Settings(database_url=url))
    start = time.perf_counter()
    with wired.uow() as uow:
        rows = uow.builds.approved_rows(uow.records.dataset("bench").id)
    examples = [make_example(r, DEFAULT_TEMPLATE) for r in rows]
    ds = Dataset.from_list([{"prompt": e.prompt, "completion": e.completion, "key": e.key, "instruction": e.instruction,
                             "input": e.input} for e in examples])
    ds.select_columns(["prompt", "completion"]).to_json(str(out / "pc.jsonl"), force_ascii=False)
    ds.map(lambda r: {"messages": [{"role": "user", "content": r["prompt"]},
                                   {"role": "assistant", "content": r["completion"]}]},
           remove_columns=ds.column_names).to_json(str(out / "messages.jsonl"), force_ascii=False)
    ds.map(lambda r: {"output": r["completion"]}, remove_columns=["prompt", "completion", "key"]).to_json(
        str(out / "alpaca.jsonl"), force_ascii=False)
    ds.map(lambda r: {"conversations": [{"from": "human", "value": r["prompt"]},
                                        {"from": "gpt", "value": r["completion"]}]},
           remove_columns=ds.column_names).to_json(str(out / "sharegpt.jsonl"), force_ascii=False)
    ds.to_parquet(str(out / "all.parquet"))
    ds.save_to_disk(str(out / "hf"))
    elapsed = time.perf_counter() - start
    wired.close()
    return elapsed


def identical(a: Path, b: Path) -> bool:
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*")  # noqa: E731
                          if p.is_file() and p.name != "manifest.json"}
    return files(a) == files(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=100_000)
    args = parser.parse_args()
    with fresh_database("rgbench_build") as url:
        t0 = time.perf_counter()
        fill(url, args.drafts)
        print(f"inserted {args.drafts:,} records + approved drafts in {time.perf_counter() - t0:.1f} s (not timed)")
        with tempfile.TemporaryDirectory() as tmp:
            ours, cpu, summary = run_cli(url, Path(tmp) / "b1")
            again, _, _ = run_cli(url, Path(tmp) / "b2")
            (Path(tmp) / "c").mkdir()
            theirs = competitor(url, Path(tmp) / "c")
            breakdown = phases(url, Path(tmp) / "b3")
            size = sum(p.stat().st_size for p in (Path(tmp) / "b1").rglob("*") if p.is_file()) / 1e6
            same = identical(Path(tmp) / "b1", Path(tmp) / "b2")
        print(f"formats: {', '.join(summary['formats'])}  ({size:,.0f} MB written)")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"reasongen build-sft (CLI, child process): {ours:.2f} s wall ({cpu:.2f} s CPU), again {again:.2f} s; "
              f"train {summary['counts']['train']:,} eval {summary['counts']['eval']:,}; byte-identical: {same}")
        print("in-process: " + ", ".join(f"{k} {v:.2f} s" for k, v in breakdown.items()))
        print(f"competitor (datasets writers only, in-process): {theirs:.2f} s")
        print(f"ratio competitor/ours: {theirs / ours:.2f}x   target {TARGET_S:.0f} s: "
              f"{'met' if ours < TARGET_S else 'MISSED'} ({ours / TARGET_S:.0%} of budget)")


if __name__ == "__main__":
    main()
