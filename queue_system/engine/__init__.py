"""The Redis data model: key names, the Lua scripts (one atomic step each), connection
builders, and the policy for riding out a Redis outage (producers' breaker, workers' backoff)."""
