//! Where the Kafka jars come from: `--kafka-home`/`KAFKA_HOME`, else a per-user cache of the pinned
//! version, else Maven resolving the pinned POM into that cache.
//!
//! The pinned versions are written once, in the POMs under `config/kafka/`; they are compiled into
//! the binary so that `macklake cluster up` works from any directory.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::progress::Progress;
use super::{ClusterError, Mode, io_err};

const KRAFT_POM: &str = include_str!("../../config/kafka/kraft/pom.xml");
const ZOOKEEPER_POM: &str = include_str!("../../config/kafka/zookeeper/pom.xml");

/// The POM that pins a mode's Kafka line.
pub fn pom(mode: Mode) -> &'static str {
    match mode {
        Mode::Kraft => KRAFT_POM,
        Mode::Zookeeper => ZOOKEEPER_POM,
    }
}

/// The Kafka version pinned for a mode (read from its POM's `<kafka.version>`).
pub fn pinned_version(mode: Mode) -> &'static str {
    pom_property(pom(mode), "kafka.version").expect("the bundled POMs define kafka.version")
}

/// Reads `<name>value</name>` from a POM's text.
pub fn pom_property<'a>(pom: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = pom.find(&open)? + open.len();
    let end = start + pom[start..].find(&close)?;
    Some(pom[start..end].trim())
}

/// A set of Kafka jars ready to put on a JVM's classpath.
#[derive(Debug, Clone)]
pub struct Distribution {
    /// The directory holding the jars.
    pub libs: PathBuf,
    /// The Kafka version, from the `kafka_2.13-<version>.jar` found there.
    pub version: String,
    /// Where it came from, for messages: "KAFKA_HOME", "cache" or "Maven".
    pub origin: &'static str,
}

impl Distribution {
    /// The JVM classpath: every jar in `libs`.
    pub fn classpath(&self) -> String {
        format!("{}/*", self.libs.display())
    }
}

/// The cache root: `$MACKLAKE_CACHE_DIR`, else the user's cache directory + `macklake`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("MACKLAKE_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("macklake")
}

/// Finds or fetches the jars for `mode`, in the documented order.
pub fn locate(
    mode: Mode,
    kafka_home: Option<&Path>,
    progress: &Progress,
) -> Result<Distribution, ClusterError> {
    if let Some(home) = kafka_home {
        return from_home(mode, home);
    }
    let version = pinned_version(mode);
    let dir = cache_root().join(format!("kafka-{version}"));
    let libs = dir.join("libs");
    if dir.join(".complete").exists() {
        return Ok(Distribution { libs, version: version.to_string(), origin: "cache" });
    }
    resolve_with_maven(mode, &dir, progress)?;
    Ok(Distribution { libs, version: version.to_string(), origin: "Maven" })
}

/// An unpacked Kafka distribution (`libs/`) or a package-manager install (`libexec/libs/`).
fn from_home(mode: Mode, home: &Path) -> Result<Distribution, ClusterError> {
    let candidates = [home.join("libs"), home.join("libexec").join("libs")];
    let libs = candidates.iter().find(|p| p.is_dir()).ok_or_else(|| ClusterError::KafkaHome {
        home: home.to_path_buf(),
        problem: "it has no libs/ directory of jars".to_string(),
    })?;
    let version = server_jar_version(libs).ok_or_else(|| ClusterError::KafkaHome {
        home: home.to_path_buf(),
        problem: format!("{} holds no kafka_2.13-<version>.jar", libs.display()),
    })?;
    let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let major_ok = match mode {
        // KRaft mode is tested on the Kafka 4 line; ZooKeeper mode needs a line that still has it.
        Mode::Kraft => major >= 4,
        Mode::Zookeeper => (2..=3).contains(&major),
    };
    if !major_ok {
        return Err(ClusterError::KafkaHome {
            home: home.to_path_buf(),
            problem: format!(
                "it is Kafka {version}, which cannot run {} mode (that needs Kafka {})",
                mode.name(),
                pinned_version(mode)
            ),
        });
    }
    Ok(Distribution { libs: libs.clone(), version, origin: "KAFKA_HOME" })
}

