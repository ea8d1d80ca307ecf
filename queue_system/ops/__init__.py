"""Operator tooling: status and operation reads, system health, dead-letter administration."""
