"""Metrics: the event-driven logging policy, this process's values, and the totals every
process shares in Redis."""
