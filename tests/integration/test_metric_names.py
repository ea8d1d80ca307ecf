"""``config.update_metric(name)`` then ``config.get_metrics()`` returns ``name`` at the top
level, as the reference says; a shared total of the same name wins there, and the process's
own value stays under ``local``."""

from __future__ import annotations

from queue_system import QueueConfig, QueueManager
from tests.support.burst import run_burst


def process_data(data: dict) -> None:
    """Succeeds."""


def test_an_updated_metric_is_returned_under_its_own_name(config: QueueConfig) -> None:
    config.update_metric("emails_sent")
    config.update_metric("emails_sent", 2)
    config.update_metric("avg_render_ms", 10)
    config.update_metric("avg_render_ms", 20)

    metrics = config.get_metrics()

    assert metrics["emails_sent"] == 3  # type: ignore[typeddict-item]
    assert metrics["avg_render_ms"] == 15  # type: ignore[typeddict-item]
    assert metrics["local"]["emails_sent"] == 3


def test_a_shared_total_wins_over_a_local_metric_of_the_same_name(
    config: QueueConfig, manager: QueueManager
) -> None:
    manager.enqueue({"a": 1}, process_data)
    for name in ("enqueued", "success_rate", "queues", "local"):
        config.update_metric(name, 5)

    metrics = config.get_metrics()

    assert metrics["enqueued"] == 1  # from Redis: every process's enqueues
    assert metrics["success_rate"] == 0.0
    assert set(metrics["queues"]) == {"process_data"}
    assert metrics["local"]["enqueued"] == 5
    assert metrics["local"]["local"] == 5
    assert metrics["local"]["queues"] == 5


def test_the_librarys_labelled_series_stay_under_local(
    config: QueueConfig, manager: QueueManager
) -> None:
    manager.enqueue({"a": 1}, process_data)
    run_burst(config)

    metrics = config.get_metrics()

    labelled = [name for name in metrics if "{" in name]
    assert labelled == []
    assert any(name.startswith("processed{") for name in metrics["local"])