fn server_jar_version(libs: &Path) -> Option<String> {
    fs::read_dir(libs).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rest = name.strip_prefix("kafka_2.13-")?.strip_suffix(".jar")?;
        // skip -test, -sources and similar classifiers
        (!rest.contains('-') || rest.ends_with("-SNAPSHOT")).then(|| rest.to_string())
    })
}

/// Runs `mvn dependency:copy-dependencies` on the bundled POM into `dir/libs`, atomically: jars go to
/// a scratch directory that is renamed into place, then `.complete` is written.
fn resolve_with_maven(mode: Mode, dir: &Path, progress: &Progress) -> Result<(), ClusterError> {
    let version = pinned_version(mode);
    if Command::new("mvn").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        return Err(ClusterError::MavenMissing { version: version.to_string(), cache: dir.to_path_buf() });
    }
    fs::create_dir_all(dir).map_err(io_err(format!("creating the jar cache {}", dir.display())))?;
    let pom_path = dir.join("pom.xml");
    fs::write(&pom_path, pom(mode)).map_err(io_err(format!("writing {}", pom_path.display())))?;
    let partial = dir.join("libs.partial");
    let _ = fs::remove_dir_all(&partial);

    progress.step(&format!("downloading Kafka {version} jars with Maven into {}", dir.display()));
    let mut child = Command::new("mvn")
        .arg("-B")
        .arg("-f")
        .arg(&pom_path)
        .arg("dependency:copy-dependencies")
        .arg(format!("-DoutputDirectory={}", partial.display()))
        .arg("-DincludeScope=runtime")
        .arg("-Dstyle.color=never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Maven reports everything, errors included, on stdout; the tail of it goes in our error.
        .stderr(Stdio::null())
        .spawn()
        .map_err(io_err("running mvn".to_string()))?;
    let mut tail: Vec<String> = Vec::new();
    let mut downloaded = 0usize;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("Downloaded from") {
                downloaded += 1;
                progress.tick(&format!("downloading Kafka {version} jars: {downloaded} files"));
            }
            tail.push(line);
            if tail.len() > 30 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait().map_err(io_err("waiting for mvn".to_string()))?;
    if !status.success() {
        return Err(ClusterError::MavenFailed { version: version.to_string(), output: tail.join("\n") });
    }
    let libs = dir.join("libs");
    let _ = fs::remove_dir_all(&libs);
    fs::rename(&partial, &libs).map_err(io_err(format!("moving jars into {}", libs.display())))?;
    fs::write(dir.join(".complete"), version)
        .map_err(io_err(format!("marking {} complete", dir.display())))?;
    progress.step(&format!("Kafka {version} jars cached in {}", libs.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_pins_one_version() {
        assert!(pinned_version(Mode::Kraft).starts_with("4."), "KRaft mode runs the Kafka 4 line");
        assert!(pinned_version(Mode::Zookeeper).starts_with("3.9."), "ZooKeeper mode needs Kafka 3.9.x");
        assert!(pom_property(ZOOKEEPER_POM, "zookeeper.version").is_some());
        for mode in [Mode::Kraft, Mode::Zookeeper] {
            // The version must not be repeated literally elsewhere in the POM.
            assert_eq!(pom(mode).matches(pinned_version(mode)).count(), 1);
            // XML forbids "--" inside comments; Maven then refuses the whole POM.
            for comment in pom(mode).split("<!--").skip(1) {
                let body = comment.split("-->").next().unwrap_or_default();
                assert!(!body.contains("--"), "{mode:?} POM comment holds \"--\": {body}");
            }
        }
    }

    #[test]
    fn kafka_home_needs_jars() {
        let home = tempfile::tempdir().expect("temp dir");
        let err = from_home(Mode::Kraft, home.path()).expect_err("an empty dir is no Kafka");
        assert!(err.to_string().contains("libs/"), "{err}");
        fs::create_dir(home.path().join("libs")).expect("mkdir");
        fs::write(home.path().join("libs/kafka_2.13-3.9.1.jar"), b"").expect("write");
        let err = from_home(Mode::Kraft, home.path()).expect_err("3.9 cannot run KRaft here");
        assert!(err.to_string().contains("3.9.1"), "{err}");
        let dist = from_home(Mode::Zookeeper, home.path()).expect("3.9 runs ZooKeeper mode");
        assert_eq!(dist.version, "3.9.1");
    }
}
