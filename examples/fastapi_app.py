"""The reference's "Integration with FastAPI", plus an endpoint that never blocks the loop.

Run: pip install "queue_system[fastapi]" uvicorn
     REDIS_URL=redis://localhost:6379/0 python examples/fastapi_app.py
     curl -X POST localhost:8000/process -H 'content-type: application/json' -d '{"id": 1}'

Adaptations: the URL comes from ``$REDIS_URL``; the reference's ``@app.on_event("startup")``
and ``("shutdown")`` handlers (deprecated by FastAPI) run from a ``lifespan``, unchanged.
``/process`` and ``/process-batch`` are as written: they call the *sync* ``QueueManager``
inside ``async def``, which blocks the event loop for one Redis round trip per call.
``/process-async`` is the same with ``AsyncQueueManager``, awaited, so the loop never blocks.
``process_data`` is registered when the module is imported (``@config.processor``), under a
fixed name: after a restart the worker starts before any request and already knows it, so
the items waiting from before the restart run at once.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import BackgroundTasks, FastAPI  # noqa: F401 (imported as in the reference)

from queue_system import AsyncQueueManager, QueueConfig, QueueManager, QueueRetryConfig, QueueWorker

# Create shared configuration
config = QueueConfig(redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))

# Create manager and worker
queue = QueueManager(config=config)
worker = QueueWorker(config=config, max_workers=2)
# The asyncio twin of the manager, for code running on the event loop
aqueue = AsyncQueueManager(config=config)

processed: list[Any] = []  # what the worker ran, for the curious (and the test)


# Registered at import: the worker knows it before any request enqueues it. The fixed name
# keeps queued items valid whether this file runs as __main__ or is imported as a module.
@config.processor(name="process_data")
async def process_data(data: dict[str, Any]) -> dict[str, Any]:
    processed.append(data)
    return {"status": "success", "result": data}


async def startup_event() -> None:
    await worker.start()


async def shutdown_event() -> None:
    await worker.stop()
    await aqueue.aclose()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await startup_event()
    try:
        yield
    finally:
        await shutdown_event()


app = FastAPI(lifespan=lifespan)


@app.post("/process")
async def process_request(data: dict[str, Any]) -> dict[str, Any]:
    # Synchronous API for queueing
    result = queue.enqueue(
        entity=data,
        processor=process_data,
        retry_config=QueueRetryConfig.exponential(timeout=3600),
    )
    return {"operation_id": result["operation_id"], "status": "queued"}


@app.post("/process-batch")
async def process_batch(data: list[dict[str, Any]]) -> dict[str, Any]:
    # Batch API for higher throughput
    results = queue.enqueue_batch(
        entities=data,
        processor=process_data,
        retry_config=QueueRetryConfig.exponential(timeout=3600),
    )
    return {"operation_count": len(results), "status": "queued"}


@app.post("/process-async")
async def process_request_async(data: dict[str, Any]) -> dict[str, Any]:
    # Awaited enqueue on an asyncio client: never blocks the event loop, even if Redis is slow
    result = await aqueue.enqueue(
        entity=data,
        processor=process_data,
        retry_config=QueueRetryConfig.exponential(timeout=3600),
    )
    return {"operation_id": result["operation_id"], "status": result["status"]}


@app.get("/status")
async def status() -> dict[str, Any]:
    return {"worker_running": worker.running, "queues": await aqueue.get_queue_status()}


if __name__ == "__main__":
    import uvicorn  # type: ignore[import-not-found,unused-ignore]  # pip install uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
