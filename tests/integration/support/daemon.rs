//! A macklake daemon under test: its own temp directory (config, connectors, state, source files,
//! sink archive), started as the real binary, stopped with real signals.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub struct Daemon {
    pub root: tempfile::TempDir,
    pub config: PathBuf,
    pub connectors: PathBuf,
    pub logs: PathBuf,
    pub archive: PathBuf,
    log_file: PathBuf,
    child: Option<Child>,
    starts: u32,
    env: Vec<(String, String)>,
}

impl Daemon {
    /// A daemon for `bootstrap` with a stable `daemon_id`.
    pub fn new(bootstrap: &str, daemon_id: &str) -> Daemon {
        let root = tempfile::tempdir().expect("temp dir");
        let path = |p: &str| root.path().join(p);
        for d in ["connectors", "state", "logs", "archive"] {
            fs::create_dir_all(path(d)).expect("mkdir");
        }
        let config = path("macklake.toml");
        fs::write(
            &config,
            format!(
                "connectors_dir = \"connectors\"\nstate_dir = \"state\"\ndaemon_id = \"{daemon_id}\"\n\
                 shutdown_timeout = \"20s\"\n[log]\nlevel = \"info\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
                 [kafka]\n\"bootstrap.servers\" = \"{bootstrap}\"\n"
            ),
        )
        .expect("write config");
        Daemon {
            config,
            connectors: path("connectors"),
            logs: path("logs"),
            archive: path("archive"),
            log_file: path("daemon.log"),
            root,
            child: None,
            starts: 0,
            env: Vec::new(),
        }
    }

    /// Writes a connector file into `connectors_dir`.
    pub fn connector(&self, file: &str, text: &str) {
        fs::write(self.connectors.join(file), text).expect("write connector");
    }

