"""Running work: the worker's loops, its Redis calls, and the life of one claimed item."""
