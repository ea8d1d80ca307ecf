"""OpenTelemetry traces: a PRODUCER span per enqueued item, a CONSUMER span per run, one trace.

Built only on the middleware hooks (:mod:`queue_system.core.hooks`):

- ``before_enqueue`` starts and ends a ``"<queue> publish"`` PRODUCER span, a child of the
  caller's current span, and injects its context (W3C ``traceparent``, with the global
  propagator unless one is given) into ``envelope["meta"]["otel"]``;
- ``before_process`` extracts that context and starts a ``"<queue> process"`` CONSUMER span as
  its child, made current while the processor runs (spans the processor opens nest under it);
- ``after_process`` sets ``queue_system.outcome``, records the exception, sets an ERROR status
  for ``failed``, ``retried`` and ``system_error``, and ends the span.

Retries: every attempt's span is a child of the same producer span (the item's meta does not
change between attempts), so all attempts sit side by side in the one trace, numbered by
``queue_system.attempt``; each retry's span also carries a link to the previous attempt's span
(noted in ``JobInfo.notes`` and kept in the attempt record: across workers and processes).

``opentelemetry-api`` is the optional ``[otel]`` extra: this module imports it only when an
:class:`OpenTelemetryMiddleware` is built, and importing ``queue_system`` never does.
"""

from __future__ import annotations

import asyncio
from contextvars import Token
from typing import TYPE_CHECKING, Any

from queue_system.core.hooks import JobInfo, Middleware, Outcome
from queue_system.core.types import JSONDict

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Link, Span, TracerProvider

MISSING_EXTRA = "OpenTelemetryMiddleware needs the [otel] extra: pip install 'queue_system[otel]'"
META_KEY = "otel"  # envelope["meta"]["otel"]: the carrier dict ({"traceparent": ...})
RUN_NOTE = "otel.traceparent"  # JobInfo.notes: this run's span, for the retry's link
MESSAGING_SYSTEM = "queue_system"
ERROR_STATUSES = frozenset({"failed", "retried", "system_error"})


