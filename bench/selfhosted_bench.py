"""Self-hosted teacher: default settings against a sweep of fixed concurrencies, on a real `transformers serve`.

The server is `transformers serve` (no continuous batching: it computes about one request at a time, as the
issue's server did) with a tiny random Phi that never stops before ``max_tokens`` (reasongen/testing/tserve.py).
Every configuration drafts the same records with the same backend code (TeacherBackend.from_settings), so the
only difference is concurrency:

- default: the project's settings (ceiling REASONGEN_TEACHER_CONCURRENCY=64, adaptive limit starting at 4,
  timeout 120 s);
- fixed N: the adaptive limit off (REASONGEN_TEACHER_ADAPTIVE=false), N in flight, for N in the sweep.

Targets (issue 16): the default run has zero client timeouts and >= 0.9 of the records/s of the best fixed
concurrency found by the sweep in the same run (configurations interleaved, each round starting with the next
one). Also reported: client timeouts of each fixed N with a timeout
short enough to show what a deep queue does (--short-timeout).

    python bench/selfhosted_bench.py                       # 12 records, max_tokens 48, sweep 1 2 4 12
    python bench/selfhosted_bench.py --records 48 --max-tokens 192 --sweep 1 2 4 8 64 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from generation.backends.teacher import TeacherBackend  # noqa: E402
from generation.records import TrainingView  # noqa: E402
from generation.templates import load_template  # noqa: E402
from reasongen.settings import Settings  # noqa: E402
from reasongen.testing import tserve  # noqa: E402


def prompts(n: int) -> list[Any]:
    template = load_template()
    views = [TrainingView(i, f"k{i}", "en", f"Explain step {i} of a design of experiments.", "", "A plan.")
             for i in range(n)]
    return [template.render(v) for v in views]


def run(url: str, model: Path, records: int, max_tokens: int, **settings: Any) -> dict[str, Any]:
    conf = Settings(openai_base_url=url, openai_api_key="sk-local-bench", teacher_model=str(model),
                    teacher_max_tokens=max_tokens, database_url="sqlite://", redis_url=None, **settings)
    backend = TeacherBackend.from_settings(conf)
    try:
        started = time.perf_counter()
        drafts = backend.generate(prompts(records))
        elapsed = time.perf_counter() - started
        state = backend.concurrency_state()
    finally:
        backend.close()
    c = backend.counters
    return {"records_per_s": round(records / elapsed, 3), "elapsed_s": round(elapsed, 1),
            "requests": c["requests"], "client_timeouts": c["timeout"], "answered": records - sum(
                1 for d in drafts if d.error and ("timed out" in d.error or "Timeout" in d.error)),
            "final_limit": state.limit if state else None, "limit_reason": state.reason if state else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--sweep", type=int, nargs="+", default=[1, 2, 4, 12])
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the median per configuration")
    ap.add_argument("--short-timeout", type=float, default=0.0,
                    help="also run fixed 64 with this client timeout (s) to show queue timeouts; 0: skip")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        models = tserve.make_models(Path(tmp) / "models")
        server = tserve.start(Path(tmp) / "server.log")
        try:
            run(server.base_url, models["random"], 2, args.max_tokens, teacher_adaptive=False)  # warm-up
            configs: dict[str, dict[str, Any]] = {"default": {}}
            configs |= {f"fixed {n}": {"teacher_adaptive": False, "teacher_concurrency": n} for n in args.sweep}
            if args.short_timeout:
                configs["fixed 64, short timeout"] = {"teacher_adaptive": False, "teacher_concurrency": 64,
                                                      "teacher_timeout_s": args.short_timeout, "teacher_max_retries": 1}
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
            names = list(configs)
            for round_no in range(args.rounds):  # each round starts with another configuration: no order effect
                for name in names[round_no % len(names):] + names[:round_no % len(names)]:
                    extra = configs[name]
                    results[name].append(run(server.base_url, models["random"], args.records, args.max_tokens,
                                             **extra))
                    print(f"round {round_no + 1} {name}: {results[name][-1]}", file=sys.stderr)
        finally:
            server.stop()

    summary = {name: {**runs[-1], "records_per_s": statistics.median(r["records_per_s"] for r in runs),
                      "client_timeouts": sum(r["client_timeouts"] for r in runs)}
               for name, runs in results.items()}
    fixed = {n: s for n, s in summary.items() if n.startswith("fixed") and "short" not in n}
    best = max(fixed, key=lambda n: fixed[n]["records_per_s"])
    ratio = summary["default"]["records_per_s"] / fixed[best]["records_per_s"]
    print(json.dumps({
        "server": "transformers serve (no continuous batching), tiny random Phi, CPU",
        "records": args.records, "max_tokens": args.max_tokens, "rounds": args.rounds, "configs": summary,
        "best_fixed": best, "default_vs_best_fixed": round(ratio, 3),
        "default_client_timeouts": summary["default"]["client_timeouts"],
        "target": "default >= 0.90 of the best fixed, 0 client timeouts",
        "met": ratio >= 0.9 and summary["default"]["client_timeouts"] == 0,
    }, indent=2))


if __name__ == "__main__":
    main()
