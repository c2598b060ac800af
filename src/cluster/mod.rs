//! `macklake cluster`: a real, replicated Apache Kafka on this machine, for the demo, the tests and
//! development. Each node is a JVM started from the pinned Kafka jars, listening on 127.0.0.1 only;
//! logs, data and pid files stay under the cluster directory.
//!
//! API boundary: `up`, `status`, `down`, `kill`, `start`. Nothing here is used by the daemon; the
//! daemon is only ever a client of some cluster.

pub mod distribution;
pub mod java;
pub mod layout;
pub mod process;
pub mod progress;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use nix::sys::signal::Signal;

pub use layout::{Layout, Manifest, Member, Mode};
pub use progress::Progress;

use crate::kafka::admin;
use distribution::Distribution;
use java::Java;

/// What can go wrong while deploying or operating the local cluster. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No `java` could be run.
    #[error("Java {min} or newer is needed to run Kafka, but `{tried}` could not be run: install a JDK (e.g. `apt install openjdk-17-jre-headless`) or set JAVA_HOME", min = java::MIN_JAVA)]
    JavaMissing { tried: String },
    /// `java -version` printed something unexpected.
    #[error("could not read the Java version from `{tried} -version` (it said: {said}); set JAVA_HOME to a JDK {min}+", min = java::MIN_JAVA)]
    JavaUnreadable { tried: String, said: String },
    /// Java is older than Kafka supports.
    #[error("Kafka needs Java {min} or newer, but `{tried}` is Java {major}: install a newer JDK or set JAVA_HOME to one", min = java::MIN_JAVA)]
    JavaTooOld { tried: String, major: u32 },
    /// No cached jars, no KAFKA_HOME and no Maven to fetch them.
    #[error("Maven (`mvn`) is needed to download Kafka {version}'s jars the first time (nothing cached in {}): install Maven (e.g. `apt install maven`) or pass --kafka-home / set KAFKA_HOME to an unpacked Kafka {version}", cache.display())]
    MavenMissing { version: String, cache: PathBuf },
    /// Maven ran and failed.
    #[error(
        "Maven could not resolve Kafka {version}'s jars (is Maven Central reachable?); its last output:\n{output}"
    )]
    MavenFailed { version: String, output: String },
    /// `--kafka-home`/`KAFKA_HOME` does not hold a usable Kafka.
    #[error("--kafka-home/KAFKA_HOME {} cannot be used: {problem}", home.display())]
    KafkaHome { home: PathBuf, problem: String },
    /// A port the cluster needs is taken by another process.
    #[error(
        "port {port} ({what} port of {member}) is already in use by another process: stop that process, or pick another port range with --base-port"
    )]
    PortInUse { port: u16, what: &'static str, member: Member },
    /// A command that needs a cluster found none.
    #[error("no cluster has been set up in {}: run `macklake cluster up` first (or pass --dir)", dir.display())]
    NoCluster { dir: PathBuf },
    /// `up` was asked for a different shape than the cluster that exists.
    #[error("the cluster in {} was set up with {existing}, not {asked}: run `macklake cluster down`, delete {} and run `up` again, or use another --dir", dir.display(), dir.display())]
    Mismatch { dir: PathBuf, existing: String, asked: String },
    /// `DIR/cluster.json` is unreadable.
    #[error("{} is damaged ({cause}): delete the cluster directory and run `macklake cluster up` again", path.display())]
    BadManifest { path: PathBuf, cause: String },
    /// A bundled config template names a variable nothing fills in (a bug in macklake).
    #[error("the bundled config template for {member} uses an unknown placeholder ${{{name}}}")]
    Template { member: String, name: String },
    /// The NODE argument names no member of this cluster.
    #[error("{member} is not part of the cluster in {} (it has {nodes} nodes)", dir.display())]
    UnknownMember { member: String, dir: PathBuf, nodes: u32 },
    /// A member did not come up; `log_tail` is the end of its log.
    #[error("{member} failed to start: {reason}\n{log_tail}")]
    StartFailed { member: Member, reason: String, log_tail: String },
    /// Formatting a node's storage failed.
    #[error("formatting the storage of {member} failed:\n{output}")]
    FormatFailed { member: Member, output: String },
    /// `--sasl-ssl-port` with a ZooKeeper-mode cluster.
    #[error(
        "--sasl-ssl-port needs a KRaft cluster (SCRAM users are created when KRaft storage is formatted)"
    )]
    SaslSslNeedsKraft,
    /// The SASL_SSL ports collide with the client or controller ports.
    #[error(
        "--sasl-ssl-port {port} overlaps the ports planned from base port {base_port} (clients P.., controllers P+100..): pick another, e.g. P+50"
    )]
    SaslSslPortOverlap { port: u16, base_port: u16 },
    /// A `--scram-user` that is not NAME=PASSWORD.
    #[error("--scram-user must be NAME=PASSWORD (NAME without '=', ',', '[' or ']'), not `{name}=...`")]
    BadScramUser { name: String },
    /// Making the cluster's CA or broker certificate failed.
    #[error("making the TLS certificates in {} failed (is `openssl` installed?): {output}", dir.display())]
    Tls { dir: PathBuf, output: String },
    /// An I/O operation failed; `context` says which.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Wraps an `io::Error` with what was being done.
