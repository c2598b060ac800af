//! Secret references in `[kafka]` values, as Kafka Connect's config providers write them:
//! `${env:NAME}` (an environment variable) and `${file:PATH:KEY}` (KEY in a Java-style
//! `.properties` file). Resolved when a config file is loaded, so `macklake check` validates them.
//!
//! Invariant: no error produced here contains a resolved value or a line of a secrets file; errors
//! name only the reference (variable, path, key), which the config file itself already shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a reference could not be resolved (without the value, ever).
pub type Problem = String;

/// Resolves every `${provider:...}` in `value`. Returns the resolved text and whether anything was
/// substituted (such a value is treated as a secret wherever properties are shown).
/// `base` is the directory relative `${file:...}` paths start from; only files under one of
/// `allowed` may be read.
pub fn resolve(value: &str, base: &Path, allowed: &[PathBuf]) -> Result<(String, bool), Problem> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut substituted = false;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let reference = &after[..end];
        let Some((provider, body)) = reference.split_once(':') else {
            // Not a reference (`${x}`): librdkafka gets it as written, like Connect does.
            out.push_str(&rest[..start + 2 + end + 1]);
            rest = &after[end + 1..];
            continue;
        };
        out.push_str(&rest[..start]);
        match provider {
            "env" => out.push_str(&env(body)?),
            "file" => out.push_str(&file(body, base, allowed)?),
            other => {
                return Err(format!(
                    "unknown secret provider `{other}` in `${{{reference}}}`: use ${{env:NAME}} or ${{file:PATH:KEY}}"
                ));
            }
        }
        substituted = true;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, substituted))
}

fn env(name: &str) -> Result<String, Problem> {
    if name.is_empty() {
        return Err("`${env:}` names no environment variable".to_string());
    }
    match std::env::var(name) {
        Ok(v) => Ok(v),
        Err(std::env::VarError::NotPresent) => {
            Err(format!("environment variable `{name}` (from `${{env:{name}}}`) is not set"))
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("environment variable `{name}` (from `${{env:{name}}}`) is not valid UTF-8"))
        }
    }
}

fn file(body: &str, base: &Path, allowed: &[PathBuf]) -> Result<String, Problem> {
    // The key follows the last ':', so a path may itself contain ':'.
    let Some((path, key)) = body.rsplit_once(':').filter(|(p, k)| !p.is_empty() && !k.is_empty()) else {
        return Err(format!("`${{file:{body}}}` must be written ${{file:PATH:KEY}}"));
    };
    let reference = format!("${{file:{path}:{key}}}");
    let joined = base.join(path);
    // Canonical paths: neither `..` nor a symlink can lead out of an allowed directory.
    let real = joined
        .canonicalize()
        .map_err(|e| format!("cannot read secrets file {} (from `{reference}`): {e}", joined.display()))?;
    let inside = allowed.iter().filter_map(|d| d.canonicalize().ok()).any(|d| real.starts_with(&d));
    if !inside {
        let dirs = allowed.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(format!(
            "secrets file {} (from `{reference}`) is outside the directories the daemon config allows \
             (secret_dirs: [{dirs}]): move it there or add its directory to secret_dirs",
            real.display()
        ));
    }
    let text = std::fs::read_to_string(&real)
        .map_err(|e| format!("cannot read secrets file {} (from `{reference}`): {e}", real.display()))?;
    let mut props = parse_properties(&text);
    props
        .remove(key)
        .ok_or_else(|| format!("secrets file {} has no key `{key}` (from `{reference}`)", real.display()))
}

/// A Java `.properties` file: `key=value`, `key: value` or `key value`; `#`/`!` comments; a line
/// ending in an odd number of `\` continues; `\t`, `\n`, `\r`, `\f`, `\uXXXX` and `\x` escapes.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut props = BTreeMap::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let (key, value) = split_entry(&logical);
        props.insert(unescape(key), unescape(value));
        logical.clear();
    }
    if !logical.is_empty() {
        let (key, value) = split_entry(&logical);
        props.insert(unescape(key), unescape(value));
    }
    props
}

