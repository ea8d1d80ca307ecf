"""``python -m queue_system``: the ``queue-system`` command."""

from queue_system.cli.main import main

if __name__ == "__main__":
    main()