pub(crate) fn io_err(context: String) -> impl FnOnce(std::io::Error) -> ClusterError {
    move |source| ClusterError::Io { context, source }
}

/// What `cluster up` was asked for. `None` means "as the existing cluster has it, else the default".
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dir: PathBuf,
    pub nodes: Option<u32>,
    pub base_port: Option<u16>,
    pub mode: Option<Mode>,
    pub kafka_home: Option<PathBuf>,
    pub heap: String,
    pub timeout: Duration,
    /// Add a SASL_SSL (SCRAM-SHA-512) client listener to every node, node n on this port + n-1.
    pub sasl_ssl_port: Option<u16>,
    /// SCRAM-SHA-512 users (name, password) created when the storage is first formatted.
    pub scram_users: Vec<(String, String)>,
}

pub const DEFAULT_NODES: u32 = 3;
pub const DEFAULT_BASE_PORT: u16 = 9092;

/// Whether `up` started anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpOutcome {
    Started,
    AlreadyRunning,
}

/// Brings the cluster up (idempotent): starts every member that is not running and waits until all
/// brokers are in the cluster metadata. On failure, stops what this call started.
pub fn up(opts: &UpOptions, progress: &Progress) -> Result<(Layout, UpOutcome), ClusterError> {
    let existing = Layout::load(&opts.dir)?;
    if let Some(l) = &existing {
        check_same_shape(l, opts)?;
        if l.members().iter().all(|m| process::running_pid(l, *m).is_some()) {
            progress.step("every node is already running; checking the cluster metadata");
            wait_registered(l, &mut [], l.nodes().collect::<Vec<_>>().as_slice(), opts.timeout, progress)?;
            return Ok((l.clone(), UpOutcome::AlreadyRunning));
        }
    }
    let mode = opts.mode.or(existing.as_ref().map(|l| l.manifest.mode)).unwrap_or(Mode::Kraft);
    let sasl_ssl_port = opts.sasl_ssl_port.or(existing.as_ref().and_then(|l| l.manifest.sasl_ssl_port));
    if sasl_ssl_port.is_some() && mode != Mode::Kraft {
        return Err(ClusterError::SaslSslNeedsKraft);
    }
    for (name, _) in &opts.scram_users {
        if name.is_empty() || name.contains(['=', ',', '[', ']']) {
            return Err(ClusterError::BadScramUser { name: name.clone() });
        }
    }
    let java = java::find()?;
    let dist = distribution::locate(mode, opts.kafka_home.as_deref(), progress)?;
    progress.step(&format!(
        "Kafka {} from {} ({}), Java {}",
        dist.version,
        dist.origin,
        dist.libs.display(),
        java.major
    ));
    let layout = Layout {
        dir: layout::absolute(&opts.dir)?,
        manifest: Manifest {
            mode,
            nodes: opts.nodes.or(existing.as_ref().map(|l| l.manifest.nodes)).unwrap_or(DEFAULT_NODES),
            base_port: opts
                .base_port
                .or(existing.as_ref().map(|l| l.manifest.base_port))
                .unwrap_or(DEFAULT_BASE_PORT),
            kafka_version: dist.version.clone(),
            cluster_id: existing
                .as_ref()
                .map(|l| l.manifest.cluster_id.clone())
                .unwrap_or_else(new_cluster_id),
            libs: dist.libs.clone(),
            heap: opts.heap.clone(),
            sasl_ssl_port,
        },
    };
    if let Some(p) = sasl_ssl_port {
        // The SASL_SSL range is chosen freely, so it may collide with the cluster's own plan.
        let planned: Vec<u16> =
            layout.members().iter().flat_map(|m| layout.ports(*m)).map(|(port, _)| port).collect();
        let mut unique = planned.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != planned.len() {
            return Err(ClusterError::SaslSslPortOverlap { port: p, base_port: layout.manifest.base_port });
        }
    }
    std::fs::create_dir_all(&layout.dir).map_err(io_err(format!("creating {}", layout.dir.display())))?;
    if sasl_ssl_port.is_some() {
        make_certificates(&layout, progress)?;
    }
    layout.write_configs()?;
    layout.save()?;

    let to_start: Vec<Member> =
        layout.members().into_iter().filter(|m| process::running_pid(&layout, *m).is_none()).collect();
    for member in &to_start {
        for (port, what) in layout.ports(*member) {
            if !process::port_free(port) {
                return Err(ClusterError::PortInUse { port, what, member: *member });
            }
        }
    }
    if mode == Mode::Kraft {
        format_storage(&layout, &java, &dist, &to_start, &opts.scram_users, progress)?;
    }
    let mut started: Vec<(Member, Child)> = Vec::new();
    let result = start_members(&layout, &java, &dist, &to_start, &mut started, opts.timeout, progress);
    if let Err(e) = result {
        let members: Vec<Member> = started.iter().map(|(m, _)| *m).collect();
        progress.step(&format!("stopping what this run started: {}", list(&members)));
        process::stop_all(&layout, &members, Duration::from_secs(10));
        for (_, mut child) in started {
            let _ = child.wait();
        }
        return Err(e);
    }
    Ok((layout, UpOutcome::Started))
}

