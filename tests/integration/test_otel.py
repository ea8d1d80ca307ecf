"""OpenTelemetry: one trace from the producer's span to every run, across a process boundary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from queue_system import QueueConfig, QueueManager, QueueRetryConfig
from queue_system.metrics.otel import MISSING_EXTRA, OpenTelemetryMiddleware
from tests.support.burst import run_burst
from tests.support.clock import FakeClock
from tests.support.readme import run_readme_block

ROOT = Path(__file__).resolve().parents[2]

# The worker process: the SDK with an in-memory exporter as the GLOBAL provider (the
# middleware's default), a burst worker, then every finished span written to a JSON file.
WORKER_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from queue_system import QueueConfig, QueueWorker
    from queue_system.metrics.otel import OpenTelemetryMiddleware
    from tests.integration.test_otel import charge, refund

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    config = QueueConfig(
        redis_url=sys.argv[1], queue_prefix=sys.argv[2], middleware=[OpenTelemetryMiddleware()]
    )
    config.register_callback(charge)
    config.register_callback(refund)
    asyncio.run(QueueWorker(config, burst=True, wait_scheduled=True).run())
    spans = [json.loads(span.to_json()) for span in exporter.get_finished_spans()]
    with open(sys.argv[3], "w") as out:
        json.dump(spans, out)
    """
)


def charge(order: dict[str, Any]) -> str:
    """A sync processor (it runs in a thread) that opens its own span."""
    with trace.get_tracer("shop").start_as_current_span("charge card"):
        return f"charged {order['id']}"


async def refund(order: dict[str, Any]) -> None:
    raise ValueError(f"no refund for order {order['id']}")


