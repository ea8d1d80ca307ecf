"""``python -m queue_system``: the ``queue-system`` command."""

from .cli import main

if __name__ == "__main__":
    main()
