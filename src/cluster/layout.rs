//! Where each node of a local cluster lives: ports, directories and rendered config files.
//!
//! Port plan for base port P and N nodes (node n counts from 1):
//! - client (PLAINTEXT) listeners: P .. P+N-1
//! - KRaft controller listeners, or ZooKeeper client ports: P+100 ..
//! - ZooKeeper peer and leader-election ports: P+200 .., P+300 ..
//! - optional SASL_SSL client listeners (KRaft only): S .. S+N-1, S chosen with `--sasl-ssl-port`
//!
//! so a second cluster runs beside the first with a base port at least 400 away.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ClusterError, io_err};

const KRAFT_SERVER: &str = include_str!("../../config/kafka/kraft/server.properties");
const ZK_BROKER: &str = include_str!("../../config/kafka/zookeeper/server.properties");
const ZK_NODE: &str = include_str!("../../config/kafka/zookeeper/zookeeper.properties");
const LOG4J2: &str = include_str!("../../config/kafka/log4j2.properties");
const LOG4J1: &str = include_str!("../../config/kafka/log4j.properties");

/// How the brokers are coordinated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Kafka 4: every node is a combined broker + controller (KRaft quorum).
    Kraft,
    /// Kafka 3.9: a ZooKeeper ensemble coordinates the brokers (the seed course's layout).
    Zookeeper,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Kraft => "KRaft",
            Mode::Zookeeper => "ZooKeeper",
        }
    }
}

/// One JVM of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Member {
    /// Kafka node n (a broker; in KRaft mode also a controller).
    Node(u32),
    /// ZooKeeper server n (ZooKeeper mode only).
    ZooKeeper(u32),
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::Node(n) => write!(f, "node {n}"),
            Member::ZooKeeper(n) => write!(f, "zookeeper {n}"),
        }
    }
}

impl Member {
    /// Parses the NODE argument of `cluster kill`/`start`: `2`, `node-2`, `zk-2`, `zookeeper-2`.
    pub fn parse(text: &str) -> Option<Member> {
        let t = text.trim().to_ascii_lowercase();
        for prefix in ["zookeeper-", "zookeeper", "zk-", "zk"] {
            if let Some(rest) = t.strip_prefix(prefix) {
                return rest.parse().ok().map(Member::ZooKeeper);
            }
        }
        let t = t.strip_prefix("node-").or_else(|| t.strip_prefix("node")).unwrap_or(&t);
        t.parse().ok().map(Member::Node)
    }
}

/// What `cluster up` decided once, kept in `DIR/cluster.json` so that later commands need no flags.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub mode: Mode,
    pub nodes: u32,
    pub base_port: u16,
    pub kafka_version: String,
    pub cluster_id: String,
    pub libs: PathBuf,
    pub heap: String,
    /// First port of the SASL_SSL (SCRAM-SHA-512) listeners, when the cluster has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_ssl_port: Option<u16>,
}

/// The certificates of a cluster with SASL_SSL listeners (made by `cluster up`, under `DIR/tls`).
pub const TLS_DIR: &str = "tls";
/// Clients trust this CA (`ssl.ca.location`).
pub const CA_CERT: &str = "ca.crt";
/// The brokers' PEM keystore: private key and certificate chain in one file.
pub const BROKER_PEM: &str = "broker.pem";

