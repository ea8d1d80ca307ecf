"""The public surface is the documented one, and modules import only downward."""

from __future__ import annotations

import ast
from pathlib import Path

import queue_system
import utils

PACKAGE = Path(queue_system.__file__).parent

# Layers from STYLE.md §1: a module may import only from its own layer or the ones above it.
LAYERS = {
    "errors": 2, "types": 2, "clock": 2,
    "keys": 3, "serialization": 3, "retry": 3, "registry": 3,
    "connection": 4, "scripts": 4, "metrics": 4, "counters": 4, "logs": 4, "guard": 4,
    "embedded_server": 4, "outage": 4,
    "config": 5,
    "producer": 6, "manager": 6, "aio_manager": 6, "operations": 6, "execution": 6,
    "broker": 6, "events": 6, "runner": 6, "worker": 6, "admin": 6, "dead_letters": 6,
    "health": 6,
    "cli": 7, "cli_failures": 7, "cli_render": 7, "__main__": 7, "__init__": 7,
}  # fmt: skip


def test_queue_system_exports_the_documented_api() -> None:
    assert set(queue_system.__all__) == {
        "AsyncQueueManager", "ConfigurationError", "DecodeError", "ProcessingError", "QueueConfig",
        "QueueManager", "QueueRetryConfig", "QueueSystemError", "QueueUnavailableError",
        "QueueWorker", "SerializationError", "UnknownProcessorError",
    }  # fmt: skip
    for name in queue_system.__all__:
        assert getattr(queue_system, name).__doc__


def test_utils_exports_the_decorators() -> None:
    assert {"with_timeout", "circuit_breaker", "retry_with_backoff", "try_catch"} <= set(
        utils.__all__
    )


def test_every_module_has_a_layer_and_imports_only_downward() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        module = path.stem
        assert module in LAYERS, f"{module} has no layer in this test"
        for imported in _relative_imports(path):
            if imported in LAYERS:
                assert LAYERS[imported] <= LAYERS[module] or module in ("cli", "__init__"), (
                    f"{module} (layer {LAYERS[module]}) imports {imported} "
                    f"(layer {LAYERS[imported]})"
                )
    for path in Path(utils.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.startswith("queue_system") for n in names), path.name


def test_manager_and_worker_never_import_each_other() -> None:
    assert "worker" not in _relative_imports(PACKAGE / "manager.py")
    assert "manager" not in _relative_imports(PACKAGE / "worker.py")


def _relative_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
    return found
