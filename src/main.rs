//! The `macklake` command line. Parsing and printing only; the work is in the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use macklake::cluster::{self, Member, Mode, Progress, UpOptions, UpOutcome};

#[derive(Parser)]
#[command(
    name = "macklake",
    version,
    about = "Moves lines between local files and Apache Kafka",
    long_about = "Moves lines between local files and Apache Kafka, Kafka Connect style: file-source \
                  connectors follow log files (globs, growth, rotation) into topics, file-sink connectors \
                  archive topics into rotating local files, committing offsets only after the data is on \
                  disk. Connectors are drop-in files; `macklake cluster` deploys a local Kafka cluster."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: every connector file in the config's connectors_dir, until SIGTERM/SIGINT.
    Run {
        /// The daemon config (example: config/macklake.toml).
        #[arg(long, env = "MACKLAKE_CONFIG")]
        config: PathBuf,
    },
    /// Validate the daemon config and every connector file without touching Kafka (exit 1 if any is invalid).
    Check {
        #[arg(long, env = "MACKLAKE_CONFIG")]
        config: PathBuf,
        /// With --sample: the file-source connector whose rules to try.
        #[arg(long, requires = "sample")]
        connector: Option<String>,
        /// Print what this file would become under the connector's rules (multi-line grouping,
        /// include/exclude filters, long lines): its records with their offsets, what was
        /// dropped and by which filter, where records were cut. Reads nothing from Kafka.
        #[arg(long, requires = "connector")]
        sample: Option<PathBuf>,
    },
    /// Show what the running daemon is doing: connectors, state, files and positions, partitions,
    /// offsets and lag (asked over its HTTP listener).
    Status {
        #[arg(long, env = "MACKLAKE_CONFIG")]
        config: PathBuf,
        /// The daemon's HTTP address, if not the config's `[http] listen` (e.g. port 0 there).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
    /// Take over a Kafka Connect standalone worker's FileStreamSource positions (its
    /// offset.storage.file.filename) into the checkpoints of the file-sources of the same name.
    /// Run it while the daemon is stopped.
    ImportOffsets {
        #[arg(long, env = "MACKLAKE_CONFIG")]
        config: PathBuf,
        /// Only this connector's positions.
        #[arg(long)]
        connector: Option<String>,
        /// Replace positions even if the source already has checkpoints.
        #[arg(long)]
        force: bool,
        /// The Connect worker's offsets file.
        offsets_file: PathBuf,
    },
    /// Print the configuration reference (Markdown): every key of the daemon config and of each
    /// connector kind with its type and default, and how Kafka Connect files map (docs/configuration.md).
    ConfigReference,
    /// Deploy and operate a local, replicated Apache Kafka cluster (for the demo, tests, development).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Print a shell completion script, generated from these very options
    /// (bash: `macklake completions bash > /etc/bash_completion.d/macklake`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout (`macklake man | man -l -`), or with --out-dir write
    /// macklake.1 and one page per subcommand (macklake-run.1, ...) into a directory.
    Man {
        /// Write every page into this directory instead of printing macklake.1.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct DirArg {
    /// The cluster directory: its config, data, logs and pid files.
    #[arg(long, env = "MACKLAKE_CLUSTER_DIR", default_value = ".macklake/cluster")]
    dir: PathBuf,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Start every node that is not running and wait until all brokers are in the metadata.
    Up {
        #[command(flatten)]
        dir: DirArg,
        /// Number of Kafka nodes [default: 3, or what the existing cluster has].
        #[arg(long)]
        nodes: Option<u32>,
        /// First client port; node n listens on P+n-1, its controller on P+100+n-1 [default: 9092].
        #[arg(long)]
        base_port: Option<u16>,
        /// kraft (Kafka 4, combined broker+controller nodes) or zookeeper (Kafka 3.9 + ensemble).
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        /// An unpacked Kafka distribution (or package-manager install) to take the jars from.
        #[arg(long, env = "KAFKA_HOME")]
        kafka_home: Option<PathBuf>,
        /// JVM heap per node.
        #[arg(long, default_value = "512m")]
        heap: String,
        /// How long to wait for the cluster to be ready.
        #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Also give every node a SASL_SSL client listener (SCRAM-SHA-512 over TLS) on P+n-1
        /// (KRaft only). A CA and a broker certificate for 127.0.0.1/localhost are made with openssl
        /// in DIR/tls; clients trust DIR/tls/ca.crt (ssl.ca.location). Inter-broker and controller
        /// traffic stays PLAINTEXT.
        #[arg(long)]
        sasl_ssl_port: Option<u16>,
        /// A SCRAM-SHA-512 user NAME=PASSWORD, created when the storage is first formatted
        /// (repeatable; for local test clusters: the password is on the command line).
        #[arg(long = "scram-user", value_name = "NAME=PASSWORD")]
        scram_users: Vec<String>,
    },
    /// Show each node: ports, pid, alive, in metadata, and the active controller. Exit 0 only if all are up.
    Status {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Stop every node (SIGTERM, wait, then SIGKILL).
    Down {
        #[command(flatten)]
        dir: DirArg,
        /// How long nodes get to shut down cleanly before SIGKILL.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Stop one node hard (SIGKILL), for fault tests. NODE: 2, node-2, or zk-2 in ZooKeeper mode.
    Kill {
        node: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Start one stopped node again and wait until it is back.
    Start {
        node: String,
        #[command(flatten)]
        dir: DirArg,
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Print the bootstrap servers (for scripts: `export MACKLAKE_BOOTSTRAP=$(macklake cluster bootstrap)`).
    Bootstrap {
        #[command(flatten)]
        dir: DirArg,
    },
}

/// The git commit the binary was built from (build.rs; "unknown" outside a git checkout).
const GIT_COMMIT: &str = env!("MACKLAKE_GIT_COMMIT");

/// What `--version` and the man page say: our version, the commit, and the librdkafka actually
/// linked in (a bug report needs all three; librdkafka's is only known at run time).
fn version_text() -> String {
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    format!("{} (commit {GIT_COMMIT}, librdkafka {librdkafka})", env!("CARGO_PKG_VERSION"))
}

/// The clap definition with the run-time version text; the parser, the man page and the
/// completions all come from it, so they cannot drift apart.
fn cli_command() -> clap::Command {
    // clap keeps versions as `&'static str` (without its "string" feature); this runs once per
    // process, so leaking the one short string is the simple way to give it one.
    let version: &'static str = Box::leak(version_text().into_boxed_str());
    Cli::command()
        .version(version)
        .long_version(version)
        .long_about(
            "Moves lines between local files and Apache Kafka, Kafka Connect style: file-source connectors \
             follow log files (globs, growth, rotation) into topics, file-sink connectors archive topics \
             into rotating local files, committing offsets only after the data is on disk. Connectors \
             are drop-in files; `macklake cluster` deploys a local Kafka cluster.",
        )
        .after_long_help(
        "Files: /etc/macklake/macklake.toml (daemon config), /etc/macklake/connectors.d/ (connector files), \
         /var/lib/macklake (checkpoints, commit caches, archives). See `macklake man`.",
    )
}

fn main() -> ExitCode {
    macklake::failpoints::setup();
    let matches = cli_command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Cluster { command } => run_cluster(command),
        Command::ConfigReference => {
            let mut out = std::io::stdout().lock();
            out.write_all(macklake::config::reference::markdown().as_bytes())
                .and_then(|()| out.flush())
                .context("writing the configuration reference to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(shell, &mut cli_command(), "macklake", &mut out);
            out.flush().context("writing the completion script to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir: None } => {
            let mut out = std::io::stdout().lock();
            render_man(cli_command(), &mut out)
                .and_then(|()| out.flush())
                .context("writing the manual page to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out_dir: Some(dir) } => {
            for path in write_man_pages(&dir)? {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let config = macklake::config::DaemonConfig::load(&config)?;
            macklake::daemon::init_logging(&config);
            macklake::daemon::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config, addr } => {
            let config = macklake::config::DaemonConfig::load(&config)?;
            let Some(addr) = addr.or(config.http_listen) else {
                bail!("{}: [http] is disabled, so the daemon cannot be asked", config.file.display());
            };
            let (code, body) = macklake::http::client::get(addr, "/macklake/status")
                .with_context(|| format!("asking the daemon at {addr} (is it running?)"))?;
            if code != 200 {
                bail!("the daemon at {addr} answered {code}: {body}");
            }
            let status: serde_json::Value = serde_json::from_str(&body).context("the daemon's answer")?;
            print_daemon_status(&status);
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportOffsets { config, connector, force, offsets_file } => {
            let config = macklake::config::DaemonConfig::load(&config)?;
            let connectors: Vec<_> = macklake::config::connector::load_dir(
                &config.connectors_dir,
                macklake::config::connector::LoadContext::of(&config),
            )?
            .into_iter()
            .filter_map(Result::ok)
            .collect();
            // The daemon must not run meanwhile: it would overwrite the imported checkpoints.
            let _state_lock =
                macklake::daemon::state_lock::acquire(&config.state_dir, "macklake import-offsets")?;
            let report = macklake::source::connect_offsets::import(
                &offsets_file,
                &connectors,
                &config.state_dir,
                connector.as_deref(),
                force,
            )?;
            for line in &report.applied {
                println!("imported {line}");
            }
            for line in &report.skipped {
                println!("skipped  {line}");
            }
            Ok(if report.applied.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Check { config, connector: Some(name), sample: Some(file) } => {
            let source = match macklake::daemon::find_source(&config, &name) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let s = macklake::source::sample::run(&source, &file, &mut out)
                .with_context(|| format!("sampling {}", file.display()))?;
            use std::io::Write as _;
            writeln!(
                out,
                "{}: {} records ({} of several lines, {} cut at max_lines/max_bytes); dropped: {} matching no include_lines, {} matching exclude_lines; {} bytes dropped by the long-line policy",
                file.display(),
                s.records,
                s.multiline,
                s.cuts,
                s.not_included,
                s.excluded,
                s.dropped_bytes
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, .. } => {
            let problems = macklake::daemon::check(&config);
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                println!("{}: valid, and every connector file with it", config.display());
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// Sections clap does not know about, appended to the top-level page (roff).
const MAN_FILES: &str = r#".SH FILES
.TP
\fI/etc/macklake/macklake.toml\fR
The daemon config (\fBmacklake run \-\-config\fR). Relative paths in it are taken relative to it.
.TP
\fI/etc/macklake/connectors.d/\fR
Every *.toml file in it is one connector (file\-source or file\-sink), and so is every Kafka
Connect .properties or .json connector file. Changes are applied without a restart (or on SIGHUP).
.TP
\fI/var/lib/macklake/\fR
Source checkpoints and sink commit caches (state_dir), and usually the sinks' archives.
.SH ENVIRONMENT
.TP
\fBMACKLAKE_CONFIG\fR
The daemon config, instead of \-\-config.
.TP
\fBMACKLAKE_LOG\fR
A tracing filter that overrides [log] level (e.g. info,macklake=debug).
.TP
\fBMACKLAKE_CLUSTER_DIR\fR
The directory of \fBmacklake cluster\fR.
.SH SIGNALS
SIGTERM and SIGINT drain every connector and exit 0; SIGHUP reloads the connector files.
.SH SEE ALSO
\fBsystemctl\fR(1), \fBsystemd.service\fR(5); the README in the source tree.
"#;

/// The top-level page: clap_mangen's sections, then FILES, ENVIRONMENT, SIGNALS and SEE ALSO (in
/// place of the `--help` footer, which clap_mangen would print under a heading "EXTRA").
fn render_man(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let cmd = cmd.disable_help_subcommand(true).after_long_help(None::<&str>);
    clap_mangen::Man::new(cmd).render(out)?;
    out.write_all(MAN_FILES.as_bytes())
}

/// macklake.1 and a page per subcommand (macklake-run.1, macklake-cluster-up.1, ...) into `dir`.
fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cli_command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    let top = dir.join("macklake.1");
    let mut file = std::fs::File::create(&top).with_context(|| format!("creating {}", top.display()))?;
    render_man(cmd.clone(), &mut file)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", top.display()))?;
    written.push(top);
    // Subcommands get clap_mangen's plain pages; their names come from the built command
    // (macklake-cluster-up), so each page says how it is invoked.
    fn subcommand_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            subcommand_pages(sub, dir, written)?;
            let page = clap_mangen::Man::new(sub.clone());
            let path = page
                .generate_to(dir)
                .with_context(|| format!("writing {}", dir.join(page.get_filename()).display()))?;
            written.push(path);
        }
        Ok(())
    }
    subcommand_pages(&cmd, dir, &mut written)?;
    Ok(written)
}

fn print_daemon_status(status: &serde_json::Value) {
    let empty = Vec::new();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!("{:<32} {:<7} {:<8} DETAIL", "CONNECTOR", "TYPE", "STATE");
    for c in status["connectors"].as_array().unwrap_or(&empty) {
        println!(
            "{:<32} {:<7} {:<8} {}",
            text(&c["name"]),
            text(&c["type"]),
            text(&c["state"]),
            text(&c["file"])
        );
        if let Some(e) = c.get("error") {
            println!("{:<50}error: {}", "", text(e));
        }
        for f in c["files"].as_array().unwrap_or(&empty) {
            println!("{:<50}{}  @ {}", "", text(&f["path"]), text(&f["position"]));
        }
        for p in c["partitions"].as_array().unwrap_or(&empty) {
            println!(
                "{:<50}{}-{}  committed {}  lag {}",
                "",
                text(&p["topic"]),
                text(&p["partition"]),
                text(&p["committed"]),
                text(&p["lag"])
            );
        }
    }
    if let Some(rejected) = status["rejected_files"].as_object() {
        for (file, error) in rejected {
            println!("rejected {file}: {}", text(error));
        }
    }
}

fn parse_member(text: &str) -> Result<Member> {
    match Member::parse(text) {
        Some(m) => Ok(m),
        None => bail!("{text:?} is not a node: give its number (2), node-2, or zk-2 for a ZooKeeper server"),
    }
}

fn run_cluster(command: ClusterCommand) -> Result<ExitCode> {
    match command {
        ClusterCommand::Up {
            dir,
            nodes,
            base_port,
            mode,
            kafka_home,
            heap,
            timeout,
            sasl_ssl_port,
            scram_users,
        } => {
            let scram_users = scram_users
                .iter()
                .map(|u| match u.split_once('=') {
                    Some((name, password)) => Ok((name.to_string(), password.to_string())),
                    None => bail!("--scram-user must be NAME=PASSWORD"),
                })
                .collect::<Result<Vec<_>>>()?;
            let opts = UpOptions {
                dir: dir.dir,
                nodes,
                base_port,
                mode,
                kafka_home,
                heap,
                timeout,
                sasl_ssl_port,
                scram_users,
            };
            let started = std::time::Instant::now();
            let progress = Progress::new();
            let (layout, outcome) = cluster::up(&opts, &progress)?;
            progress.finish();
            let m = &layout.manifest;
            match outcome {
                UpOutcome::AlreadyRunning => println!(
                    "the {}-node {} cluster in {} is already running (Kafka {})",
                    m.nodes,
                    m.mode.name(),
                    layout.dir.display(),
                    m.kafka_version
                ),
                UpOutcome::Started => println!(
                    "{}-node {} cluster up in {:.1}s (Kafka {}, cluster id {}, data in {})",
                    m.nodes,
                    m.mode.name(),
                    started.elapsed().as_secs_f64(),
                    m.kafka_version,
                    m.cluster_id,
                    layout.dir.display()
                ),
            }
            println!("bootstrap servers: {}", layout.bootstrap());
            if let Some(secured) = layout.sasl_ssl_bootstrap() {
                println!(
                    "SASL_SSL (SCRAM-SHA-512) bootstrap servers: {secured}, CA: {}",
                    layout.tls_dir().join(cluster::layout::CA_CERT).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Status { dir } => {
            let status = cluster::status(&dir.dir)?;
            print_status(&status);
            Ok(if status.healthy() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        ClusterCommand::Down { dir, timeout } => {
            let killed = cluster::down(&dir.dir, timeout)?;
            for (member, pid) in &killed {
                println!(
                    "{member} (pid {pid}) did not stop within {}; killed",
                    humantime::format_duration(timeout)
                );
            }
            println!("cluster in {} is down", dir.dir.display());
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Kill { node, dir } => {
            let member = parse_member(&node)?;
            match cluster::kill(&dir.dir, member)? {
                Some(pid) => println!("killed {member} (pid {pid})"),
                None => println!("{member} was not running"),
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Start { node, dir, timeout } => {
            let member = parse_member(&node)?;
            let progress = Progress::new();
            let started = cluster::start(&dir.dir, member, timeout, &progress)
                .with_context(|| format!("starting {member}"))?;
            progress.finish();
            println!("{member} {}", if started { "is back" } else { "was already running" });
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Bootstrap { dir } => {
            let layout = cluster::Layout::load(&dir.dir)?
                .with_context(|| format!("no cluster has been set up in {}", dir.dir.display()))?;
            println!("{}", layout.bootstrap());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_status(status: &cluster::Status) {
    let l = &status.layout;
    let m = &l.manifest;
    println!(
        "{} cluster in {} (Kafka {}, cluster id {})",
        m.mode.name(),
        l.dir.display(),
        m.kafka_version,
        m.cluster_id
    );
    println!("{:<12} {:<32} {:>8}  {:<5}  {:<8}", "MEMBER", "PORTS", "PID", "ALIVE", "METADATA");
    for s in &status.members {
        let ports = s.ports.iter().map(|(p, what)| format!("{p} {what}")).collect::<Vec<_>>().join(", ");
        let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let alive = if s.pid.is_some() && s.listening { "yes" } else { "no" };
        let metadata = match s.member {
            Member::Node(_) if s.registered => "yes",
            Member::Node(_) => "no",
            Member::ZooKeeper(_) => "-",
        };
        println!("{:<12} {:<32} {:>8}  {:<5}  {:<8}", s.member.to_string(), ports, pid, alive, metadata);
    }
    match status.controller {
        Some(id) => println!("active controller: node {id}"),
        None => println!("active controller: none answered"),
    }
    println!("bootstrap servers: {}", l.bootstrap());
    if status.healthy() {
        println!("all {} members up", status.members.len());
    } else {
        let down = status.members.iter().filter(|s| !s.up()).count();
        println!("{down} of {} members down", status.members.len());
    }
}
