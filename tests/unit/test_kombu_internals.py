"""workers/broker.py reads kombu's Redis layout directly (priority sub-queues, the 'unacked' hash and its index).

pyproject pins kombu to the range this was tested with; these tests fail loudly when an upgrade changes the
layout, instead of the sweeper silently re-sending chunks a worker still holds."""

from __future__ import annotations

import json
import uuid

import pytest

from workers import broker


def test_kombu_constants_are_the_ones_broker_py_reads():
    from kombu.transport.redis import Channel

    assert Channel.sep == broker.PRIORITY_SEP
    assert [p for p in Channel.priority_steps if p] == list(broker.PRIORITY_STEPS)
    assert (Channel.unacked_key, Channel.unacked_index_key) == ("unacked", "unacked_index")


def test_a_real_message_lands_where_broker_py_looks(redis_url):
    import redis
    from kombu import Connection

    client = redis.Redis.from_url(redis_url)
    name = f"rg-kombu-layout-{uuid.uuid4().hex[:8]}"
    with Connection(redis_url) as conn:
        queue = conn.SimpleQueue(name, queue_opts={"max_priority": 9})
        try:
            for priority in (0, 4, 9):  # each lands in one of the keys broker.py sums
                queue.put({"n": priority}, headers={"id": f"probe-{priority}"}, priority=priority)
            assert sum(client.llen(k) for k in broker._keys(name)) == 3, client.keys(f"{name}*")
            message = queue.get(timeout=5)  # reserved, not acknowledged: kombu keeps it in 'unacked'
            tag = message.delivery_tag
            raw = client.hget("unacked", tag)
            assert raw is not None and client.zscore("unacked_index", tag) is not None
            assert json.loads(raw)[0]["headers"]["id"].startswith("probe-")
            message.ack()
        finally:
            queue.clear()
            queue.close()
            client.delete(*broker._keys(name))


@pytest.mark.parametrize("dist", ["kombu", "celery"])
def test_installed_versions_are_inside_the_range_pyproject_pins(dist):
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [r for r in map(Requirement, pyproject["project"]["dependencies"]) if r.name == dist]
    assert pins and all(p.specifier and "<" in str(p.specifier) for p in pins), \
        f"pyproject.toml must bound {dist} above (workers/broker.py reads its internals): {pins}"
    assert all(p.specifier.contains(version(dist)) for p in pins), (dist, version(dist), [str(p) for p in pins])