fn list(members: &[Member]) -> String {
    members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
}

fn check_same_shape(l: &Layout, opts: &UpOptions) -> Result<(), ClusterError> {
    let m = &l.manifest;
    let mismatch =
        |existing: String, asked: String| ClusterError::Mismatch { dir: l.dir.clone(), existing, asked };
    if let Some(n) = opts.nodes.filter(|n| *n != m.nodes) {
        return Err(mismatch(format!("{} nodes", m.nodes), format!("{n} nodes")));
    }
    if let Some(p) = opts.base_port.filter(|p| *p != m.base_port) {
        return Err(mismatch(format!("base port {}", m.base_port), format!("base port {p}")));
    }
    if let Some(mode) = opts.mode.filter(|x| *x != m.mode) {
        return Err(mismatch(format!("{} mode", m.mode.name()), format!("{} mode", mode.name())));
    }
    if let Some(p) = opts.sasl_ssl_port.filter(|p| Some(*p) != m.sasl_ssl_port) {
        let existing = match m.sasl_ssl_port {
            Some(q) => format!("SASL_SSL port {q}"),
            None => "no SASL_SSL listener".to_string(),
        };
        return Err(mismatch(existing, format!("SASL_SSL port {p}")));
    }
    Ok(())
}

/// A Kafka cluster id: 16 random bytes in URL-safe base64 without padding, never starting with '-'
/// (as Kafka's own `Uuid.randomUuid` does, so that command lines do not mistake it for a flag).
fn new_cluster_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// A CA and a broker certificate (SAN IP:127.0.0.1, DNS:localhost) signed by it, made once with
/// `openssl` under `DIR/tls`: `ca.crt` for clients, `broker.pem` (key + chain) for the brokers.
fn make_certificates(layout: &Layout, progress: &Progress) -> Result<(), ClusterError> {
    let dir = layout.tls_dir();
    if dir.join(layout::BROKER_PEM).exists() && dir.join(layout::CA_CERT).exists() {
        return Ok(());
    }
    progress.step(&format!("making a CA and a broker certificate in {}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let ext = dir.join("broker.ext");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        .map_err(io_err(format!("writing {}", ext.display())))?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=macklake local cluster CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "broker.key",
            "-out",
            "broker.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "broker.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "broker.crt",
            "-days",
            "3650",
            "-extfile",
            "broker.ext",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ClusterError::Tls { dir: dir.clone(), output: e.to_string() })?;
        if !out.status.success() {
            let output =
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            return Err(ClusterError::Tls { dir: dir.clone(), output });
        }
    }
    // Kafka's PEM keystore: the (unencrypted PKCS#8) private key followed by the certificate.
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(io_err(format!("reading {}", dir.join(name).display())))
    };
    let pem = read("broker.key")? + &read("broker.crt")?;
    let target = dir.join(layout::BROKER_PEM);
    std::fs::write(&target, pem).map_err(io_err(format!("writing {}", target.display())))?;
    for key in ["ca.key", "broker.key", layout::BROKER_PEM] {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(key);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(format!("restricting {}", path.display())))?;
    }
    Ok(())
}

