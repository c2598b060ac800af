"""README.md's quickstart, run as written against the running cluster, and every configuration
example in README.md and docs/ validated with `macklake check`.

Quickstart: the code blocks of the "## Quickstart" section run in order, each with
`bash -euo pipefail` in one temporary working directory, and must exit 0. An HTML comment right
before a block says otherwise (the page shows none of this):

    <!-- test: skip (why) -->                 not run (the reason is on the page)
    <!-- test: background, wait "TEXT" -->    started in the background (the page says: another
                                              terminal); the test waits for TEXT in its output

A block there that is not ```bash and has no marker fails the test, so a new block cannot go
untested by accident. The only changes to the page's text: the topic and connector names get a
unique suffix (the cluster is shared) and the HTTP port is a free one. The page's own commands
wait for the lines to be archived (and fail if they are not); the test then checks the archive
holds exactly the three lines and that the console consumer printed them with macklake's headers.

Config examples: every ```toml and ```properties block in README.md and docs/ (and the example
connectors in connectors/) is checked. A block with `kind =` or `connector.class=` is a connector
file, checked beside a minimal daemon config; any other TOML block is a daemon config, completed
with `connectors_dir` and `state_dir` when it is a fragment. Absolute /etc/macklake and /var/lib
paths are moved under a temporary root, and every `${file:PATH:KEY}` reference gets its file.
`<!-- check: skip (why) -->` before a block leaves it out.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK_TIMEOUT = 120
MARKER = re.compile(r"^<!--\s*(test|check):\s*(.*?)\s*-->$")
LINES = [f"hello from macklake {i}" for i in (1, 2, 3)]


def blocks(path, text):
    """(line number, language, {kind: marker}, code) for each fenced block of a page."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        markers = {}
        if i > 0:
            m = MARKER.match(lines[i - 1].strip())
            if m:
                markers[m.group(1)] = m.group(2)
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path}:{i + 1}: code block never closed")
        out.append((i + 1, fence.group(1), markers, "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return out


def section(text, heading):
    """The text of the `## heading...` section, with blank lines in place of the rest, so that line
    numbers stay the page's."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(f"## {heading}"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join("" if not start <= i < end else l for i, l in enumerate(lines))


def macklake_bin():
    if os.environ.get("MACKLAKE_BIN"):
        return Path(os.environ["MACKLAKE_BIN"])
    return ROOT / "target" / "debug" / "macklake"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"waited {timeout} s for {what}")


def test_readme_quickstart(tmp_path):
    binary = macklake_bin()
    assert binary.is_file(), f"{binary}: no macklake binary (cargo build, or set MACKLAKE_BIN)"
    bootstrap = os.environ.get("MACKLAKE_BOOTSTRAP", "")
    if "9092" not in bootstrap:
        pytest.fail(f"the quickstart talks to localhost:9092, but MACKLAKE_BOOTSTRAP is {bootstrap!r}: start the cluster first")

    suffix = uuid.uuid4().hex[:8]
    topic = f"quickstart-lines-{suffix}"
    port = free_port()

    def adapt(code):
        return (code.replace("quickstart-lines", topic)
                .replace("quickstart-archive", f"quickstart-archive-{suffix}")
                .replace("quickstart-app", f"quickstart-app-{suffix}")
                .replace(":8083", f":{port}"))

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(binary.parent), env["PATH"]])
    env.pop("MACKLAKE_LOG", None)
    env.pop("MACKLAKE_CONFIG", None)
    text = README.read_text(encoding="utf-8")
    background = []
    outputs = []
    try:
        for line, lang, markers, code in blocks(README.name, section(text, "Quickstart")):
            where = f"{README.name}:{line}"
            marker = markers.get("test", "")
            if marker.startswith("skip"):
                continue
            assert lang == "bash", f"{where}: a ```{lang} block in the quickstart with no <!-- test: ... --> marker"
            code = adapt(code)
            if marker.startswith("background"):
                out_path = tmp_path / f".background-{line}.out"
                proc = subprocess.Popen(
                    ["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env,
                    stdout=out_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
                )
                background.append((line, proc, out_path))
                wait = re.search(r'wait "([^"]+)"', marker)
                assert wait, f"{where}: a background block says what to wait for"
                wait_for(f'"{wait.group(1)}" from the block at {where}',
                         lambda: wait.group(1) in out_path.read_text(errors="replace") or proc.poll() is not None, 60)
                assert proc.poll() is None, f"{where} exited: {out_path.read_text(errors='replace')}"
                continue
            assert not marker, f"{where}: unknown marker {marker!r}"
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env,
                capture_output=True, text=True, timeout=BLOCK_TIMEOUT,
            )
            outputs.append(result.stdout + result.stderr)
            assert result.returncode == 0, f"{where} failed ({result.returncode}):\n{code}\n{outputs[-1]}"

        archived = sorted((tmp_path / "quickstart" / "archive" / topic).glob("*.log"))
        lines = [l for p in archived for l in p.read_text().splitlines()]
        assert lines == LINES, f"the archive of {topic}: {lines}"
        consumed = outputs[-1]
        for want in LINES:
            assert re.search(rf"macklake\.path:\S+quickstart/logs/app\.log.*\t{want}$", consumed, re.M), (
                f"the console consumer did not print {want!r} with its headers:\n{consumed}"
            )
        assert '"status":"ok"' in "\n".join(outputs), f"/health was not ok:\n{outputs}"
    finally:
        for _, proc, _ in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for _, proc, _ in background:
            try:
                proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        delete_topic(topic)
    daemon = background[0]
    assert daemon[1].returncode == 0, f"macklake run did not exit 0 on Ctrl-C: {daemon[2].read_text(errors='replace')[-3000:]}"


def delete_topic(name):
    """The run's own topic: removed (best effort) so that runs do not pile up."""
    try:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers="localhost:9092")
        try:
            if name in set(admin.list_topics()):
                admin.delete_topics([name])
        finally:
            admin.close()
    except Exception as e:  # cleanup only
        print(f"could not delete {name}: {e}", file=sys.stderr)


def config_examples():
    """(where, language, code) for every config example in README.md, docs/ and connectors/."""
    pages = [README] + sorted((ROOT / "docs").rglob("*.md"))
    out = []
    for page in pages:
        rel = page.relative_to(ROOT)
        for line, lang, markers, code in blocks(rel, page.read_text(encoding="utf-8")):
            if lang in ("toml", "properties") and not markers.get("check", "").startswith("skip"):
                out.append((f"{rel}:{line}", lang, code))
    for example in sorted((ROOT / "connectors").glob("*.toml")):
        out.append((str(example.relative_to(ROOT)), "toml", example.read_text()))
    return out


EXAMPLES = config_examples()


def test_there_are_config_examples_to_check():
    # A parser that found nothing would make the next test pass vacuously.
    assert len(EXAMPLES) >= 8, EXAMPLES


@pytest.mark.parametrize("where,lang,code", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_config_example_passes_check(tmp_path, where, lang, code):
    binary = macklake_bin()
    assert binary.is_file(), f"{binary}: no macklake binary (cargo build, or set MACKLAKE_BIN)"
    root = tmp_path / "root"
    # Absolute paths of the examples, moved under a temporary root so that they can exist here.
    code = re.sub(r"(?<![\w.])/(etc/macklake|var/lib/macklake)", lambda m: f"{root}/{m.group(1)}", code)
    for path, key in re.findall(r"\$\{file:([^:}]+):([^}]+)\}", code):
        secret = Path(path) if path.startswith("/") else tmp_path / path
        secret.parent.mkdir(parents=True, exist_ok=True)
        with secret.open("a") as f:
            f.write(f"{key}=example-value\n")
    connectors = tmp_path / "connectors"
    connectors.mkdir()
    daemon = tmp_path / "macklake.toml"
    minimal = 'connectors_dir = "connectors"\nstate_dir = "state"\n'
    is_connector = re.search(r"^\s*kind\s*=", code, re.M) or re.search(r"^connector\.class\s*=", code, re.M)
    if is_connector:
        name = "example.properties" if lang == "properties" else "example.toml"
        (connectors / name).write_text(code)
        daemon.write_text(minimal)
    else:
        assert lang == "toml", f"{where}: a properties block without connector.class"
        for d in re.findall(r'^\s*connectors_dir\s*=\s*"([^"]+)"', code, re.M):
            target = Path(d) if d.startswith("/") else tmp_path / d
            target.mkdir(parents=True, exist_ok=True)
        daemon.write_text(code if "connectors_dir" in code else minimal + code)
    for p in [daemon, *tmp_path.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o022)
    result = subprocess.run([str(binary), "check", "--config", str(daemon)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{where}: macklake check refused the example:\n{code}\n{result.stdout}{result.stderr}"
