//! Durable file operations shared by source checkpoints and sink state.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes` atomically and durably: write a temp file beside it, fsync it,
/// rename it over `path`, fsync the directory. A crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        crate::failpoints::io("fsutil::write_atomic::fsync")?;
        f.sync_all()?;
    }
    crate::failpoints::io("fsutil::write_atomic::rename")?;
    fs::rename(&tmp, path)?;
    crate::failpoints::io("fsutil::write_atomic::dirsync")?;
    sync_dir(dir)
}

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`, and nothing changed): a file
/// that holds data is never replaced by another. Linux: `renameat2(RENAME_NOREPLACE)`; where the
/// file system or the platform lacks it, a hard link then an unlink (a crash between leaves both
/// names on one file, which reconciliation treats as the rename done).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let cstr = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        };
        let (a, b) = (cstr(from)?, cstr(to)?);
        // SAFETY: both are valid NUL-terminated paths that outlive the call.
        let rc = unsafe {
            libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_NOREPLACE)
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::ENOTSUP)) {
            return Err(err);
        }
    }
    fs::hard_link(from, to)?;
    fs::remove_file(from)
}

/// Renames a file that cannot be accounted for out of the way (never deletes data):
/// `NAME.WHY-NANOS-N` beside it, the directory fsynced. Names are never reused, so a second
/// set-aside cannot replace the first.
pub fn set_aside(path: &Path, why: &str) -> io::Result<std::path::PathBuf> {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let base = path.file_name().unwrap_or_default().to_os_string();
    for n in 0..100u32 {
        let mut name = base.clone();
        name.push(format!(".{why}-{nanos}-{n}"));
        let aside = path.with_file_name(name);
        match rename_noreplace(path, &aside) {
            Ok(()) => {
                sync_dir(path.parent().unwrap_or(Path::new("/")))?;
                return Ok(aside);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free set-aside name for {}", path.display()),
    ))
}

/// fsyncs a directory, so that a rename or create in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Seconds since the Unix epoch (for state files; wall clock is fine there).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn rename_noreplace_never_replaces_a_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        fs::write(&a, b"a").expect("write");
        fs::write(&b, b"b").expect("write");
        let err = rename_noreplace(&a, &b).expect_err("b exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!((fs::read(&a).expect("a"), fs::read(&b).expect("b")), (b"a".to_vec(), b"b".to_vec()));
        rename_noreplace(&a, &c).expect("c is free");
        assert!(!a.exists());
        assert_eq!(fs::read(&c).expect("c"), b"a");
    }
}
