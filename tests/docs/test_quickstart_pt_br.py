"""README.pt-BR.md's code blocks, run as written, in order, against the running cluster.

An HTML comment right before a block says how to run it (the page shows none of this):

    <!-- teste: pular (why) -->            not run (the reason is on the page)
    <!-- teste: cluster (...) -->          `macklake cluster up`: run, unless
                                           MACKLAKE_QUICKSTART_CLUSTER=skip (a shared machine where
                                           someone else stops brokers on purpose)
    <!-- teste: arquivo NAME -->           the block is the file NAME in the working directory
    <!-- teste: fundo[, espera "TEXT"] --> started in the background (the page says: another
                                           terminal); with espera, the test waits for TEXT in its
                                           output first

Every other block must be ```bash and is run with `bash -euo pipefail` in one temporary working
directory; it must exit 0. A block of another language without a marker fails the test, so a new
block cannot go untested by accident.

The only changes to the page's text: the topic names get a unique suffix (the cluster is shared
and the page's sink reads its topic from the beginning), and the seed producer's
/tmp/mensagens_produzidas.txt is a file in the working directory. Then the test checks what a reader
would see: the archive (followed by tail -F) holds every message exactly once per producer run,
and the consumer prints the log lines the file-source sent. It also reads the daemon's /metrics and
checks that every metric the alert rules (contrib/prometheus/macklake-alerts.yml) use exists.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "README.pt-BR.md"
ALERTS = ROOT / "contrib" / "prometheus" / "macklake-alerts.yml"
BLOCK_TIMEOUT = 120  # seconds; the slowest block (the seed producer) takes ~12 s
MARKER = re.compile(r"^<!--\s*teste:\s*(.*?)\s*-->$")
METRICS_URL = "http://127.0.0.1:18083/metrics"  # the page's [http] listen


def blocks(text):
    """(line number, language, marker or None, code) for each fenced block of the page."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        marker = None
        if i > 0:
            m = MARKER.match(lines[i - 1].strip())
            marker = m.group(1) if m else None
        start = i + 1
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{PAGE.name}:{i + 1}: code block never closed")
        out.append((i + 1, fence.group(1), marker, "\n".join(lines[start:end]) + "\n"))
        i = end + 1
    return out


