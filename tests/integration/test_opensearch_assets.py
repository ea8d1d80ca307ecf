"""The OpenSearch assets parse, and every field and metric they use is in real worker records.

The records come from a real burst worker (and producer) run with ``setup_json_logging``:
jobs that succeed, are retried, fail for good and hit a system error, on every priority.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from queue_system import QueueConfig, QueueManager, QueueRetryConfig
from queue_system.logs import setup_json_logging
from queue_system.metrics.local import RECORD_MESSAGE
from tests.support.burst import run_burst

ASSETS = Path(__file__).resolve().parents[2] / "examples" / "opensearch"
TEMPLATE = ASSETS / "index_template.json"
SAVED_OBJECTS = ASSETS / "saved_objects.ndjson"
QUERIES = sorted((ASSETS / "queries").glob("*.json"))
PRIORITIES = ("high", "normal", "low")
UNKNOWN_PROCESSOR = "legacy.tasks:rebuild_index"  # never registered: a system error

# Saved-object attributes holding JSON text.
NESTED_JSON = ("visState", "uiStateJSON", "panelsJSON", "optionsJSON", "fields")
# Query clauses whose keys are field names.
FIELD_CLAUSES = ("term", "terms", "match", "match_phrase", "range", "exists", "prefix", "wildcard")
# "field: value" in a kuery string (a quoted phrase, a parenthesised list or a bare word).
KUERY_TERM = re.compile(r'(\w+)\s*:\s*("(?:[^"\\]|\\.)*"|\([^)]*\)|[\w.*-]+)')


# --- the assets -------------------------------------------------------------------------------


def load_saved_objects() -> list[Record]:
    """Every line of the ndjson as an object, nested JSON strings decoded in place."""
    objects = []
    for number, line in enumerate(SAVED_OBJECTS.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"saved_objects.ndjson line {number}: {exc}") from exc
        attributes = obj["attributes"]
        for name in NESTED_JSON:
            if name in attributes:
                attributes[name] = json.loads(attributes[name])
        meta = attributes.get("kibanaSavedObjectMeta", {})
        if "searchSourceJSON" in meta:
            meta["searchSourceJSON"] = json.loads(meta["searchSourceJSON"])
        objects.append(obj)
    return objects


class References:
    """The record fields and the metric_name values the assets use, and where."""

    def __init__(self) -> None:
        self.fields: dict[str, set[str]] = {}
        self.metric_names: dict[str, set[str]] = {}

    def field(self, name: str, where: str) -> None:
        self.fields.setdefault(name, set()).add(where)

    def metric(self, value: Any, where: str) -> None:
        for name in value if isinstance(value, list) else [value]:
            self.metric_names.setdefault(str(name), set()).add(where)

    def aggregations(self, node: Any, where: str) -> None:
        """Fields aggregations read: every ``"field"`` value anywhere in ``node``."""
        if isinstance(node, list):
            for child in node:
                self.aggregations(child, where)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key == "field" and isinstance(value, str):
                    self.field(value, where)
                self.aggregations(value, where)

    def query(self, node: Any, where: str) -> None:
        """Fields a query DSL filter reads: the keys of its leaf clauses (and ``"field"``)."""
        if isinstance(node, list):
            for child in node:
                self.query(child, where)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in FIELD_CLAUSES and isinstance(value, dict):
                    for field, condition in value.items():
                        if field == "field":  # exists: {"field": name}
                            self.field(str(condition), where)
                        elif field != "boost":
                            self.field(field, where)
                            if field == "metric_name":
                                self.metric(condition, where)
                else:
                    self.query(value, where)

    def kuery(self, text: str, where: str) -> None:
        for field, value in KUERY_TERM.findall(text):
            self.field(field, where)
            if field == "metric_name":
                self.metric(re.findall(r"\w+", value.replace(" or ", " ")), where)


Record = dict[str, Any]


def mapped_properties() -> dict[str, dict[str, Any]]:
    properties: dict[str, dict[str, Any]] = json.loads(TEMPLATE.read_text())["template"][
        "mappings"
    ]["properties"]
    return properties


def collect_references() -> References:
    refs = References()
    for field in mapped_properties():
        refs.field(field, "index_template.json")
    for path in QUERIES:
        body = json.loads(path.read_text())
        refs.query(body.get("query", {}), f"queries/{path.name}")
        refs.aggregations(body.get("aggs", body.get("aggregations", {})), f"queries/{path.name}")
    for obj in load_saved_objects():
        where = f"saved_objects.ndjson:{obj['id']}"
        attributes = obj["attributes"]
        if "timeFieldName" in attributes:
            refs.field(attributes["timeFieldName"], where)
        for agg in attributes.get("visState", {}).get("aggs", []):
            refs.aggregations(agg.get("params", {}), where)
        search = attributes.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON", {})
        query = search.get("query", {})
        if query.get("language") == "kuery":
            refs.kuery(query.get("query", ""), where)
        else:
            refs.query(query, where)
        refs.query(search.get("filter", []), where)
    return refs


def test_every_asset_is_valid_json() -> None:
    template = json.loads(TEMPLATE.read_text())
    assert template["index_patterns"] == ["logs-queue-*"]
    assert len(QUERIES) >= 4
    for path in QUERIES:
        body = json.loads(path.read_text())
        assert "aggs" in body and "query" in body, path.name
    objects = load_saved_objects()
    by_type = Counter(obj["type"] for obj in objects)
    assert by_type["index-pattern"] == 1 and by_type["dashboard"] == 1
    assert by_type["visualization"] >= 4
    # every reference points at an object in the file
    ids = {obj["id"] for obj in objects}
    for obj in objects:
        for ref in obj.get("references", []):
            assert ref["id"] in ids, (obj["id"], ref)


def test_the_views_the_issue_asks_for_are_there() -> None:
    refs = collect_references()
    # success rate over time, throughput and time in queue by priority, failures by processor
    for metric, field in (
        ("success_rate", "timestamp"),
        ("processed", "priority"),
        ("avg_wait_ms", "priority"),
        ("failed", "processor"),
    ):
        in_query = {w for w in refs.metric_names.get(metric, set()) if w.startswith("queries/")}
        in_vis = {w for w in refs.metric_names[metric] if w.startswith("saved_objects")}
        assert in_query and in_vis, metric
        assert in_query & refs.fields[field] and in_vis & refs.fields[field], (metric, field)


# --- a real run ---------------------------------------------------------------------------------

RUNS: Counter[str] = Counter()


async def charge(entity: dict[str, Any]) -> str:
    """Fails the first run of a ``flaky`` job, every run of a ``doomed`` one."""
    RUNS[entity["id"]] += 1
    if entity["kind"] == "doomed" or (entity["kind"] == "flaky" and RUNS[entity["id"]] == 1):
        raise ConnectionError("gateway timed out")
    return "ok"


def resize(entity: dict[str, Any]) -> str:
    return f"thumb-{entity['id']}"


def broken_on_failure(data: dict[str, Any]) -> None:
    """A callback that raises: its library record carries ``exc_info``."""
    raise RuntimeError("alerting is down")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every queue_system record (metric records included) as JSON lines in a buffer."""
    library = logging.getLogger("queue_system")
    level = library.level
    # setup_json_logging reuses a JSON handler already there (and repoints its stream)
    existing = {h: h.stream for h in library.handlers if isinstance(h, logging.StreamHandler)}
    stream = io.StringIO()
    handler = setup_json_logging("INFO", stream=stream, logger_name="queue_system")
    yield stream
    for reused, old_stream in existing.items():
        if reused is handler:
            reused.setStream(old_stream)
    if handler not in existing:
        library.removeHandler(handler)
    library.setLevel(level)


