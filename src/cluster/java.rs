//! Finding a Java runtime able to run Kafka (17 or newer).

use std::path::PathBuf;
use std::process::Command;

use super::ClusterError;

/// The oldest Java major version Kafka 4 runs on.
pub const MIN_JAVA: u32 = 17;

/// A `java` executable whose version has been checked.
#[derive(Debug, Clone)]
pub struct Java {
    pub path: PathBuf,
    pub major: u32,
}

/// Finds `java`: `$JAVA_HOME/bin/java` when JAVA_HOME is set, else `java` on PATH.
pub fn find() -> Result<Java, ClusterError> {
    let path = match std::env::var_os("JAVA_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join("bin").join("java"),
        _ => PathBuf::from("java"),
    };
    let output = Command::new(&path)
        .arg("-version")
        .output()
        .map_err(|_| ClusterError::JavaMissing { tried: path.display().to_string() })?;
    // `java -version` prints to stderr, e.g. `openjdk version "17.0.15" 2025-04-15`.
    let text = String::from_utf8_lossy(&output.stderr);
    let major = parse_major(&text).ok_or_else(|| ClusterError::JavaUnreadable {
        tried: path.display().to_string(),
        said: text.lines().next().unwrap_or("").to_string(),
    })?;
    if major < MIN_JAVA {
        return Err(ClusterError::JavaTooOld { tried: path.display().to_string(), major });
    }
    Ok(Java { path, major })
}

/// Reads the major version from `java -version` output ("1.8.0_392" is 8, "17.0.15" is 17).
fn parse_major(text: &str) -> Option<u32> {
    let line = text.lines().find(|l| l.contains(" version \""))?;
    let quoted = line.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '-', '+', '_']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 { parts.next()?.parse().ok() } else { Some(first) }
}

#[cfg(test)]
mod tests {
    use super::parse_major;

    #[test]
    fn reads_major_versions() {
        assert_eq!(parse_major("openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime"), Some(17));
        assert_eq!(parse_major("java version \"1.8.0_392\""), Some(8));
        assert_eq!(parse_major("openjdk version \"21\" 2023-09-19"), Some(21));
        assert_eq!(parse_major("openjdk version \"25-ea\" 2025-09-16"), Some(25));
        assert_eq!(parse_major("no version here"), None);
    }
}
