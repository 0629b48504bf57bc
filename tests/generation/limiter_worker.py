"""A worker process for the shared-limiter test: waits for its peer, then drafts N prompts."""

import sys
import time

import redis

from generation.backends.teacher import TeacherBackend
from generation.ratelimit import Rates, make_limiter
from generation.records import TrainingView
from generation.templates import load_template


def main(base_url: str, redis_url: str, key: str, count: int, rps: float) -> None:
    client = redis.Redis.from_url(redis_url)
    client.incr(f"{key}:ready")
    while int(client.get(f"{key}:ready")) < 2:  # start together so the two really compete
        time.sleep(0.01)
    limiter = make_limiter(Rates(requests_per_s=rps), redis_url, key)
    backend = TeacherBackend("m", base_url=base_url, api_key="k", concurrency=64, limiter=limiter, max_retries=0)
    template = load_template()
    views = [TrainingView(i, f"k{i}", "en", "Say hi.", "", "hi") for i in range(count)]
    drafts = backend.generate([template.render(v) for v in views])
    print(sum(d.failed for d in drafts), flush=True)
    for d in drafts:
        if d.failed:
            print(d.error, file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