@pytest.fixture
def config(make_config: Callable[..., QueueConfig]) -> QueueConfig:
    """The unknown processor goes to system_errors at once (no wait for a deploy)."""
    return make_config(unknown_processor_ttl=0)


@pytest.fixture
def records(config: QueueConfig, manager: QueueManager, json_lines: io.StringIO) -> list[Record]:
    """Records of a run: successes, retries, failures and a system error on every priority."""
    RUNS.clear()
    config.register_callback(charge)
    config.register_callback(resize)
    config.register_callback(broken_on_failure)
    flaky = QueueRetryConfig(max_attempts=1, delays=[0.0], jitter=0.0)
    never = QueueRetryConfig(max_attempts=0)
    for priority in PRIORITIES:
        manager.enqueue_batch(
            [{"id": f"{priority}-img{i}"} for i in range(12)], resize, priority=priority
        )
        for i in range(3):
            manager.enqueue(
                {"id": f"{priority}-flaky{i}", "kind": "flaky"}, charge, priority=priority,
                retry_config=flaky,
            )  # fmt: skip
            manager.enqueue(
                {"id": f"{priority}-doomed{i}", "kind": "doomed"}, charge, priority=priority,
                retry_config=never, on_failure=broken_on_failure,
            )  # fmt: skip
    manager.enqueue({"index": "all"}, UNKNOWN_PROCESSOR, priority="low")
    run_burst(config, max_workers=5)
    metrics = config.get_metrics()
    assert (metrics["succeeded"], metrics["failed"], metrics["system_errors"]) == (45, 9, 1)
    assert metrics["retried"] == 9
    lines = json_lines.getvalue().splitlines()
    assert lines
    return [json.loads(line) for line in lines]