/// KRaft nodes need their storage formatted once with the cluster id; done in parallel. SCRAM
/// users can only be added then (afterwards it takes an admin client on a SASL listener).
fn format_storage(
    layout: &Layout,
    java: &Java,
    dist: &Distribution,
    members: &[Member],
    scram_users: &[(String, String)],
    progress: &Progress,
) -> Result<(), ClusterError> {
    let pending: Vec<Member> = members
        .iter()
        .copied()
        .filter(|m| matches!(m, Member::Node(_)) && !layout.data_dir(*m).join("meta.properties").exists())
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    progress.step(&format!("formatting storage of {}", list(&pending)));
    let mut children = Vec::new();
    for member in &pending {
        let child = Command::new(&java.path)
            .args(layout.logging_args(*member))
            .arg("-cp")
            .arg(dist.classpath())
            .arg("kafka.tools.StorageTool")
            .args(["format", "--ignore-formatted", "-t", &layout.manifest.cluster_id, "-c"])
            .arg(layout.config_file(*member))
            .args(scram_users.iter().flat_map(|(name, password)| {
                ["--add-scram".to_string(), format!("SCRAM-SHA-512=[name={name},password={password}]")]
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err(format!("running the storage formatter for {member}")))?;
        children.push((*member, child));
    }
    for (member, child) in children {
        let out = child.wait_with_output().map_err(io_err(format!("formatting {member}")))?;
        if !out.status.success() {
            let output =
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            return Err(ClusterError::FormatFailed { member, output });
        }
    }
    Ok(())
}

fn start_members(
    layout: &Layout,
    java: &Java,
    dist: &Distribution,
    to_start: &[Member],
    started: &mut Vec<(Member, Child)>,
    timeout: Duration,
    progress: &Progress,
) -> Result<(), ClusterError> {
    let deadline = Instant::now() + timeout;
    // ZooKeeper first: brokers in ZooKeeper mode give up if they cannot reach it.
    let zookeepers: Vec<Member> =
        to_start.iter().copied().filter(|m| matches!(m, Member::ZooKeeper(_))).collect();
    if !zookeepers.is_empty() {
        progress.step(&format!("starting {}", list(&zookeepers)));
        for m in &zookeepers {
            started.push((*m, process::spawn(layout, java, dist, *m)?));
        }
        wait_zookeeper(layout, started, deadline, progress)?;
    }
    let nodes: Vec<u32> = to_start
        .iter()
        .filter_map(|m| match m {
            Member::Node(n) => Some(*n),
            Member::ZooKeeper(_) => None,
        })
        .collect();
    if !nodes.is_empty() {
        progress
            .step(&format!("starting {}", list(&nodes.iter().map(|n| Member::Node(*n)).collect::<Vec<_>>())));
        for n in &nodes {
            started.push((Member::Node(*n), process::spawn(layout, java, dist, Member::Node(*n))?));
        }
    }
    let all: Vec<u32> = layout.nodes().collect();
    wait_registered(layout, started, &all, deadline.saturating_duration_since(Instant::now()), progress)
}

/// Fails as soon as a child we started has exited.
fn check_children(layout: &Layout, started: &mut [(Member, Child)]) -> Result<(), ClusterError> {
    for (member, child) in started.iter_mut() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ClusterError::StartFailed {
                member: *member,
                reason: format!("its JVM exited ({status})"),
                log_tail: process::log_tail(layout, *member, 25),
            });
        }
    }
    Ok(())
}

