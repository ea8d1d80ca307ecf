"""The ``queue-system`` command: one module per command group, ``render`` for output."""
