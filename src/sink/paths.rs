//! Where a sink may write. Every path is built from validated parts: a topic name is checked
//! against Kafka's rules again here (a broker of another version, or a bug, must not be able to
//! hand the sink `..` or a `/`), and the topic directory, once created, must still lie under the
//! sink directory after canonicalisation (a symlink planted in its place is refused). Directories
//! are created 0750; files get the sink's `file_mode` (0640 by default).

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const DIR_MODE: u32 = 0o750;
pub use crate::config::connector::DEFAULT_FILE_MODE;

/// Creates (if needed) and returns `sink_dir/topic`, refusing names and places that would lead
/// outside `sink_dir`.
pub fn topic_dir(sink_dir: &Path, topic: &str) -> io::Result<PathBuf> {
    crate::config::connector::validate_topic(topic).map_err(|why| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("topic name {topic:?} refused as a directory name: {why}"),
        )
    })?;
    create_dirs(sink_dir)?;
    let dir = sink_dir.join(topic);
    create_dirs(&dir)?;
    let (base, real) = (sink_dir.canonicalize()?, dir.canonicalize()?);
    if !real.starts_with(&base) || real == base {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} leads to {}, outside the sink directory {}: refused",
                dir.display(),
                real.display(),
                base.display()
            ),
        ));
    }
    Ok(dir)
}

/// Creates (if needed) and returns `sink_dir/bucket`, a bucket directory of a time layout.
/// `bucket` may come from commit metadata in Kafka (anyone who can commit for the group can
/// write it): it must be a relative path of plain names, and once created it must still lie
/// under `sink_dir` after canonicalisation (a symlink planted on the way is refused).
pub fn bucket_dir(sink_dir: &Path, bucket: &str) -> io::Result<PathBuf> {
    let plain = !bucket.is_empty()
        && bucket.len() <= 512
        && !bucket.starts_with('/')
        && !bucket.contains('\0')
        && bucket.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if !plain {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bucket directory {bucket:?} refused: not a relative path of plain names"),
        ));
    }
    create_dirs(sink_dir)?;
    let dir = sink_dir.join(bucket);
    create_dirs(&dir)?;
    let (base, real) = (sink_dir.canonicalize()?, dir.canonicalize()?);
    if !real.starts_with(&base) || real == base {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} leads to {}, outside the sink directory {}: refused",
                dir.display(),
                real.display(),
                base.display()
            ),
        ));
    }
    Ok(dir)
}

/// `create_dir_all` with the sink's directory mode for what it creates; each directory it
/// creates is made durable in its parent (fsync), so that a crash cannot lose a directory that
/// holds committed files.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    crate::fsutil::sync_dir(dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn topic_directories_stay_inside_the_sink_directory() {
        let root = tempfile::tempdir().expect("temp dir");
        let sink = root.path().join("archive");
        let dir = topic_dir(&sink, "app-logs").expect("a plain topic");
        assert_eq!(dir, sink.join("app-logs"));
        assert_eq!(std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777, 0o750);
        for bad in ["..", ".", "../etc", "a/b", ""] {
            assert!(topic_dir(&sink, bad).is_err(), "{bad:?} refused");
        }
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, sink.join("planted")).expect("symlink");
        let err = topic_dir(&sink, "planted").expect_err("a symlink out");
        assert!(err.to_string().contains("outside the sink directory"), "{err}");
    }

    #[test]
    fn bucket_directories_from_commit_metadata_stay_inside_the_sink_directory() {
        let root = tempfile::tempdir().expect("temp dir");
        let sink = root.path().join("archive");
        let dir = bucket_dir(&sink, "t/2026/12/03/14").expect("a plain bucket");
        assert_eq!(dir, sink.join("t/2026/12/03/14"));
        assert!(dir.is_dir());
        for bad in ["..", "t/../../x", "/etc", "t//x", "", "t/./x"] {
            assert!(bucket_dir(&sink, bad).is_err(), "{bad:?} refused");
        }
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, sink.join("t/2026/12/03/15")).expect("symlink");
        let err = bucket_dir(&sink, "t/2026/12/03/15").expect_err("a symlink out");
        assert!(err.to_string().contains("outside the sink directory"), "{err}");
    }
}