/// The cluster directory and its plan.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Layout {
    pub fn manifest_path(dir: &Path) -> PathBuf {
        dir.join("cluster.json")
    }

    /// Reads `DIR/cluster.json`; `None` when no cluster was ever set up there.
    pub fn load(dir: &Path) -> Result<Option<Layout>, ClusterError> {
        let dir = &absolute(dir)?;
        let path = Self::manifest_path(dir);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        let manifest = serde_json::from_str(&text)
            .map_err(|e| ClusterError::BadManifest { path: path.clone(), cause: e.to_string() })?;
        Ok(Some(Layout { dir: dir.to_path_buf(), manifest }))
    }

    pub fn save(&self) -> Result<(), ClusterError> {
        let path = Self::manifest_path(&self.dir);
        let text = serde_json::to_string_pretty(&self.manifest).expect("a manifest always serializes");
        fs::write(&path, text + "\n").map_err(io_err(format!("writing {}", path.display())))
    }

    pub fn nodes(&self) -> impl Iterator<Item = u32> {
        1..=self.manifest.nodes
    }

    /// Every JVM, in start order (ZooKeeper first).
    pub fn members(&self) -> Vec<Member> {
        let mut members = Vec::new();
        if self.manifest.mode == Mode::Zookeeper {
            members.extend(self.nodes().map(Member::ZooKeeper));
        }
        members.extend(self.nodes().map(Member::Node));
        members
    }

    fn port(&self, offset: u16, n: u32) -> u16 {
        self.manifest.base_port + offset + (n as u16 - 1)
    }

    pub fn client_port(&self, n: u32) -> u16 {
        self.port(0, n)
    }

    /// SASL_SSL listener of node n, if the cluster has them.
    pub fn sasl_ssl_port(&self, n: u32) -> Option<u16> {
        self.manifest.sasl_ssl_port.map(|p| p + (n as u16 - 1))
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join(TLS_DIR)
    }

    /// The SASL_SSL bootstrap servers, if the cluster has such listeners.
    pub fn sasl_ssl_bootstrap(&self) -> Option<String> {
        self.manifest.sasl_ssl_port?;
        Some(
            self.nodes()
                .filter_map(|n| self.sasl_ssl_port(n))
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    /// KRaft controller port, or ZooKeeper client port.
    pub fn coordinator_port(&self, n: u32) -> u16 {
        self.port(100, n)
    }

    /// The ports a member listens on, with what each is for.
    pub fn ports(&self, member: Member) -> Vec<(u16, &'static str)> {
        match (self.manifest.mode, member) {
            (Mode::Kraft, Member::Node(n)) => {
                let mut ports =
                    vec![(self.client_port(n), "client"), (self.coordinator_port(n), "controller")];
                ports.extend(self.sasl_ssl_port(n).map(|p| (p, "SASL_SSL client")));
                ports
            }
            (_, Member::Node(n)) => vec![(self.client_port(n), "client")],
            (_, Member::ZooKeeper(n)) => vec![
                (self.coordinator_port(n), "ZooKeeper client"),
                (self.port(200, n), "ZooKeeper peer"),
                (self.port(300, n), "ZooKeeper election"),
            ],
        }
    }

    pub fn bootstrap(&self) -> String {
        self.nodes().map(|n| format!("127.0.0.1:{}", self.client_port(n))).collect::<Vec<_>>().join(",")
    }

    pub fn controllers(&self) -> String {
        self.nodes().map(|n| format!("127.0.0.1:{}", self.coordinator_port(n))).collect::<Vec<_>>().join(",")
    }

    pub fn member_dir(&self, member: Member) -> PathBuf {
        match member {
            Member::Node(n) => self.dir.join(format!("node-{n}")),
            Member::ZooKeeper(n) => self.dir.join(format!("zk-{n}")),
        }
    }

    pub fn data_dir(&self, member: Member) -> PathBuf {
        self.member_dir(member).join("data")
    }

    pub fn log_dir(&self, member: Member) -> PathBuf {
        self.member_dir(member).join("logs")
    }

    pub fn pid_file(&self, member: Member) -> PathBuf {
        self.member_dir(member).join("pid")
    }

    /// The config file passed to the JVM; its path also identifies the process (see `process`).
    pub fn config_file(&self, member: Member) -> PathBuf {
        match member {
            Member::Node(_) => self.member_dir(member).join("server.properties"),
            Member::ZooKeeper(_) => self.member_dir(member).join("zookeeper.properties"),
        }
    }

    pub fn logging_config(&self) -> PathBuf {
        match self.manifest.mode {
            Mode::Kraft => self.dir.join("log4j2.properties"),
            Mode::Zookeeper => self.dir.join("log4j.properties"),
        }
    }

    /// JVM system properties that point logging at a member's log directory.
    pub fn logging_args(&self, member: Member) -> Vec<String> {
        let config = self.logging_config();
        let mut args = vec![format!("-Dkafka.logs.dir={}", self.log_dir(member).display())];
        match self.manifest.mode {
            Mode::Kraft => args.push(format!("-Dlog4j2.configurationFile={}", config.display())),
            Mode::Zookeeper => args.push(format!("-Dlog4j.configuration=file:{}", config.display())),
        }
        args
    }

    /// The main class and its arguments.
    pub fn main(&self, member: Member) -> (&'static str, Vec<String>) {
        let config = self.config_file(member).display().to_string();
        match member {
            Member::Node(_) => ("kafka.Kafka", vec![config]),
            Member::ZooKeeper(_) => ("org.apache.zookeeper.server.quorum.QuorumPeerMain", vec![config]),
        }
    }

    /// Writes every member's directories and config files (idempotent; data is never touched).
    pub fn write_configs(&self) -> Result<(), ClusterError> {
        let logging = match self.manifest.mode {
            Mode::Kraft => LOG4J2,
            Mode::Zookeeper => LOG4J1,
        };
        write(&self.logging_config(), logging)?;
        for member in self.members() {
            for d in [self.data_dir(member), self.log_dir(member)] {
                fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
            }
            write(&self.config_file(member), &self.render(member)?)?;
            if let Member::ZooKeeper(n) = member {
                write(&self.data_dir(member).join("myid"), &format!("{n}\n"))?;
            }
        }
        Ok(())
    }

    fn render(&self, member: Member) -> Result<String, ClusterError> {
        let rf = self.manifest.nodes.min(3);
        let mut vars = BTreeMap::new();
        vars.insert("data_dir", self.data_dir(member).display().to_string());
        vars.insert("replication_factor", rf.to_string());
        vars.insert("min_insync_replicas", rf.saturating_sub(1).max(1).to_string());
        let template = match member {
            Member::Node(n) => {
                vars.insert("node_id", n.to_string());
                vars.insert("client_port", self.client_port(n).to_string());
                vars.insert("controller_port", self.coordinator_port(n).to_string());
                let voters = self
                    .nodes()
                    .map(|v| format!("{v}@127.0.0.1:{}", self.coordinator_port(v)))
                    .collect::<Vec<_>>()
                    .join(",");
                vars.insert("quorum_voters", voters);
                vars.insert("zookeeper_connect", self.controllers());
                self.sasl_ssl_vars(n, &mut vars);
                match self.manifest.mode {
                    Mode::Kraft => KRAFT_SERVER,
                    Mode::Zookeeper => ZK_BROKER,
                }
            }
            Member::ZooKeeper(n) => {
                vars.insert("client_port", self.coordinator_port(n).to_string());
                let servers = self
                    .nodes()
                    .map(|v| format!("server.{v}=127.0.0.1:{}:{}", self.port(200, v), self.port(300, v)))
                    .collect::<Vec<_>>()
                    .join("\n");
                vars.insert("servers", servers);
                ZK_NODE
            }
        };
        render(template, &vars).map_err(|name| ClusterError::Template { member: member.to_string(), name })
    }
}

impl Layout {
    /// The SASL_SSL listener's settings (or nothing): SCRAM-SHA-512 over TLS with a PEM keystore.
    /// Inter-broker and controller traffic stays on PLAINTEXT, so only clients are affected.
    fn sasl_ssl_vars(&self, n: u32, vars: &mut BTreeMap<&str, String>) {
        let Some(port) = self.sasl_ssl_port(n) else {
            for k in ["extra_listeners", "extra_protocols", "sasl_ssl_config"] {
                vars.insert(k, String::new());
            }
            return;
        };
        vars.insert("extra_listeners", format!(",SASL_SSL://127.0.0.1:{port}"));
        vars.insert("extra_protocols", ",SASL_SSL:SASL_SSL".to_string());
        let keystore = self.tls_dir().join(BROKER_PEM);
        vars.insert(
            "sasl_ssl_config",
            format!(
                "\n# SASL_SSL client listener (`cluster up --sasl-ssl-port`): SCRAM-SHA-512 users are created\n\
                 # when the storage is formatted; the certificate is signed by {tls}/{CA_CERT}.\n\
                 sasl.enabled.mechanisms=SCRAM-SHA-512\n\
                 listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512\n\
                 listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
                 listener.name.sasl_ssl.ssl.keystore.type=PEM\n\
                 listener.name.sasl_ssl.ssl.keystore.location={keystore}\n",
                tls = self.tls_dir().display(),
                keystore = keystore.display(),
            ),
        );
    }
}

/// Replaces `${name}` with `vars[name]`; returns the first unknown name as the error.
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| after.to_string())?;
        let name = &after[..end];
        out.push_str(vars.get(name).ok_or_else(|| name.to_string())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The JVMs run in their own directories and their command lines identify them, so every path
/// handed to them is absolute.
pub fn absolute(dir: &Path) -> Result<PathBuf, ClusterError> {
    std::path::absolute(dir).map_err(io_err(format!("resolving {}", dir.display())))
}

fn write(path: &Path, text: &str) -> Result<(), ClusterError> {
    fs::write(path, text).map_err(io_err(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(mode: Mode, base_port: u16) -> Layout {
        Layout {
            dir: PathBuf::from("/tmp/c"),
            manifest: Manifest {
                mode,
                nodes: 3,
                base_port,
                kafka_version: "x".into(),
                cluster_id: "id".into(),
                libs: PathBuf::from("/libs"),
                heap: "512m".into(),
                sasl_ssl_port: None,
            },
        }
    }

    #[test]
    fn kraft_nodes_get_distinct_ports_and_the_cluster_defaults() {
        let l = layout(Mode::Kraft, 9092);
        assert_eq!(l.bootstrap(), "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094");
        let text = l.render(Member::Node(2)).expect("renders");
        assert!(text.contains("node.id=2\n"));
        assert!(text.contains("listeners=PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9193\n"));
        assert!(
            text.contains("controller.quorum.voters=1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194\n")
        );
        for line in [
            "default.replication.factor=3",
            "min.insync.replicas=2",
            "offsets.topic.replication.factor=3",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2",
            "auto.create.topics.enable=false",
        ] {
            assert!(text.contains(&format!("{line}\n")), "missing {line}");
        }
        assert!(!text.contains("${"));
    }

    #[test]
    fn a_sasl_ssl_listener_is_added_beside_plaintext() {
        let mut l = layout(Mode::Kraft, 9092);
        l.manifest.sasl_ssl_port = Some(9392);
        let text = l.render(Member::Node(2)).expect("renders");
        assert!(text.contains(
            "listeners=PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9193,SASL_SSL://127.0.0.1:9393\n"
        ));
        assert!(text.contains("advertised.listeners=PLAINTEXT://127.0.0.1:9093,SASL_SSL://127.0.0.1:9393\n"));
        assert!(text.contains("inter.broker.listener.name=PLAINTEXT\n"));
        assert!(text.contains("listener.name.sasl_ssl.ssl.keystore.location=/tmp/c/tls/broker.pem\n"));
        assert_eq!(l.sasl_ssl_bootstrap().as_deref(), Some("127.0.0.1:9392,127.0.0.1:9393,127.0.0.1:9394"));
        assert!(l.ports(Member::Node(3)).contains(&(9394, "SASL_SSL client")));
        assert!(!text.contains("${"));
    }

    #[test]
    fn a_second_cluster_shares_no_port_with_the_first() {
        let ports =
            |l: &Layout| l.members().iter().flat_map(|m| l.ports(*m)).map(|p| p.0).collect::<Vec<_>>();
        for mode in [Mode::Kraft, Mode::Zookeeper] {
            let a = ports(&layout(mode, 9092));
            let b = ports(&layout(mode, 9500));
            assert!(a.iter().all(|p| !b.contains(p)), "{mode:?}: {a:?} vs {b:?}");
            let mut dedup = a.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), a.len(), "ports repeat within one cluster");
        }
    }

    #[test]
    fn zookeeper_mode_renders_an_ensemble() {
        let l = layout(Mode::Zookeeper, 9092);
        let zk = l.render(Member::ZooKeeper(1)).expect("renders");
        assert!(zk.contains("clientPort=9192\n"));
        assert!(zk.contains("server.3=127.0.0.1:9294:9394"));
        let broker = l.render(Member::Node(3)).expect("renders");
        assert!(broker.contains("zookeeper.connect=127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194\n"));
        assert!(broker.contains("broker.id=3\n"));
    }

    #[test]
    fn render_rejects_unknown_placeholders() {
        let vars = BTreeMap::from([("a", "1".to_string())]);
        assert_eq!(render("x=${a}", &vars).as_deref(), Ok("x=1"));
        assert_eq!(render("x=${b}", &vars), Err("b".to_string()));
    }

    #[test]
    fn node_arguments_parse() {
        assert_eq!(Member::parse("2"), Some(Member::Node(2)));
        assert_eq!(Member::parse("node-3"), Some(Member::Node(3)));
        assert_eq!(Member::parse("zk-1"), Some(Member::ZooKeeper(1)));
        assert_eq!(Member::parse("x"), None);
    }
}
