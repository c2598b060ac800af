"""How scripts/bench runs each contender, and how it measures their CPU seconds and peak RSS.

CPU: processes we start and reap ourselves (perf tests, the macklake daemon) are measured with
os.wait4 (ru_utime + ru_stime). Peak RSS: VmHWM from /proc/PID/status, sampled every 20 ms until the
process exits (HwmSampler) — not ru_maxrss, which on Linux also counts the RSS of this Python
process at the fork (the kernel keeps the pre-exec high-water mark). The Kafka Connect worker is
detached by scripts/connect-worker, so it is read from /proc (utime + stime; VmHWM) just before it
is stopped.
File outputs are watched by polling their total size every 10 ms (ByteWatcher).
"""
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MACKLAKE = os.environ.get("MACKLAKE_BIN", os.path.join(ROOT, "target", "release", "macklake"))
KAFKA_LIBS = os.path.join(os.environ.get("MACKLAKE_CACHE_DIR", os.path.expanduser("~/.cache/macklake")),
                          "kafka-4.1.1", "libs")
CONNECT_WORKER = os.path.join(ROOT, "scripts", "connect-worker")
CONNECT_PORT = "18190"


# ---- cluster helpers -------------------------------------------------------------------------

def create_topic(bs, name, partitions, configs=None):
    admin = KafkaAdminClient(bootstrap_servers=bs)
    try:
        admin.create_topics([NewTopic(name, partitions, 3, topic_configs=configs or {})])
    finally:
        admin.close()


def delete_topics(bs, names):
    """Best effort, one by one: a topic that does not exist (an offsets topic never created, or one
    already deleted) is skipped; other failures are reported."""
    admin = KafkaAdminClient(bootstrap_servers=bs)
    try:
        for name in dict.fromkeys(names):
            try:
                admin.delete_topics([name])
            except Exception as e:  # noqa: BLE001 - tidying must not fail a finished benchmark
                if "UnknownTopicOrPartition" not in type(e).__name__ + str(e):
                    print(f"[bench] could not delete topic {name}: {e}", flush=True)
    finally:
        admin.close()


def delete_groups(bs, groups):
    admin = KafkaAdminClient(bootstrap_servers=bs)
    try:
        admin.delete_consumer_groups(groups)
    except Exception as e:  # noqa: BLE001
        print(f"[bench] could not delete consumer groups: {e}", flush=True)
    finally:
        admin.close()


def end_offsets(bs, topic, partitions):
    c = KafkaConsumer(bootstrap_servers=bs)
    try:
        return c.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        c.close()


def wait_settled(bs, topic, n, partitions, timeout=600, alive=None):
    """Until the topic holds at least n offsets and stopped growing (transaction markers count)."""
    deadline = time.time() + timeout
    last, since = -1, time.time()
    while time.time() < deadline:
        total = sum(end_offsets(bs, topic, partitions).values())
        if total != last:
            last, since = total, time.time()
        elif total >= n and time.time() - since > 1.5:
            return total
        elif alive is not None and not alive() and time.time() - since > 1.5:
            return total
        elif time.time() - since > 60:
            print(f"[bench] {topic} stopped growing at {total} of {n} offsets for 60 s; giving up on it", flush=True)
            return total
        time.sleep(0.3)
    return last