class OpenTelemetryMiddleware(Middleware):
    """Trace each item from its enqueue to every run of it (see the module docstring).

    Give the same middleware to producers and workers: ``QueueConfig(middleware=[...])``.

    Args:
        tracer_provider: where spans go; the global one (``trace.set_tracer_provider``) if None.
        propagator: how the context is written into the item; the global one
            (``OTEL_PROPAGATORS``, W3C trace context and baggage by default) if None.

    Raises:
        ImportError: ``opentelemetry-api`` is not installed (names the extra to install).
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        try:
            from opentelemetry import context, propagate, trace
        except ImportError as exc:
            raise ImportError(MISSING_EXTRA) from exc
        self._context = context
        self._trace = trace
        self._propagate = propagate
        self._given_propagator = propagator
        self._tracer = trace.get_tracer("queue_system", tracer_provider=tracer_provider)
        # Run-to-run links are always written as W3C traceparent strings, whatever propagator
        # carries the producer's context.
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._w3c = TraceContextTextMapPropagator()
        self._spans: dict[str, Span] = {}  # operation id -> its running CONSUMER span
        # Executor task -> the token of the context it attached: detached by that same task
        # (a context var can only be reset where it was set), at its outcome or next item.
        self._attached: dict[asyncio.Task[Any], Token[Context]] = {}

    def before_enqueue(self, envelope: JSONDict) -> None:
        """Start and end a PRODUCER span; store its context in ``envelope["meta"]["otel"]``."""
        trace = self._trace
        queue = envelope.get("queue")
        attributes: dict[str, str] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": str(queue),
            "messaging.message.id": str(envelope.get("id")),
            "queue_system.priority": str(envelope.get("priority")),
            "queue_system.processor": str(envelope.get("processor")),
        }
        span = self._tracer.start_span(
            f"{queue} publish", kind=trace.SpanKind.PRODUCER, attributes=attributes
        )
        try:
            carrier: dict[str, str] = {}
            self._textmap().inject(carrier, context=trace.set_span_in_context(span))
            if carrier:
                envelope["meta"][META_KEY] = carrier
        finally:
            span.end()

    def before_process(self, job: JobInfo) -> None:
        """Start the run's CONSUMER span under the producer's and make it current."""
        if job.operation_id is None:
            return
        span, parent = self._start(job)
        self._spans[job.operation_id] = span
        task = _current_task()
        if task is not None:  # current for the processor (sync ones get a copy of it)
            self._detach(task)
            self._attached[task] = self._context.attach(
                self._trace.set_span_in_context(span, parent)
            )

    def after_process(self, job: JobInfo, outcome: Outcome) -> None:
        """Record how the run ended on its span and end it."""
        span = self._spans.pop(job.operation_id, None) if job.operation_id is not None else None
        if span is None:  # expired, undecodable...: it never started, still in the trace
            span = self._start(job)[0]
        span.set_attribute("queue_system.outcome", outcome.status)
        if outcome.rule is not None:
            span.set_attribute("queue_system.retry_rule", outcome.rule)
        if outcome.reason is not None:
            span.set_attribute("queue_system.reason", outcome.reason)
        if outcome.exception is not None:
            span.record_exception(outcome.exception)
        if outcome.status in ERROR_STATUSES:
            from opentelemetry.trace import Status, StatusCode

            error = type(outcome.exception).__name__ if outcome.exception else outcome.status
            span.set_status(Status(StatusCode.ERROR, f"{outcome.status}: {error}"))
        span.end()
        task = _current_task()
        if task is not None:  # the executor that ran it (a success is told from the acker)
            self._detach(task)

    def on_shutdown(self, worker: Any) -> None:
        """End the spans of runs that will report no outcome here (the worker is stopping)."""
        spans, self._spans = self._spans, {}
        for span in spans.values():
            span.set_attribute("queue_system.outcome", "interrupted")
            span.end()
        self._attached.clear()  # those tasks are ending, and their contexts with them

    def _start(self, job: JobInfo) -> tuple[Span, Context]:
        """A started CONSUMER span for ``job``, and the context it continues."""
        trace = self._trace
        carrier = job.meta.get(META_KEY)
        # A fresh base context: never continue whatever an earlier item left current.
        parent = self._textmap().extract(
            carrier if isinstance(carrier, dict) else {}, context=self._context.Context()
        )
        attributes: dict[str, str | int] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": str(job.queue),
            "messaging.message.id": str(job.operation_id),
            "queue_system.priority": str(job.priority),
            "queue_system.processor": str(job.processor),
            "queue_system.attempt": job.attempt,
        }
        span = self._tracer.start_span(
            f"{job.queue} process",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=self._previous_run(job),
        )
        if job.notes is not None:  # the next run (a retry) links to this one
            this_run: dict[str, str] = {}
            self._w3c.inject(this_run, context=trace.set_span_in_context(span))
            if "traceparent" in this_run:
                job.notes[RUN_NOTE] = this_run["traceparent"]
        return span, parent

    def _previous_run(self, job: JobInfo) -> list[Link]:
        """A link to the span of the run before this one (a retry), if it noted one."""
        traceparent = job.previous.get(RUN_NOTE)
        if not traceparent:
            return []
        context = self._w3c.extract({"traceparent": traceparent})
        previous = self._trace.get_current_span(context).get_span_context()
        if not previous.is_valid:
            return []
        return [self._trace.Link(previous, {"queue_system.link": "previous_attempt"})]

    def _textmap(self) -> TextMapPropagator:
        # The global one is read at each use: an app may set it after building its config.
        return self._given_propagator or self._propagate.get_global_textmap()

    def _detach(self, task: asyncio.Task[Any]) -> None:
        token = self._attached.pop(task, None)
        if token is not None:
            self._context.detach(token)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None
