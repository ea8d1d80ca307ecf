"""``before_enqueue`` middleware on the producer side (sync and async managers alike): the
hooks run on a draft's envelopes (see :mod:`queue_system.core.enqueue_hooks`), then the draft
is encoded into its plan."""

from __future__ import annotations

from queue_system.core import enqueue_hooks
from queue_system.core.hooks import HookChain
from queue_system.producer.plan import EnqueueDraft, EnqueuePlan


def before_enqueue_sync(hooks: HookChain, draft: EnqueueDraft) -> EnqueuePlan:
    """Run sync ``before_enqueue`` hooks on each item of ``draft``, then encode it."""
    enqueue_hooks.before_enqueue_sync(hooks, draft.envelopes)
    return draft.finish()


async def before_enqueue_async(hooks: HookChain, draft: EnqueueDraft) -> EnqueuePlan:
    """Run ``before_enqueue`` hooks (sync or async) on each item of ``draft``, then encode it."""
    await enqueue_hooks.before_enqueue(hooks, draft.envelopes)
    return draft.finish()
