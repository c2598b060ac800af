"""Append→readable latency for scripts/bench and scripts/latency: a steady appender and a follower of the sink's file.

The appender holds a rate by writing, every ~0.5 ms tick, all the lines whose due time has passed
(one write per file per tick, round-robin over the files), each line stamped with time.time_ns()
taken just before its write. Lines are LINE_BYTES long plus the newline: "TAG INDEX NS xxxx...".
The follower (a thread) reads the single sink file as it grows and records, for every line of the
measured tag, arrival time − stamp, where the arrival time is when its read returned the bytes.
Duplicates (same tag and index twice) are counted, not measured twice.

Before measuring, a warm-up (its own tag, not counted) runs at the same rate until at least
`warmup` seconds (and 3 s) have passed and the sink keeps up (as many warm-up lines have arrived as
were appended until 2 s ago), so group joins and first metadata requests are excluded; after
`warmup_cap` seconds it measures anyway (a pipeline that does not keep up: warmup_s shows it).
"""
import math
import os
import threading
import time

LINE_BYTES = 100
CDF_POINTS = 200


class Follower(threading.Thread):
    def __init__(self, path, warm_tag, tag, total):
        super().__init__(daemon=True)
        self.path, self.warm, self.tag, self.total = path, warm_tag.encode(), tag.encode(), total
        self.warm_count = 0
        self.latencies = []  # ms
        self.by_index = []  # (index, ms)
        self.seen = bytearray(total)
        self.duplicates = 0
        self.stray = 0  # lines of neither tag (none expected: the sink file is fresh)
        self.stop = threading.Event()

    def run(self):
        fd, pos, buf = None, 0, b""
        while not self.stop.is_set():
            if fd is None:
                try:
                    fd = os.open(self.path, os.O_RDONLY)
                except FileNotFoundError:
                    time.sleep(0.001)
                    continue
            chunk = os.pread(fd, 1 << 20, pos)
            now = time.time_ns()
            if not chunk:
                time.sleep(0.0005)
                continue
            pos += len(chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                parts = line.split(b" ", 3)
                if len(parts) < 3:
                    self.stray += 1
                elif parts[0] == self.tag:
                    i = int(parts[1])
                    if self.seen[i]:
                        self.duplicates += 1
                    else:
                        self.seen[i] = 1
                        ms = (now - int(parts[2])) / 1e6
                        self.latencies.append(ms)
                        self.by_index.append((i, ms))
                elif parts[0] == self.warm:
                    self.warm_count += 1
                else:
                    self.stray += 1
        if fd is not None:
            os.close(fd)


def _line(tag, i, ns):
    head = f"{tag} {i} {ns} "
    return head + "x" * max(0, LINE_BYTES - len(head)) + "\n"


def _append(fds, tag, rate, total, stop=None):
    """Append `total` lines at `rate`/s round-robin over fds; returns (lines sent, max lag s)."""
    k = len(fds)
    start = time.monotonic()
    sent, max_lag = 0, 0.0
    while sent < total:
        now = time.monotonic()
        due = min(total, int((now - start) * rate) + 1)
        if due > sent:
            max_lag = max(max_lag, now - (start + sent / rate))
            ns = time.time_ns()
            if k == 1:
                os.write(fds[0], "".join(_line(tag, i, ns) for i in range(sent, due)).encode())
            else:
                per = {}
                for i in range(sent, due):
                    per.setdefault(i % k, []).append(_line(tag, i, ns))
                for f, lines in per.items():
                    os.write(fds[f], "".join(lines).encode())
            sent = due
        if stop is not None and stop(sent, now - start):
            break
        time.sleep(0.0005)
    return sent, max_lag


def measure(files, sink_file, rate, seconds, warmup=2.0, warmup_cap=20.0, on_start=None, drain_timeout=30.0):
    """Warm up, then append rate×seconds lines and wait for them in sink_file (up to drain_timeout
    after the last append). on_start() is called as measuring begins; its result is returned as
    "start". Returns a dict: expected, received, duplicates, sorted latencies (ms), ..."""
    uniq = f"{os.getpid()}x{time.monotonic_ns() % 10**9}"
    total = int(rate * seconds)
    follower = Follower(sink_file, f"w{uniq}", f"m{uniq}", total)
    follower.start()
    fds = [os.open(f, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) for f in files]
    try:
        def warmed(sent, elapsed):
            if elapsed > warmup_cap:
                return True  # the sink never kept up: measure anyway; the result shows it (warmup_s)
            return elapsed >= max(warmup, 3.0) and follower.warm_count >= rate * (elapsed - 2.0)

        t0 = time.monotonic()
        _append(fds, f"w{uniq}", rate, 1 << 62, warmed)
        warm_s = time.monotonic() - t0
        started = on_start() if on_start else None
        sent, max_lag = _append(fds, f"m{uniq}", rate, total)
        deadline = time.monotonic() + drain_timeout
        while len(follower.latencies) < total and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # duplicates right behind the last line
    finally:
        for fd in fds:
            os.close(fd)
        follower.stop.set()
        follower.join()
    lat = sorted(follower.latencies)
    per_second = {}
    for i, ms in follower.by_index:
        per_second.setdefault(int(i // rate), []).append(ms)
    timeline = [round(percentile(sorted(per_second[s]), 50), 1) for s in sorted(per_second)]
    return {"expected": total, "received": len(lat), "duplicates": follower.duplicates,
            "stray_lines": follower.stray, "warmup_s": round(warm_s, 2), "appender_max_lag_ms": round(max_lag * 1e3, 2),
            "latencies": lat, "start": started,
            "p50_ms_per_second": timeline}


def percentile(sorted_ms, p):
    """Nearest-rank percentile (p in 0..100) of a sorted list."""
    if not sorted_ms:
        return None
    return sorted_ms[max(0, min(len(sorted_ms) - 1, math.ceil(p / 100 * len(sorted_ms)) - 1))]


def cdf(sorted_ms, points=CDF_POINTS):
    """[[p, ms], ...]: `points` quantiles spaced evenly in log(1 − p) from p = 0 to 0.9999, then the
    maximum (p = 1), so that a tail-stretched plot has as many points in the tail as in the body."""
    if not sorted_ms:
        return []
    n = len(sorted_ms)
    out = []
    for j in range(points):
        p = 1 - 10 ** (-4 * j / (points - 1))
        out.append([round(p, 6), round(sorted_ms[min(n - 1, int(p * n))], 3)])
    out.append([1.0, round(sorted_ms[-1], 3)])
    return out
