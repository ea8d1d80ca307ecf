"""The envelope's opening bytes are defined once: every Lua script that reads an operation id
from an item uses exactly ``LUA_OPERATION_ID_PATTERN``, which matches what producers encode."""

from __future__ import annotations

import re
import string
from importlib import resources

import pytest

from queue_system import QueueConfig
from queue_system.core.checks import OPERATION_ID_PATTERN
from queue_system.core.envelope import (
    ENVELOPE_OPENING,
    LUA_OPERATION_ID_PATTERN,
    SCHEMA_VERSION,
    decode_envelope,
    encode_envelope,
)
from queue_system.producer.plan import plan_enqueue

LUA_DIR = resources.files("queue_system.engine").joinpath("lua")
# A Lua pattern literal that starts with the envelope's opening ('^{"v":...').
LUA_OPENING_LITERAL = re.compile(r"""'(\^\{"v":[^']*)'""")
LUA_CLASSES = {"w": "A-Za-z0-9", "d": "0-9", "a": "A-Za-z", "s": r" \t\n\r\f\v"}


def lua_pattern_to_regex(pattern: str) -> str:
    """Translate the subset of Lua patterns our scripts use into a Python regex."""
    out, i, in_set = [], 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "%":
            nxt = pattern[i + 1]
            if nxt in LUA_CLASSES:
                body = LUA_CLASSES[nxt]
                out.append(body if in_set else f"[{body}]")
            else:
                out.append(re.escape(nxt))
            i += 2
            continue
        if char == "[":
            in_set = True
            out.append("[")
        elif char == "]" and in_set:
            in_set = False
            out.append("]")
        elif in_set:
            out.append(re.escape(char))
        elif char in "^$()+*?":
            out.append(char)
        elif char == ".":
            out.append(".")
        elif char == "-":
            out.append("*?")  # Lua's lazy repetition
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def lua_sources() -> dict[str, str]:
    return {
        entry.name: entry.read_text("utf-8")
        for entry in LUA_DIR.iterdir()
        if entry.name.endswith(".lua")
    }


def test_the_opening_carries_the_schema_version() -> None:
    assert f'{{"v":{SCHEMA_VERSION},"id":"' == ENVELOPE_OPENING
    assert LUA_OPERATION_ID_PATTERN.startswith("^" + ENVELOPE_OPENING)


def test_every_script_that_reads_the_id_uses_the_one_pattern() -> None:
    readers = {}
    for name, source in lua_sources().items():
        code = "\n".join(line for line in source.splitlines() if not line.startswith("--"))
        found = LUA_OPENING_LITERAL.findall(code)
        if found:
            readers[name] = found
    assert readers, "no script reads the operation id any more: is this test still needed?"
    for name, patterns in readers.items():
        assert set(patterns) == {LUA_OPERATION_ID_PATTERN}, name
    # The scripts that turn status records live again all read it.
    assert {"claim.lua", "recover.lua", "release.lua", "promote_due.lua"} <= set(readers)


def test_the_pattern_matches_what_producers_encode() -> None:
    config = QueueConfig(redis_url="redis://127.0.0.1:1/0")
    try:
        plan = plan_enqueue(config, [{"a": 1}], "some_processor", operation_ids=["op:1_a.b-C"])
        raw = plan.args[10]  # the encoded item (see enqueue.lua's ARGV layout)
        assert isinstance(raw, bytes)
        match = re.match(lua_pattern_to_regex(LUA_OPERATION_ID_PATTERN), raw.decode())
        assert match is not None and match.group(1) == "op:1_a.b-C"
        # A re-encoded item (a retry) keeps the opening.
        again = encode_envelope(decode_envelope(raw))
        assert again.startswith(ENVELOPE_OPENING.encode() + b"op:1_a.b-C")
    finally:
        config.redis_client.close()


def test_the_lua_id_charset_is_the_operation_id_charset() -> None:
    regex = lua_pattern_to_regex(LUA_OPERATION_ID_PATTERN)
    id_class = re.search(r"\((\[[^]]*\])\+\)", regex)
    assert id_class is not None
    lua_chars = {c for c in map(chr, range(128)) if re.fullmatch(id_class.group(1), c)}
    allowed = {c for c in map(chr, range(128)) if OPERATION_ID_PATTERN.fullmatch(c)}
    assert lua_chars == allowed
    assert set(string.ascii_letters + string.digits + "_.:-") == allowed


@pytest.mark.parametrize(
    ("lua", "text", "matches"),
    [("^a%-b", "a-b", True), ("[%w_]+", "x_1", True), ("^%d+$", "12a", False)],
)
def test_the_translator_itself(lua: str, text: str, matches: bool) -> None:
    assert (re.fullmatch(lua_pattern_to_regex(lua), text) is not None) is matches