    /// A file-source of `logs/*.log` into `topic` (created with `partitions`, RF 3 if missing).
    pub fn source(&self, name: &str, topic: &str, partitions: i32) {
        self.connector(
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\nkind = \"file-source\"\npaths = [\"{}/*.log\"]\nrescan_interval = \"1s\"\n\
                 [topic]\nname = \"{topic}\"\npartitions = {partitions}\nreplication_factor = 3\n",
                self.logs.display()
            ),
        );
    }

    /// A file-source of `logs/*.log` with extra keys (before the `[topic]` table).
    pub fn source_with(&self, name: &str, topic: &str, partitions: i32, extra: &str) {
        self.connector(
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\nkind = \"file-source\"\npaths = [\"{}/*.log\"]\n{extra}\n\
                 [topic]\nname = \"{topic}\"\npartitions = {partitions}\nreplication_factor = 3\n",
                self.logs.display()
            ),
        );
    }

    /// A file-sink of `topics` into `archive/`.
    pub fn sink(&self, name: &str, topics: &[&str], extra: &str) {
        let topics = topics.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
        self.connector(
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\nkind = \"file-sink\"\ntopics = [{topics}]\ndir = \"{}\"\n{extra}\n",
                self.archive.display()
            ),
        );
    }

    pub fn start(&mut self) {
        self.start_wrapped(&[]);
    }

    /// An environment variable for the next starts.
    pub fn env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// The HTTP listener's address (the harness listens on port 0), from the log of this start.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        let marker = "HTTP listener: /metrics, /health, Kafka Connect REST API addr=";
        super::wait_for("the HTTP listener in the daemon log", Duration::from_secs(30), || {
            let log = self.log();
            let line = log.lines().rev().find(|l| l.contains(marker))?;
            line.split(marker).nth(1)?.split_whitespace().next()?.parse().ok()
        })
    }

    /// `GET path` on the daemon's HTTP listener: the status code and the body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http_addr(), path)
    }

    /// Any request on the daemon's HTTP listener: the status code and the body.
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http_request(self.http_addr(), method, path, body)
    }

    /// `GET path`, parsed as JSON (panics on a non-200 answer).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.http_get(path);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// `GET path` parsed as JSON, or None while it does not answer 200 (for `wait_for`: the HTTP
    /// listener answers before the connectors are loaded, and a connector not loaded yet is 404).
    pub fn try_json(&self, path: &str) -> Option<serde_json::Value> {
        let (code, body) = self.http_get(path);
        if code != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// Starts the daemon under `wrapper` (a command and its arguments, e.g. `prlimit` or
    /// `setpriv`), which must exec the rest of its command line.
    pub fn start_wrapped(&mut self, wrapper: &[&str]) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let log = OpenOptions::new().create(true).append(true).open(&self.log_file).expect("log file");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_macklake"));
                c
            }
            None => super::macklake(),
        };
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = command
            .args(["run", "--config"])
            .arg(&self.config)
            .env(
                "MACKLAKE_LOG",
                std::env::var("MACKLAKE_TEST_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("macklake run starts");
        self.child = Some(child);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the daemon did not exit within 40s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Forgets the environment variables set with `env` (for the next starts).
    pub fn clear_env(&mut self) {
        self.env.clear();
    }

    /// Waits (bounded) for the daemon to exit by itself; `None` if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Files in the sink's directory for `topic` that reconciliation set aside
    /// (`*.damaged-*`, `*.uncommitted-*`).
    pub fn set_aside(&self, topic: &str) -> Vec<String> {
        fs::read_dir(self.archive.join(topic))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(".damaged-") || n.contains(".uncommitted-"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        super::wait_for(&format!("{needle:?} in the daemon log"), timeout, || {
            self.log().contains(needle).then_some(())
        })
    }

    /// Every line of the sink's files for `topic`, file by file in name order (per partition:
    /// rotated files by offset range, then the active file).
    pub fn archived(&self, topic: &str) -> Vec<String> {
        archived_lines(&self.archive.join(topic))
    }

    /// `assert_exactly_once` on this daemon's archive of `topic`, with its log on failure.
    pub fn assert_archived_once(&self, topic: &str, expected: &[String]) {
        let archived = self.archived(topic);
        let result = std::panic::catch_unwind(|| assert_exactly_once(&archived, expected));
        if let Err(panic) = result {
            eprintln!("--- daemon log ---\n{}", tail(&self.log(), 80));
            std::panic::resume_unwind(panic);
        }
    }

    /// Waits until the sink holds at least `n` lines of `topic`; returns them.
    pub fn wait_archived(&self, topic: &str, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.archived(topic);
            if lines.len() >= n {
                return lines;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?}: {} of {n} lines of {topic} archived\n--- daemon log ---\n{}",
                    lines.len(),
                    tail(&self.log(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET (no client library: the request is what is under test).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, "")
}

/// A plain HTTP/1.1 request with a JSON body (empty: none).
pub fn http_request(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Lines of every `*.log` file in `dir` and the bucket directories below it (time layouts), in
/// file-name order: per partition, rotated files by offset range, then the active file.
pub fn archived_lines(dir: &Path) -> Vec<String> {
    let mut files: Vec<(std::ffi::OsString, PathBuf)> = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                files.push((e.file_name(), p));
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for (_, f) in files {
        let text = fs::read(&f).unwrap_or_default();
        out.extend(String::from_utf8_lossy(&text).lines().map(str::to_string));
    }
    out
}

/// Appends `lines` to `path`, each with a newline, in one write.
pub fn append(path: &Path, lines: &[String]) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).expect("open for append");
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
    }
    f.write_all(&buf).expect("append");
}

/// Checks that `archived` holds every line of `expected` exactly once; on failure, says how many
/// were lost and duplicated, with examples.
pub fn assert_exactly_once(archived: &[String], expected: &[String]) {
    use std::collections::HashMap;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in archived {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = expected.iter().filter(|l| !counts.contains_key(l.as_str())).collect();
    let dup: Vec<(&&str, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    let unexpected =
        archived.len() + lost.len() - expected.len() - dup.iter().map(|(_, c)| *c - 1).sum::<usize>();
    assert!(
        lost.is_empty() && dup.is_empty() && unexpected == 0,
        "{} lost (e.g. {:?}), {} duplicated (e.g. {:?}), {} unexpected, of {} expected",
        lost.len(),
        lost.iter().take(3).collect::<Vec<_>>(),
        dup.len(),
        dup.iter().take(3).collect::<Vec<_>>(),
        unexpected,
        expected.len()
    );
}

/// A file name in `dir` for a test's source data.
pub fn touch(path: &Path) {
    File::create(path).expect("create");
}