/// Splits at the first unescaped `=`, `:` or whitespace (then skips one `=`/`:` after whitespace).
fn split_entry(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => return (&line[..i], line[i + 1..].trim_start()),
            b' ' | b'\t' | b'\x0c' => {
                let rest = line[i..].trim_start();
                let rest = rest.strip_prefix(['=', ':']).map(str::trim_start).unwrap_or(rest);
                return (&line[..i], rest);
            }
            _ => i += 1,
        }
    }
    (line, "")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_files_parse_as_java_reads_them() {
        let p = parse_properties(
            "# comment\n! also\n\npassword = s3cr=t \nuser:alice\nplain value with spaces\n\
             multi = one\\\n    two\nesc\\=aped=a\\tb\\u0041\n",
        );
        assert_eq!(p.get("password").map(String::as_str), Some("s3cr=t "));
        assert_eq!(p.get("user").map(String::as_str), Some("alice"));
        assert_eq!(p.get("plain").map(String::as_str), Some("value with spaces"));
        assert_eq!(p.get("multi").map(String::as_str), Some("onetwo"));
        assert_eq!(p.get("esc=aped").map(String::as_str), Some("a\tbA"));
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn env_and_file_references_resolve_and_errors_never_show_the_value() {
        let dir = tempfile::tempdir().expect("tmp");
        let secrets = dir.path().join("kafka.properties");
        std::fs::write(&secrets, "password=hunter2-very-secret\n").expect("write");
        let allowed = vec![dir.path().to_path_buf()];
        let reference = format!("${{file:{}:password}}", secrets.display());
        assert_eq!(
            resolve(&reference, Path::new("/"), &allowed),
            Ok(("hunter2-very-secret".to_string(), true))
        );
        // relative to the file that names it; embedded in a longer value
        assert_eq!(
            resolve("x-${file:kafka.properties:password}-y", dir.path(), &allowed),
            Ok(("x-hunter2-very-secret-y".to_string(), true))
        );
        assert_eq!(resolve("plain ${notaref}", dir.path(), &allowed), Ok(("plain ${notaref}".into(), false)));

        let missing_key =
            resolve("${file:kafka.properties:pasword}", dir.path(), &allowed).expect_err("no key");
        assert!(missing_key.contains("no key `pasword`"), "{missing_key}");
        assert!(!missing_key.contains("hunter2"), "{missing_key}");
        let missing_file =
            resolve("${file:nope.properties:password}", dir.path(), &allowed).expect_err("no file");
        assert!(missing_file.contains("nope.properties"), "{missing_file}");
        let no_var =
            resolve("${env:MACKLAKE_TEST_SURELY_UNSET_VAR}", dir.path(), &allowed).expect_err("unset");
        assert!(no_var.contains("MACKLAKE_TEST_SURELY_UNSET_VAR"), "{no_var}");
        let path = std::env::var("PATH").expect("PATH is set");
        assert_eq!(resolve("${env:PATH}", dir.path(), &allowed), Ok((path, true)));
        assert!(resolve("${vault:x:y}", dir.path(), &allowed).expect_err("provider").contains("vault"));
    }

    #[test]
    fn files_outside_the_allowed_directories_are_refused() {
        let allowed_dir = tempfile::tempdir().expect("tmp");
        let other = tempfile::tempdir().expect("tmp");
        let outside = other.path().join("s.properties");
        std::fs::write(&outside, "password=hunter2-very-secret\n").expect("write");
        let allowed = vec![allowed_dir.path().to_path_buf()];
        let direct = format!("${{file:{}:password}}", outside.display());
        let err = resolve(&direct, Path::new("/"), &allowed).expect_err("outside");
        assert!(err.contains("outside the directories") && err.contains("secret_dirs"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        // neither `..` nor a symlink inside the allowed directory leads out of it
        let dotdot = format!(
            "${{file:{}/../{}/s.properties:password}}",
            allowed_dir.path().display(),
            other.path().file_name().and_then(|n| n.to_str()).expect("name")
        );
        assert!(resolve(&dotdot, Path::new("/"), &allowed).is_err());
        std::os::unix::fs::symlink(&outside, allowed_dir.path().join("link.properties")).expect("symlink");
        assert!(resolve("${file:link.properties:password}", allowed_dir.path(), &allowed).is_err());
    }
}
