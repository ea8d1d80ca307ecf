"""Putting work on queues: the sans-IO enqueue plan and its sync and asyncio shells."""
