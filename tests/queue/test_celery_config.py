import pytest

from reasongen.settings import Settings
from workers.app import celery_config, create_app, pool_for


def test_celery_settings_make_redelivery_safe():
    settings = Settings(broker_url="redis://127.0.0.1:6379/11", chunk_time_limit_s=600, visibility_timeout_s=900)
    conf = celery_config(settings)
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    broker_vt = conf["broker_transport_options"]["visibility_timeout"]
    assert broker_vt == conf["result_backend_transport_options"]["visibility_timeout"] == 900
    assert broker_vt > conf["task_time_limit"] == 600 > conf["task_soft_time_limit"]
    assert conf["worker_send_task_events"] and conf["task_send_sent_event"]
    app = create_app(settings)  # the settings really reach the app
    assert app.conf.task_acks_late and app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options == {"visibility_timeout": 900}


def test_visibility_timeout_shorter_than_time_limit_is_refused():
    with pytest.raises(ValueError, match="VISIBILITY_TIMEOUT"):
        celery_config(Settings(broker_url="redis://x", chunk_time_limit_s=600, visibility_timeout_s=600))


def test_no_broker_is_one_clear_error():
    with pytest.raises(RuntimeError, match="REASONGEN_BROKER_URL"):
        create_app(Settings(broker_url=None))


@pytest.mark.parametrize(("queues", "concurrency", "expected"), [
    (["teacher"], None, ("threads", 10)), (["teacher"], 16, ("threads", 16)), (["gpu"], None, ("solo", 1)),
    (["train"], 1, ("solo", 1)),
])
def test_pool_follows_the_queues(queues, concurrency, expected):
    settings = Settings(broker_url=None, teacher_concurrency=64, chunk_size=50)
    assert pool_for(queues, concurrency, settings) == expected


def test_teacher_threads_default_to_the_in_process_lanes_for_the_configured_teacher():
    from workers.inprocess import lanes_for

    class Teacher:
        max_in_flight = 256

        def submit(self, prompts):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    settings = Settings(broker_url=None, teacher_concurrency=256, chunk_size=50)
    assert pool_for(["teacher"], None, settings) == ("threads", lanes_for(Teacher(), 50)) != ("threads", 4)


@pytest.mark.parametrize(("queues", "concurrency"), [(["gpu"], 2), (["cpu"], None), ([], None)])
def test_bad_worker_options_are_refused(queues, concurrency):
    with pytest.raises(ValueError):
        pool_for(queues, concurrency)
