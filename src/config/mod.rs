//! Configuration, from files only: the daemon config (`daemon.rs`) and one connector per file in
//! `connectors_dir` (`connector.rs`). Errors name the file, the line and the key.
//!
//! Invariant: nothing here talks to Kafka or the filesystem beyond reading the config files and
//! the secrets files they reference (`secrets.rs`, only under `secret_dirs`), so `macklake check`
//! and `run` validate exactly the same way.

pub mod connect;
pub mod connector;
pub mod daemon;
pub mod kafka_props;
pub mod layout;
pub mod reference;
pub mod secrets;
pub mod trust;
pub mod units;

use std::fmt;
use std::path::{Path, PathBuf};

pub use connector::{ConnectorConfig, ConnectorKind, SinkConfig, SourceConfig, Target};
pub use daemon::DaemonConfig;

/// A configuration problem, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key (dotted path where a table is known), when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_path_buf(), line: None, key: None, message: message.into() }
    }

    /// An error about `key`, located at the line where the key is written (if found).
    pub fn at_key(
        file: &Path,
        text: &str,
        table: Option<&str>,
        key: &str,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: find_key_line(text, table, key),
            key: Some(match table {
                Some(t) => format!("{t}.{key}"),
                None => key.to_string(),
            }),
            message: message.into(),
        }
    }

    /// Converts a TOML/serde error, recovering line and key from its span.
    pub fn from_toml(file: &Path, text: &str, err: &toml::de::Error) -> Self {
        let mut message = err.message().trim().to_string();
        let (line, key) = match err.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                (Some(line), key_at_line(text, line))
            }
            None => (None, None),
        };
        // serde names unknown keys itself; offer the closest known one.
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let unknown = rest.split('`').next().unwrap_or_default().to_string();
            let expected: Vec<&str> =
                rest.split("expected").nth(1).unwrap_or_default().split('`').skip(1).step_by(2).collect();
            if let Some(best) = did_you_mean(&unknown, &expected) {
                message = format!("unknown key `{unknown}` (did you mean `{best}`?)");
            } else {
                message = format!("unknown key `{unknown}`; known keys: {}", expected.join(", "));
            }
        }
        ConfigError { file: file.to_path_buf(), line, key, message }
    }
}

/// The dotted key written on `line` (1-based): the table header above it plus the key before `=`.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let this = lines.get(line.checked_sub(1)?)?;
    let key = this.split('=').next()?.trim().trim_matches('"');
    if !this.contains('=') || key.is_empty() {
        let header = this.trim();
        return header.starts_with('[').then(|| header.trim_matches(['[', ']']).to_string());
    }
    let table = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(['[', ']']).trim().to_string());
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// The line where `key` is assigned (inside `[table]` when given).
fn find_key_line(text: &str, table: Option<&str>, key: &str) -> Option<usize> {
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            current = Some(line.trim_matches(['[', ']']).trim().to_string());
            continue;
        }
        let Some((k, _)) = line.split_once('=') else { continue };
        let k = k.trim().trim_matches('"');
        if k == key && current.as_deref() == table {
            return Some(i + 1);
        }
        // inline form: `kafka = { "acks" = "1" }` or `[connector] kafka.acks = ...`
        if let Some(t) = table
            && current.is_none()
            && (k == t && raw.contains(key) || k == format!("{t}.{key}"))
        {
            return Some(i + 1);
        }
    }
    None
}

/// The known name closest to `unknown`, if close enough to be a likely typo.
pub fn did_you_mean<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim_distance(unknown, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (small inputs: config keys).
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(did_you_mean("rotate_byte", &["rotate_bytes", "topics"]), Some("rotate_bytes"));
        assert_eq!(did_you_mean("colour", &["rotate_bytes", "topics"]), None);
    }

    #[test]
    fn keys_are_found_with_their_table() {
        let text = "name = \"a\"\n[kafka]\n\"acks\" = \"1\"\n";
        assert_eq!(find_key_line(text, Some("kafka"), "acks"), Some(3));
        assert_eq!(find_key_line(text, None, "name"), Some(1));
        assert_eq!(key_at_line(text, 3).as_deref(), Some("kafka.acks"));
    }
}