def sdk_middleware() -> tuple[OpenTelemetryMiddleware, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetryMiddleware(tracer_provider=provider), exporter, provider


def run_worker_process(redis_url: str, key_prefix: str, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "spans.json"
    child = subprocess.run(
        [sys.executable, "-c", WORKER_CHILD, redis_url, key_prefix, str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert child.returncode == 0, child.stderr
    spans: list[dict[str, Any]] = json.loads(out.read_text())
    return spans


def test_producer_and_consumer_spans_are_one_trace_across_processes(
    make_config: Callable[..., QueueConfig], redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    # Given a producer traced with the SDK, enqueuing inside a request's span
    middleware, exporter, provider = sdk_middleware()
    manager = QueueManager(make_config(middleware=[middleware]))
    with provider.get_tracer("web").start_as_current_span("POST /checkout") as request:
        ok = manager.enqueue({"id": 1}, charge)
        bad = manager.enqueue(
            {"id": 2},
            refund,
            retry_config=QueueRetryConfig(max_attempts=1, delays=[0.0], jitter=0.0),
        )
    trace_id = f"0x{request.get_span_context().trace_id:032x}"
    published = {
        span.attributes["messaging.message.id"]: span
        for span in exporter.get_finished_spans()
        if span.kind is trace.SpanKind.PRODUCER
    }
    assert {span.name for span in published.values()} == {"charge publish", "refund publish"}
    assert all(
        span.parent.span_id == request.get_span_context().span_id for span in published.values()
    )  # type: ignore[union-attr]

    # When a worker in another process runs both (the second fails, is retried, fails again)
    spans = run_worker_process(redis_url, key_prefix, tmp_path)

    # Then every consumer span is in the request's trace, a child of its item's producer span
    consumers = [s for s in spans if s["kind"] == "SpanKind.CONSUMER"]
    assert sorted(s["name"] for s in consumers) == [
        "charge process",
        "refund process",
        "refund process",
    ]
    for span in consumers:
        op_id = span["attributes"]["messaging.message.id"]
        assert span["context"]["trace_id"] == trace_id
        producer = published[op_id].get_span_context()
        assert span["parent_id"] == f"0x{producer.span_id:016x}"
        assert span["attributes"]["messaging.system"] == "queue_system"
        assert span["attributes"]["messaging.destination.name"] == span["name"].split()[0]
    [done] = [s for s in consumers if s["name"] == "charge process"]
    assert done["attributes"]["messaging.message.id"] == ok["operation_id"]
    assert done["attributes"]["queue_system.outcome"] == "succeeded"
    assert done["attributes"]["queue_system.attempt"] == 1
    assert done["status"]["status_code"] == "UNSET"
    # The processor's own span nests under the run's span (it ran in a worker thread)
    [card] = [s for s in spans if s["name"] == "charge card"]
    assert card["parent_id"] == done["context"]["span_id"]
    assert card["context"]["trace_id"] == trace_id

    # And each failed run records the exception with an error status
    runs = sorted(
        (s for s in consumers if s["name"] == "refund process"),
        key=lambda s: s["attributes"]["queue_system.attempt"],
    )
    assert [s["attributes"]["messaging.message.id"] for s in runs] == [bad["operation_id"]] * 2
    assert [s["attributes"]["queue_system.attempt"] for s in runs] == [1, 2]
    assert [s["attributes"]["queue_system.outcome"] for s in runs] == ["retried", "failed"]
    for run in runs:
        assert run["status"]["status_code"] == "ERROR"
        [event] = run["events"]
        assert event["name"] == "exception"
        assert event["attributes"]["exception.type"] == "ValueError"
        assert "no refund for order 2" in event["attributes"]["exception.message"]


def test_no_middleware_writes_no_meta(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    config = make_config()
    with TracerProvider().get_tracer("web").start_as_current_span("request"):
        QueueManager(config).enqueue({"id": 1}, charge)
    [raw] = raw_redis.lrange(config.get_queue_key("charge"), 0, -1)
    assert "meta" not in json.loads(raw)


def test_without_a_recording_span_the_middleware_writes_no_meta(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    # The API alone (no SDK provider given or installed): spans are no-ops, nothing to carry
    config = make_config(
        middleware=[OpenTelemetryMiddleware(tracer_provider=trace.NoOpTracerProvider())]
    )
    QueueManager(config).enqueue({"id": 1}, charge)
    [raw] = raw_redis.lrange(config.get_queue_key("charge"), 0, -1)
    assert "meta" not in json.loads(raw)


def test_the_middleware_names_the_extra_when_opentelemetry_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import opentelemetry fails
    with pytest.raises(ImportError, match=r"pip install 'queue_system\[otel\]'") as raised:
        OpenTelemetryMiddleware()
    assert str(raised.value) == MISSING_EXTRA


def test_queue_system_imports_no_opentelemetry_of_its_own() -> None:
    # redis-py (v8) itself imports opentelemetry when it is installed: count only what
    # queue_system adds after it; then, with opentelemetry made unimportable, all still imports.
    code = textwrap.dedent(
        """
        import sys
        import redis, redis.asyncio
        before = set(sys.modules)
        import queue_system, queue_system.worker.loops, queue_system.metrics.otel
        print(sorted(m for m in set(sys.modules) - before if m.startswith("opentelemetry")))
        """
    )
    absent = "import sys; sys.modules['opentelemetry'] = None\n" + code
    for source in (code, absent):
        child = subprocess.run(
            [sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == "[]"


def test_readme_opentelemetry(examples_url: str, tmp_path: Path) -> None:
    stdout = run_readme_block("OpenTelemetry", examples_url, tmp_path)
    assert stdout.splitlines() == [
        "POST /checkout (INTERNAL) <- -",
        "send_receipt publish (PRODUCER) <- POST /checkout",
        "send_receipt process (CONSUMER) <- send_receipt publish",
        "render receipt (INTERNAL) <- send_receipt process",
    ]


def test_an_item_that_never_ran_still_ends_its_span_in_the_trace(
    make_config: Callable[..., QueueConfig],
) -> None:
    # Given an item traced at enqueue whose deadline passes before any worker starts it
    middleware, exporter, provider = sdk_middleware()
    clock = FakeClock()
    config = make_config(middleware=[middleware], clock=clock)
    with provider.get_tracer("web").start_as_current_span("request") as request:
        op = QueueManager(config).enqueue({"id": 1}, charge, expires=5)
    clock.advance(10)
    # When a worker meets it
    run_burst(config)
    # Then its (zero-length) consumer span is in the trace, with the outcome
    [span] = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.CONSUMER]
    assert span.context.trace_id == request.get_span_context().trace_id
    assert span.attributes is not None
    assert span.attributes["messaging.message.id"] == op["operation_id"]
    assert span.attributes["queue_system.outcome"] == "expired"
    assert span.attributes["queue_system.reason"] == "expired"


SEEN: list[int] = []


async def look(order: dict[str, Any]) -> None:
    """An async processor: notes the span current while it runs."""
    SEEN.append(trace.get_current_span().get_span_context().span_id)


def test_the_run_span_is_current_in_an_async_processor_and_only_during_its_run(
    make_config: Callable[..., QueueConfig],
) -> None:
    SEEN.clear()
    middleware, exporter, provider = sdk_middleware()
    config = make_config(middleware=[middleware])
    manager = QueueManager(config)
    with provider.get_tracer("web").start_as_current_span("request"):
        manager.enqueue({"id": 1}, look)
    # An item enqueued without a trace context (here: by a producer without the middleware)
    QueueManager(make_config(queue_prefix=config.keys.prefix)).enqueue({"id": 2}, look)
    run_burst(config, max_workers=1)  # one executor runs both, one after the other
    runs = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.CONSUMER]
    assert [span.context.span_id for span in runs] == SEEN
    first, second = runs
    assert first.parent is not None
    # The second run starts a trace of its own: nothing of the first run's context is left over
    assert second.parent is None
    assert second.context.trace_id != first.context.trace_id


FLAKY_RUNS: list[int] = []


def fails_first_run(order: dict[str, Any]) -> str:
    FLAKY_RUNS.append(order["id"])
    if len(FLAKY_RUNS) == 1:
        raise ValueError("the first run fails")
    return "ok"


def test_a_retry_span_links_to_the_span_of_the_attempt_before(
    make_config: Callable[..., QueueConfig], raw_redis: redis.Redis
) -> None:
    FLAKY_RUNS.clear()
    middleware, exporter, provider = sdk_middleware()
    config = make_config(middleware=[middleware])
    retry = QueueRetryConfig(max_attempts=2, delays=[0.0], jitter=0)
    with provider.get_tracer("web").start_as_current_span("request") as request:
        QueueManager(config).enqueue({"id": 7}, fails_first_run, retry_config=retry)
    run_burst(config)
    assert FLAKY_RUNS == [7, 7]
    runs = sorted(
        (s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.CONSUMER),
        key=lambda s: (s.attributes or {})["queue_system.attempt"],
    )
    first, second = runs
    assert not first.links
    [link] = second.links
    assert link.context.span_id == first.context.span_id
    assert link.context.trace_id == request.get_span_context().trace_id
    assert (first.attributes or {})["queue_system.outcome"] == "retried"
    assert (second.attributes or {})["queue_system.outcome"] == "succeeded"