def span(bs, topic, partitions, trim=0.05):
    """(records, start, end) over the topic, read_committed: the timestamps (ms) that `trim` of the
    records precede and follow. The source case's topics stamp LogAppendTime: when the broker
    appended them, the same clock for every contender (a producer's CreateTime is when it queued a
    record, and queues differ: librdkafka's is capped at 10 000 records, Java's at 32 MiB).
    Trimming the first and last 5 % keeps start-up (producer id, metadata, a JVM) out for all."""
    c = KafkaConsumer(bootstrap_servers=bs, isolation_level="read_committed", enable_auto_commit=False,
                      max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    ends = c.end_offsets(tps)
    c.seek_to_beginning()
    stamps = []
    remaining = {tp for tp in tps if ends[tp] > 0}
    while remaining:
        batch = c.poll(timeout_ms=1000, max_records=100000)
        for records in batch.values():
            stamps.extend(r.timestamp for r in records)
        for tp in list(remaining):
            if c.position(tp) >= ends[tp]:
                remaining.discard(tp)
    c.close()
    if not stamps:
        return 0, None, None
    stamps.sort()
    k = int(len(stamps) * trim)
    return len(stamps), stamps[k], stamps[len(stamps) - 1 - k]


def committed_total(admin, group):
    try:
        return sum(o.offset for o in admin.list_consumer_group_offsets(group).values() if o.offset >= 0)
    except Exception:  # noqa: BLE001 - the group may not exist yet
        return 0


# ---- process measurement ---------------------------------------------------------------------

def cpu_of(ru):
    """CPU seconds (user + system) from a struct rusage of a reaped child."""
    return ru.ru_utime + ru.ru_stime


def vm_hwm(pid):
    """VmHWM in MiB, or None once the process has exited (a zombie has no memory left)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class HwmSampler(threading.Thread):
    """The largest VmHWM seen of a child, sampled every 20 ms until it exits (then join())."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak = pid, None
        self.start()

    def run(self):
        while True:
            v = vm_hwm(self.pid)
            if v is None:
                return
            self.peak = v if self.peak is None else max(self.peak, v)
            time.sleep(0.02)

    def result(self):
        self.join()
        return self.peak


def run_measured(cmd):
    """Runs cmd to its end: (exit status, output, CPU s, peak RSS MiB)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    hwm = HwmSampler(p.pid)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = status
    return status, out, cpu_of(ru), hwm.result()


def pid_alive(pid):
    """Running (a zombie not yet reaped counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def proc_usage(pid):
    """(CPU seconds so far, peak RSS MiB so far) of a running process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, vm_hwm(pid) or 0.0


class ByteWatcher(threading.Thread):
    """Polls size() every 10 ms: when bytes first appeared, when they reached a tenth of `expected`
    and when they first reached `expected` (time.monotonic()). Stops there, or when stop is set."""

    def __init__(self, size, expected):
        super().__init__(daemon=True)
        self.size, self.expected = size, expected
        self.first = self.tenth = self.complete = None
        self.last = 0
        self.trace = []  # (time, bytes) at every change
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            b = self.size()
            now = time.monotonic()
            if b > 0 and self.first is None:
                self.first = now
            if b >= self.expected / 10 and self.tenth is None:
                self.tenth = now
            if b != self.last:
                self.trace.append((now, b))
            self.last = b
            if b >= self.expected:
                self.complete = now
                return
            time.sleep(0.01)

    def wait(self, timeout, alive=lambda: True):
        """Until complete, or the output stopped growing for `timeout` s, or the contender died."""
        last, since = -1, time.monotonic()
        while self.is_alive():
            if self.last != last:
                last, since = self.last, time.monotonic()
            if time.monotonic() - since > timeout or not alive():
                break
            time.sleep(0.05)
        self.stop.set()
        self.join()


def tree_bytes(d):
    total = 0
    for dirpath, _, names in os.walk(d):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass  # renamed by a rotation while we looked
    return total


def file_bytes(path):
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def count_lines(paths):
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(8 << 20):
                n += chunk.count(b"\n")
    return n


def tree_files(d):
    return [os.path.join(dp, n) for dp, _, ns in os.walk(d) for n in ns]


# ---- the contenders --------------------------------------------------------------------------

# macklake's source producer defaults (src/kafka/client.rs) that change what the brokers do: the
# ceiling gets them too, or it would measure a different workload (lz4 shrinks repetitive lines 10×).
MACKLAKE_PRODUCER = ["compression.type=lz4", "linger.ms=5"]


def producer_perf(bs, topic, n, size, payload_file=None):
    """kafka-producer-perf-test: n records, acks=all, idempotent. Either `size` random A–Z bytes, or
    (payload_file: the source case) lines picked at random from that file with macklake's producer
    compression and linger, so that the brokers see the same records as from macklake."""
    cmd = ["java", "-Xmx512m", "-cp", os.path.join(KAFKA_LIBS, "*"), "org.apache.kafka.tools.ProducerPerformance",
           "--topic", topic, "--num-records", str(n), "--throughput", "-1"]
    cmd += ["--payload-file", payload_file] if payload_file else ["--record-size", str(size)]
    cmd += ["--producer-props", f"bootstrap.servers={bs}", "acks=all", "enable.idempotence=true"]
    cmd += MACKLAKE_PRODUCER if payload_file else []
    status, out, cpu, rss = run_measured(cmd)
    if status != 0:
        raise SystemExit(f"kafka-producer-perf-test failed:\n{out[-2000:]}")
    return cpu, rss


def end_to_end_latency(bs, topic, n, size):
    """Kafka's own EndToEndLatency tool: one record at a time, produce (acks=all) then consume it,
    n times: the cluster's latency floor on this machine. It prints integer-ms percentiles."""
    cmd = ["java", "-Xmx256m", "-cp", os.path.join(KAFKA_LIBS, "*"), "org.apache.kafka.tools.EndToEndLatency",
           bs, topic, str(n), "all", str(size)]
    status, out, cpu, rss = run_measured(cmd)
    found = re.search(r"50th = ([0-9.]+), 99th = ([0-9.]+), 99.9th = ([0-9.]+)", out)
    avg = re.search(r"Avg latency: ([0-9.]+) ms", out)
    if status != 0 or not found:
        print(f"[bench] EndToEndLatency failed:\n{out[-2000:]}", flush=True)
        return None
    p50, p99, p999 = (float(v) for v in found.groups())
    return {"records": n, "p50_ms": p50, "p99_ms": p99, "p99_9_ms": p999,
            "avg_ms": float(avg.group(1)) if avg else None, "cpu_s": cpu, "peak_rss_mib": rss}


def consumer_perf(bs, topic, n, group):
    """kafka-consumer-perf-test: its own counts and rates (fetch.nMsg.sec excludes the group join)."""
    cmd = ["java", "-Xmx512m", "-cp", os.path.join(KAFKA_LIBS, "*"), "org.apache.kafka.tools.ConsumerPerformance",
           "--bootstrap-server", bs, "--topic", topic, "--messages", str(n), "--group", group,
           "--timeout", "120000"]
    status, out, cpu, rss = run_measured(cmd)
    lines = [line for line in out.splitlines() if line.count(",") >= 9]
    if status != 0 or len(lines) < 2:
        print(f"[bench] kafka-consumer-perf-test failed:\n{out[-2000:]}", flush=True)
        return {"records": 0, "records_per_s": 0.0, "cpu_s": cpu, "peak_rss_mib": rss}
    row = dict(zip([h.strip() for h in lines[0].split(",")], [v.strip() for v in lines[-1].split(",")]))
    return {"records": int(row["data.consumed.in.nMsg"]), "records_per_s": float(row["fetch.nMsg.sec"]),
            "nMsg_sec_incl_join": float(row["nMsg.sec"]), "seconds": float(row["fetch.time.ms"]) / 1000,
            "rebalance_ms": float(row["rebalance.time.ms"]), "cpu_s": cpu, "peak_rss_mib": rss}


class Daemon:
    """A macklake daemon in its own directory: fresh state, the given connector files."""

    def __init__(self, work, daemon_id, bs, connectors):
        self.dir = tempfile.mkdtemp(dir=work, prefix="daemon.")
        os.makedirs(os.path.join(self.dir, "connectors"))
        with open(os.path.join(self.dir, "macklake.toml"), "w") as f:
            f.write(f'connectors_dir = "connectors"\nstate_dir = "state"\ndaemon_id = "{daemon_id}"\n'
                    f'[http]\nenabled = false\n[log]\nlevel = "warn"\n[kafka]\n"bootstrap.servers" = "{bs}"\n')
        for name, text in connectors.items():
            with open(os.path.join(self.dir, "connectors", f"{name}.toml"), "w") as f:
                f.write(text)
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.proc = subprocess.Popen([MACKLAKE, "run", "--config", os.path.join(self.dir, "macklake.toml")],
                                     stdout=log, stderr=log)
        self.hwm = HwmSampler(self.proc.pid)
        log.close()
        return self

    def alive(self):
        return pid_alive(self.proc.pid)  # not Popen.poll(): reaping would lose its rusage

    def usage(self):
        return proc_usage(self.proc.pid)

    def stop(self):
        """SIGTERM (flush, checkpoint, fsync, commit), reap: (CPU s, peak RSS MiB) of its life."""
        if pid_alive(self.proc.pid):
            self.proc.send_signal(signal.SIGTERM)
        _, status, ru = os.wait4(self.proc.pid, 0)
        self.proc.returncode = status
        return cpu_of(ru), self.hwm.result()

    def log_tail(self, n=15):
        with open(os.path.join(self.dir, "daemon.log"), errors="replace") as f:
            return "".join(f.readlines()[-n:])


def source_toml(name, paths, topic, exactly_once, extra=""):
    """A file-source; `extra` is appended (top-level keys, then any tables)."""
    quoted = ", ".join(f'"{p}"' for p in paths)
    return (f'name = "{name}"\nkind = "file-source"\npaths = [{quoted}]\nkey = "none"\n'
            f'exactly_once = {"true" if exactly_once else "false"}\n'
            f'offsets_topic = "{topic}-offsets"\ntopic = "{topic}"\n{extra}')


def sink_toml(name, topic, dir=None, file=None, extra=""):
    where = f'dir = "{dir}"' if dir else f'file = "{file}"'
    return f'name = "{name}"\nkind = "file-sink"\ntopics = ["{topic}"]\n{where}\nformat = "lines"\n{extra}'


class ConnectWorker:
    """A Kafka Connect standalone worker (scripts/connect-worker) running one .properties connector."""

    def __init__(self, work, bs, props):
        self.dir = tempfile.mkdtemp(dir=work, prefix="connect.")
        self.props = os.path.join(self.dir, "bench.properties")
        with open(self.props, "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in props.items()))
        self.worker = os.path.join(self.dir, "worker")
        self.bs = bs

    def start(self):
        # Connect's own bin/connect-standalone.sh gives the worker -Xmx2G; at scripts/connect-worker's
        # 256m a FileStreamSource reading a 1M-line file ran out of heap (it reads ahead of its producer).
        r = subprocess.run([CONNECT_WORKER, "start", "--dir", self.worker, "--bootstrap", self.bs,
                            "--port", CONNECT_PORT, "--heap", "2g", self.props], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"connect-worker start failed:\n{r.stderr[-3000:]}")
        with open(os.path.join(self.worker, "worker.pid")) as f:
            self.pid = int(f.read().strip())
        return self

    def alive(self):
        return pid_alive(self.pid)

    def usage(self):
        return proc_usage(self.pid)

    def stop(self):
        subprocess.run([CONNECT_WORKER, "stop", "--dir", self.worker], capture_output=True)


def source_macklake(bs, topic, n, path, work, exactly_once, partitions, extra=""):
    d = Daemon(work, f"bench-{topic}", bs, {"bench": source_toml("bench", [path], topic, exactly_once, extra)}).start()
    wait_settled(bs, topic, n, partitions, alive=d.alive)
    return d.stop()


def source_connect(bs, topic, n, path, work, partitions):
    w = ConnectWorker(work, bs, {"name": f"bench-{topic}", "connector.class": "FileStreamSource",
                                 "tasks.max": "1", "file": path, "topic": topic}).start()
    try:
        wait_settled(bs, topic, n, partitions, alive=w.alive)
        return w.usage()
    finally:
        w.stop()


def sink_result(n, watcher, records, cpu, rss, **extra):
    # At least one poll interval: all bytes may appear between two polls on tiny runs.
    secs = max(watcher.complete - watcher.first, 0.01) if watcher.complete and watcher.first else None
    # Also from a tenth of the bytes on: insensitive to output buffered before the first write.
    tail = max(watcher.complete - watcher.tenth, 0.01) if watcher.complete and watcher.tenth else None
    # How the output grew: (seconds since the first byte, bytes), at most ~100 points.
    trace = watcher.trace[:: max(1, len(watcher.trace) // 100)] + watcher.trace[-1:]
    progress = [[round(t - watcher.first, 3), b] for t, b in trace] if watcher.first else []
    return {"records": records, "seconds": secs, "records_per_s": n / secs if secs else 0.0,
            "progress": progress,
            "records_per_s_from_tenth": 0.9 * n / tail if tail else None,
            "bytes": watcher.last, "cpu_s": cpu, "peak_rss_mib": rss, **extra}


def sink_macklake(bs, topic, n, size, work, uniq, partitions, extra=""):
    """One file-sink (dir, lines) from the beginning of the topic (`extra`: more sink keys, e.g. a
    layout). Throughput until every byte is in the files (readable); also until the group's
    committed offsets cover the topic (fsynced)."""
    out = tempfile.mkdtemp(dir=work, prefix="sink-out.")
    group = f"sink-{uniq}"
    d = Daemon(work, f"bench-{uniq}", bs, {"sink": sink_toml(group, topic, dir=out, extra=extra)})
    w = ByteWatcher(lambda: tree_bytes(out), n * (size + 1))
    w.start()
    d.start()
    w.wait(60, d.alive)
    ends = sum(end_offsets(bs, topic, partitions).values())
    admin = KafkaAdminClient(bootstrap_servers=bs)
    durable = None
    deadline = time.monotonic() + 30
    while w.complete and time.monotonic() < deadline and d.alive():
        if committed_total(admin, group) >= ends:
            durable = time.monotonic()
            break
        time.sleep(0.02)
    admin.close()
    time.sleep(0.5)
    cpu, rss = d.stop()
    records = count_lines(tree_files(out))
    w.last = tree_bytes(out)
    return sink_result(n, w, records, cpu, rss, group=group,
                       durable_records_per_s=n / (durable - w.first) if durable else None)


def sink_connect(bs, topic, n, size, work, uniq):
    """FileStreamSink into one file (it never fsyncs: flush() only flushes the stream)."""
    out = os.path.join(tempfile.mkdtemp(dir=work, prefix="sink-out."), "sink.txt")
    name = f"sink-{uniq}"
    w = ByteWatcher(lambda: file_bytes(out), n * (size + 1))
    w.start()
    worker = ConnectWorker(work, bs, {"name": name, "connector.class": "FileStreamSink", "tasks.max": "1",
                                      "file": out, "topics": topic})
    try:
        worker.start()
        w.wait(60, worker.alive)
        time.sleep(0.5)
        cpu, rss = worker.usage()
    finally:
        worker.stop()
    records = count_lines([out]) if os.path.exists(out) else 0
    w.last = file_bytes(out)
    return sink_result(n, w, records, cpu, rss, group=f"connect-{name}")


def sink_disk(n, size, work):
    """The disk's ceiling: the same bytes written by this Python process in 1 MiB chunks to a fresh
    file next to the sinks' files, then fsync; rate = n / (open → fsync returned)."""
    path = os.path.join(work, f"disk-{time.monotonic_ns()}.bin")
    total = n * (size + 1)
    line = b"A" * size + b"\n"
    chunk = (line * ((1 << 20) // len(line) + 1))[: 1 << 20]
    t0 = time.monotonic()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    left = total
    while left > 0:
        left -= os.write(fd, chunk[: min(left, len(chunk))])
    os.fsync(fd)
    os.close(fd)
    secs = time.monotonic() - t0
    written = os.stat(path).st_size
    os.unlink(path)
    return {"records": n if written == total else written // (size + 1), "seconds": secs,
            "records_per_s": n / secs, "bytes": written, "cpu_s": None, "peak_rss_mib": None}
