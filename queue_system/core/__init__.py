"""The pure domain: item envelopes, records, the retry policy, the callable registry, types and
the clock. No I/O here: nothing in ``core`` imports redis or talks to a server."""