def test_every_field_and_metric_the_assets_use_is_in_real_records(records: list[Record]) -> None:
    metric_records = [r for r in records if r.get("message") == RECORD_MESSAGE]
    assert metric_records
    in_metric_records = {field for r in metric_records for field in r}
    in_any_record = {field for r in records for field in r}
    refs = collect_references()

    # The views read metric records: each field they use must be in those.
    view_fields = {
        field: where for field, where in refs.fields.items() if where - {"index_template.json"}
    }
    missing = {f: sorted(w) for f, w in view_fields.items() if f not in in_metric_records}
    assert not missing, f"fields used by views but absent from metric records: {missing}"
    # The template maps every line the library writes: each mapped field must occur somewhere.
    unmapped = sorted(set(mapped_properties()) - in_any_record)
    assert not unmapped, f"fields mapped by the template but in no real record: {unmapped}"
    # Every metric_name a view filters on is emitted.
    emitted = Counter(r["metric_name"] for r in metric_records)
    never = {m: sorted(w) for m, w in refs.metric_names.items() if not emitted[m]}
    assert not never, f"metric_name values used by views but never emitted: {never}"
    assert {"success_rate", "processed", "failed", "avg_wait_ms", "avg_process_time"} <= set(
        refs.metric_names
    )
    # Views by priority and by processor have records for every priority and processor.
    processed = [r for r in metric_records if r["metric_name"] == "processed"]
    assert {r["priority"] for r in processed} == set(PRIORITIES)
    waits = [r for r in metric_records if r["metric_name"] == "avg_wait_ms"]
    assert {r["priority"] for r in waits} == set(PRIORITIES)
    failed = [r for r in metric_records if r["metric_name"] == "failed"]
    assert {r["processor"] for r in failed} == {f"{__name__}:charge"}
    assert all(r["operation_id"] for r in failed)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _date(value: Any) -> bool:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.utcoffset() == timedelta(0)  # ISO 8601, UTC


TYPE_CHECKS = {
    "keyword": lambda v: isinstance(v, str),
    "text": lambda v: isinstance(v, str),
    "double": _number,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "date": _date,
}


def test_real_values_fit_the_mapped_types(records: list[Record]) -> None:
    properties = mapped_properties()
    for record in records:
        for field, value in record.items():
            mapping = properties.get(field)
            if mapping is None or value is None:
                continue
            check = TYPE_CHECKS[mapping["type"]]
            assert check(value), (field, mapping["type"], value, record)