fn wait_zookeeper(
    layout: &Layout,
    started: &mut [(Member, Child)],
    deadline: Instant,
    progress: &Progress,
) -> Result<(), ClusterError> {
    loop {
        check_children(layout, started)?;
        let up: Vec<u32> =
            layout.nodes().filter(|n| zookeeper_serving(layout.coordinator_port(*n))).collect();
        progress.tick(&format!("ZooKeeper ensemble: {}/{} serving", up.len(), layout.manifest.nodes));
        if up.len() == layout.manifest.nodes as usize {
            return Ok(());
        }
        if Instant::now() > deadline {
            let member = layout
                .nodes()
                .find(|n| !up.contains(n))
                .map(Member::ZooKeeper)
                .unwrap_or(Member::ZooKeeper(1));
            return Err(ClusterError::StartFailed {
                member,
                reason: "it did not join a serving ensemble in time".into(),
                log_tail: process::log_tail(layout, member, 25),
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// True once a ZooKeeper server answers `srvr` as part of a serving ensemble (leader or follower).
fn zookeeper_serving(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) =
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"srvr").is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.contains("Mode: leader") || reply.contains("Mode: follower")
}

/// Waits until every node in `nodes` serves requests and lists itself in the metadata it returns.
/// Each node is asked on its own port: a node killed a moment ago stays in the others' metadata
/// until its session expires, but it cannot answer for itself. Fails early if a JVM we started exits.
fn wait_registered(
    layout: &Layout,
    started: &mut [(Member, Child)],
    nodes: &[u32],
    timeout: Duration,
    progress: &Progress,
) -> Result<(), ClusterError> {
    let deadline = Instant::now() + timeout;
    let mut ready: Vec<u32> = Vec::new();
    loop {
        check_children(layout, started)?;
        for n in nodes.iter().copied().filter(|n| !ready.contains(n)).collect::<Vec<_>>() {
            if node_serving(layout, n) {
                ready.push(n);
            }
        }
        progress.tick(&format!("brokers serving and in metadata: {}/{}", ready.len(), nodes.len()));
        let missing: Vec<u32> = nodes.iter().copied().filter(|n| !ready.contains(n)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let member = Member::Node(missing[0]);
            let alive = process::running_pid(layout, member).is_some();
            return Err(ClusterError::StartFailed {
                member,
                reason: format!(
                    "it did not serve metadata listing itself within {} (its process is {})",
                    humantime::format_duration(timeout),
                    if alive { "running" } else { "not running" }
                ),
                log_tail: process::log_tail(layout, member, 25),
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// True if node `n` answers a metadata request on its own port and lists itself.
fn node_serving(layout: &Layout, n: u32) -> bool {
    let own = format!("127.0.0.1:{}", layout.client_port(n));
    process::port_open(layout.client_port(n))
        && admin::broker_ids(&own, Duration::from_secs(2)).is_ok_and(|ids| ids.contains(&(n as i32)))
}

fn require(dir: &Path) -> Result<Layout, ClusterError> {
    Layout::load(dir)?.ok_or_else(|| ClusterError::NoCluster { dir: dir.to_path_buf() })
}

/// One member as `status` sees it.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub member: Member,
    pub ports: Vec<(u16, &'static str)>,
    pub pid: Option<i32>,
    /// Its first port accepts connections.
    pub listening: bool,
    /// For nodes: listed in the cluster metadata.
    pub registered: bool,
}

impl MemberStatus {
    pub fn up(&self) -> bool {
        self.pid.is_some()
            && self.listening
            && (self.registered || matches!(self.member, Member::ZooKeeper(_)))
    }
}

#[derive(Debug, Clone)]
pub struct Status {
    pub layout: Layout,
    pub members: Vec<MemberStatus>,
    /// The active controller: the KRaft quorum leader, or in ZooKeeper mode the controller broker.
    pub controller: Option<u32>,
}

impl Status {
    pub fn healthy(&self) -> bool {
        self.members.iter().all(MemberStatus::up) && self.controller.is_some()
    }
}

/// Looks at every member: process, port, metadata, and asks the quorum for the active controller.
pub fn status(dir: &Path) -> Result<Status, ClusterError> {
    let layout = require(dir)?;
    let registered = admin::broker_ids(&layout.bootstrap(), Duration::from_secs(3)).unwrap_or_default();
    let members: Vec<MemberStatus> = layout
        .members()
        .into_iter()
        .map(|member| {
            let ports = layout.ports(member);
            MemberStatus {
                member,
                pid: process::running_pid(&layout, member),
                listening: process::port_open(ports[0].0),
                registered: matches!(member, Member::Node(n) if registered.contains(&(n as i32))),
                ports,
            }
        })
        .collect();
    let controller = if members.iter().any(|m| m.pid.is_some()) { active_controller(&layout) } else { None };
    Ok(Status { layout, members, controller })
}

/// Asks Kafka's own tools which node leads: `MetadataQuorumCommand` (KRaft) or the `/controller`
/// znode (ZooKeeper mode). A JVM start costs about a second; `status` is not on any hot path.
fn active_controller(layout: &Layout) -> Option<u32> {
    let java = java::find().ok()?;
    let mut cmd = Command::new(&java.path);
    cmd.arg("-cp").arg(format!("{}/*", layout.manifest.libs.display()));
    match layout.manifest.mode {
        Mode::Kraft => {
            cmd.args([
                "-Dlog4j2.level=error",
                "org.apache.kafka.tools.MetadataQuorumCommand",
                "--bootstrap-controller",
            ])
            .arg(layout.controllers())
            .args(["describe", "--status"]);
        }
        Mode::Zookeeper => {
            cmd.args([
                "-Dlog4j.configuration=file:/dev/null",
                "org.apache.zookeeper.ZooKeeperMain",
                "-server",
            ])
            .arg(layout.controllers())
            .args(["get", "/controller"]);
        }
    }
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    parse_controller(&String::from_utf8_lossy(&out.stdout))
}

/// `LeaderId:  3` (MetadataQuorumCommand) or `{"version":2,"brokerid":1,...}` (the znode).
fn parse_controller(text: &str) -> Option<u32> {
    if let Some(line) = text.lines().find(|l| l.trim_start().starts_with("LeaderId:")) {
        return line.split(':').nth(1)?.trim().parse().ok().filter(|id: &u32| *id > 0);
    }
    let at = text.find("\"brokerid\":")? + "\"brokerid\":".len();
    let digits: String = text[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Stops every member: SIGTERM, up to `grace` to exit, then SIGKILL. In ZooKeeper mode brokers go
/// first, since their controlled shutdown needs ZooKeeper. Returns the members that needed SIGKILL.
pub fn down(dir: &Path, grace: Duration) -> Result<Vec<(Member, i32)>, ClusterError> {
    let layout = require(dir)?;
    let nodes: Vec<Member> = layout.nodes().map(Member::Node).collect();
    let mut killed = process::stop_all(&layout, &nodes, grace);
    let zookeepers: Vec<Member> =
        layout.members().into_iter().filter(|m| matches!(m, Member::ZooKeeper(_))).collect();
    killed.extend(process::stop_all(&layout, &zookeepers, grace));
    Ok(killed)
}

fn member_of(layout: &Layout, member: Member) -> Result<Member, ClusterError> {
    if layout.members().contains(&member) {
        Ok(member)
    } else {
        Err(ClusterError::UnknownMember {
            member: member.to_string(),
            dir: layout.dir.clone(),
            nodes: layout.manifest.nodes,
        })
    }
}

/// Stops one member hard (SIGKILL), as a crash would. Returns its pid, or `None` if it was not running.
pub fn kill(dir: &Path, member: Member) -> Result<Option<i32>, ClusterError> {
    let layout = require(dir)?;
    let member = member_of(&layout, member)?;
    let Some(pid) = process::running_pid(&layout, member) else {
        return Ok(None);
    };
    process::signal(pid, Signal::SIGKILL);
    // Gone means: no process, and its ports released (the kernel closes a killed JVM's sockets a
    // moment after the process stops being visible), so that `start` can follow at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ports: Vec<u16> = layout.ports(member).iter().map(|p| p.0).collect();
    while (process::running_pid(&layout, member).is_some() || !ports.iter().all(|p| process::port_free(*p)))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Some(pid))
}

/// Starts one member again and waits until it is back (in the metadata, for a node).
/// Returns false if it was already running.
pub fn start(
    dir: &Path,
    member: Member,
    timeout: Duration,
    progress: &Progress,
) -> Result<bool, ClusterError> {
    let layout = require(dir)?;
    let member = member_of(&layout, member)?;
    if process::running_pid(&layout, member).is_some() {
        return Ok(false);
    }
    for (port, what) in layout.ports(member) {
        // A member killed a moment ago may still be releasing its sockets.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !process::port_free(port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !process::port_free(port) {
            return Err(ClusterError::PortInUse { port, what, member });
        }
    }
    let java = java::find()?;
    let dist = Distribution {
        libs: layout.manifest.libs.clone(),
        version: layout.manifest.kafka_version.clone(),
        origin: "cluster.json",
    };
    let mut started = vec![(member, process::spawn(&layout, &java, &dist, member)?)];
    let result = match member {
        Member::Node(n) => wait_registered(&layout, &mut started, &[n], timeout, progress),
        Member::ZooKeeper(n) => {
            let deadline = Instant::now() + timeout;
            loop {
                if let Err(e) = check_children(&layout, &mut started) {
                    break Err(e);
                }
                if zookeeper_serving(layout.coordinator_port(n)) {
                    break Ok(());
                }
                if Instant::now() > deadline {
                    break Err(ClusterError::StartFailed {
                        member,
                        reason: "it did not rejoin the ensemble in time".into(),
                        log_tail: process::log_tail(&layout, member, 25),
                    });
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    };
    if let Err(e) = result {
        process::stop_all(&layout, &[member], Duration::from_secs(10));
        return Err(e);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_is_read_from_either_tool() {
        let kraft = "ClusterId:              abc\nLeaderId:               3\nLeaderEpoch:            1\n";
        assert_eq!(parse_controller(kraft), Some(3));
        let zk =
            "{\"version\":2,\"brokerid\":2,\"timestamp\":\"1700000000000\",\"kraftControllerEpoch\":-1}\n";
        assert_eq!(parse_controller(zk), Some(2));
        assert_eq!(parse_controller("LeaderId: -1\n"), None);
        assert_eq!(parse_controller("Connection refused"), None);
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(!id.starts_with('-'));
        assert_ne!(id, new_cluster_id());
    }
}
