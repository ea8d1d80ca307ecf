import pytest

from queue_system.engine.keys import KeySpace


def test_reference_key_names_are_pinned() -> None:
    keys = KeySpace()
    assert keys.queue("process_data", "high") == "queue:high:process_data"
    assert keys.queue("send_email") == "queue:normal:send_email"
    assert keys.failures == "queue:failures"
    assert keys.system_errors == "queue:system_errors"
    assert keys.registry == "queue:registry"


def test_claim_order_is_strict_priority_across_queues() -> None:
    keys = KeySpace("p:")
    assert keys.claim_order(["a", "b"]) == [
        "p:high:a", "p:high:b", "p:normal:a", "p:normal:b", "p:low:a", "p:low:b",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["*", "a:b", "", "a b", "x\n", "-lead", "é", "a" * 129, "a*"])
def test_hostile_queue_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="queue_name"):
        KeySpace().queue(name)


@pytest.mark.parametrize("priority", ["urgent", "HIGH", "", "normal "])
def test_unknown_priority_is_refused(priority: str) -> None:
    with pytest.raises(ValueError, match="priority"):
        KeySpace().queue("q", priority)


def test_parse_queue_inverts_queue() -> None:
    keys = KeySpace("x:")
    assert keys.parse_queue(keys.queue("jobs", "low")) == ("jobs", "low")
    assert keys.parse_queue("x:failures") is None
    assert keys.parse_queue("other:high:jobs") is None


def test_dedup_keys_are_hashed_under_their_prefix() -> None:
    keys = KeySpace()
    key = keys.dedup("user:1 *weird*")
    assert key.startswith(keys.dedup_prefix)
    assert "*" not in key and key == keys.dedup("user:1 *weird*")


@pytest.mark.parametrize("prefix", ["queue", "a b:", "*:", ""])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="queue_prefix"):
        KeySpace(prefix)


def test_scheduling_keys_live_under_the_prefix() -> None:
    keys = KeySpace("app:")
    assert (keys.scheduled, keys.scheduled_counts) == ("app:scheduled", "app:scheduled_counts")


def test_dependency_keys_live_under_the_prefix() -> None:
    keys = KeySpace("app:")
    assert keys.dependents("op-1") == "app:dependents:op-1"
    assert keys.waits_on("op-1") == "app:waits_on:op-1"
    assert keys.deps_outbox == "app:deps_outbox"
