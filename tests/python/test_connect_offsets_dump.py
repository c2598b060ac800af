"""scripts/connect-offsets-dump against an offsets file written by a real Kafka Connect 4.1.1
standalone worker (tests/fixtures/connect-offsets, recorded by scripts/record-connect-offsets)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DUMP = ROOT / "scripts" / "connect-offsets-dump"
FIXTURE = ROOT / "tests" / "fixtures" / "connect-offsets" / "standalone.offsets"


def run(*args):
    return subprocess.run([sys.executable, str(DUMP), *map(str, args)], capture_output=True, text=True)


def test_real_offsets_file():
    out = run(FIXTURE)
    assert out.returncode == 0, out.stderr
    entries = [json.loads(line) for line in out.stdout.splitlines()]
    assert entries == [json.loads(line) for line in FIXTURE.with_suffix(".offsets.jsonl").read_text().splitlines()]
    by_connector = {e["key"][0]: e for e in entries}
    assert by_connector["app-logs"] == {
        "key": ["app-logs", {"filename": "/tmp/macklake-connect-offsets-fixture/app.log"}],
        "value": {"position": 14},
    }
    assert by_connector["unicode"]["value"] == {"position": 29}  # UTF-16 code units, not bytes (36)
    assert by_connector["reset"]["value"] is None  # DELETE /connectors/reset/offsets: a tombstone


def test_raw_keeps_the_stored_json_text():
    out = run("--raw", FIXTURE)
    assert out.returncode == 0, out.stderr
    texts = [json.loads(line) for line in out.stdout.splitlines()]
    assert '["app-logs",{"filename":"/tmp/macklake-connect-offsets-fixture/app.log"}]' in [t["key"] for t in texts]
    assert '{"position":14}' in [t["value"] for t in texts]


def test_empty_map(tmp_path):
    data = FIXTURE.read_bytes()
    header = data[:data.index(b"\x77\x08") + 2]  # the HashMap class descriptor and its fields
    empty = tmp_path / "empty.offsets"
    empty.write_bytes(header + b"\x00\x00\x00\x10" + b"\x00\x00\x00\x00" + b"\x78")
    out = run(empty)
    assert (out.returncode, out.stdout) == (0, ""), out.stderr


def test_truncated_and_foreign_files_are_refused(tmp_path):
    truncated = tmp_path / "truncated.offsets"
    truncated.write_bytes(FIXTURE.read_bytes()[:-20])
    out = run(truncated)
    assert out.returncode == 1 and "truncated" in out.stderr
    foreign = tmp_path / "foreign.offsets"
    foreign.write_text('{"not": "java"}')
    out = run(foreign)
    assert out.returncode == 1 and "not a Java serialization stream" in out.stderr
    assert run(tmp_path / "missing").returncode == 1