def macklake_bin():
    if os.environ.get("MACKLAKE_BIN"):
        return Path(os.environ["MACKLAKE_BIN"])
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    import json

    return Path(json.loads(meta)["target_directory"]) / "debug" / "macklake"


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"waited {timeout} s for {what}")


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="macklake-quickstart-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_quickstart_pt_br(workdir):
    binary = macklake_bin()
    assert binary.is_file(), f"{binary}: no macklake binary (cargo build, or set MACKLAKE_BIN)"
    skip_cluster = os.environ.get("MACKLAKE_QUICKSTART_CLUSTER") == "skip"
    if not skip_cluster and not os.environ.get("MACKLAKE_CLUSTER_DIR"):
        # The page's `macklake cluster up` would otherwise start a cluster in the temporary directory.
        pytest.fail("MACKLAKE_CLUSTER_DIR is not set: scripts/test sets it (or MACKLAKE_QUICKSTART_CLUSTER=skip)")
    bootstrap = os.environ.get("MACKLAKE_BOOTSTRAP", "")
    if "9092" not in bootstrap:
        pytest.fail(f"the page talks to localhost:9092, but MACKLAKE_BOOTSTRAP is {bootstrap!r}: start the cluster first")

    suffix = uuid.uuid4().hex[:8]
    topic, logs_topic = f"macklake-topic-{suffix}", f"macklake-logs-{suffix}"
    messages_file = workdir / "mensagens_produzidas.txt"

    def adapt(code):
        return (code.replace("macklake-topic", topic)
                .replace("macklake-logs", logs_topic)
                .replace("/tmp/mensagens_produzidas.txt", str(messages_file)))

    env = dict(os.environ)
    # `macklake` is the binary under test; `python3` is the suite's .venv (kafka-python, lz4).
    env["PATH"] = os.pathsep.join([str(binary.parent), str(Path(sys.executable).parent), env["PATH"]])
    env["MACKLAKE_LOG"] = "info"

    background = []  # (line, Popen, output path)
    outputs = {}  # line -> output of a foreground block
    try:
        for line, lang, marker, code in blocks(PAGE.read_text(encoding="utf-8")):
            where = f"{PAGE.name}:{line}"
            code = adapt(code)
            if marker and marker.startswith("pular"):
                continue
            if marker and marker.startswith("cluster") and skip_cluster:
                continue
            if marker and marker.startswith("arquivo "):
                name = marker.split()[1]
                (workdir / name).write_text(code, encoding="utf-8")
                continue
            assert lang == "bash", f"{where}: a ```{lang} block with no <!-- teste: ... --> marker"
            if marker and marker.startswith("fundo"):
                out_path = workdir / f".background-{line}.out"
                proc = subprocess.Popen(
                    ["bash", "-euo", "pipefail", "-c", code], cwd=workdir, env=env,
                    stdout=out_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
                )
                background.append((line, proc, out_path))
                wait = re.search(r'espera "([^"]+)"', marker)
                if wait:
                    wait_for(f'"{wait.group(1)}" from the block at {where}',
                             lambda: wait.group(1) in out_path.read_text(errors="replace")
                             or proc.poll() is not None, 60)
                    assert proc.poll() is None, f"{where} exited: {out_path.read_text(errors='replace')}"
                continue
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", code], cwd=workdir, env=env,
                capture_output=True, text=True, timeout=BLOCK_TIMEOUT,
            )
            outputs[line] = result.stdout + result.stderr
            assert result.returncode == 0, f"{where} failed ({result.returncode}):\n{code}\n{outputs[line]}"

        every = "\n".join(outputs.values())
        assert "criado" in every or "já existe" in every, "criar_topico.py printed nothing"
        assert "Mensagem lida do arquivo: Mensagem 9 - Teste de mensagem Kafka" in every, "consumidor.py did not read the file"

        # The archive, as `tail -F` showed it: the seed producer ran twice, so every message is there
        # exactly twice (the sink writes each record once).
        tails = [p for (_, proc, p) in background if "tail -F" in " ".join(map(str, proc.args))]
        assert len(tails) == 1, "the page should follow the archive with one tail -F"
        expected = [f"Mensagem {i} - Teste de mensagem Kafka" for i in range(10)]

        def archived():
            return tails[0].read_text(errors="replace").splitlines()

        wait_for("both producer runs in the tail -F output",
                 lambda: all(archived().count(m) >= 2 for m in expected), 30)
        time.sleep(1.5)  # a commit interval more: nothing may come a third time
        counts = {m: archived().count(m) for m in expected}
        assert all(c == 2 for c in counts.values()), f"archive counts (want 2 each): {counts}"

        for i in (1, 2, 3):
            assert f"linha {i} do log da aplicação" in every, f"ler_logs.py did not print log line {i}:\n{every}"
        assert "/logs/app.log, byte 0)" in every, f"ler_logs.py did not print the headers:\n{every}"

        # Every metric the alert rules use exists in the daemon's exposition (a rule on a misspelt
        # name would never fire, and promtool's unit tests cannot see that).
        used = metrics_in_exprs(ALERTS.read_text())
        assert len(used) >= 7, f"too few metrics found in the alert rules' expr: {used}"

        def missing():
            body = urllib.request.urlopen(METRICS_URL, timeout=5).read().decode()
            present = {m.group(1) for m in re.finditer(r"^(macklake_[a-z_]+)[{ ]", body, re.M)}
            return sorted(used - present)

        try:
            wait_for("every metric the alert rules use in /metrics", lambda: not missing(), 20)
        except AssertionError:
            raise AssertionError(f"metrics used by {ALERTS.name} but not in {METRICS_URL}: {missing()}")
    finally:
        for line, proc, out_path in reversed(background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for line, proc, out_path in background:
            try:
                proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        delete_topics([topic, logs_topic])
    daemon = [(line, proc, p) for (line, proc, p) in background if "macklake run" in " ".join(map(str, proc.args))]
    assert daemon and daemon[0][1].returncode == 0, (
        f"macklake run did not stop cleanly on SIGTERM: {daemon[0][2].read_text(errors='replace')[-3000:]}"
    )


def metrics_in_exprs(rules):
    """The metric names in the rules' `expr:` (not in comments or annotations)."""
    names, in_expr = set(), False
    for line in rules.splitlines():
        if re.match(r"^\s*(- alert|for|labels|annotations):", line):
            in_expr = False
        if re.match(r"^\s*expr:", line):
            in_expr = True
        if in_expr and not line.lstrip().startswith("#"):
            names.update(re.findall(r"\b(macklake_[a-z_]+)\b", line))
    return names


def delete_topics(names):
    """The page's topics are this run's own: remove them (best effort) so runs do not pile up."""
    try:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers="localhost:9092")
        try:
            existing = set(admin.list_topics())
            admin.delete_topics([n for n in names if n in existing])
        finally:
            admin.close()
    except Exception as e:  # cleanup only: the assertions above already ran
        print(f"could not delete {names}: {e}", file=sys.stderr)
