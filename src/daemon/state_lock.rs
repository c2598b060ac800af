//! One process per state directory. Two daemons (or a daemon and `import-offsets`) sharing a
//! `state_dir` would overwrite each other's checkpoints and commit caches: the second is refused
//! with the first's pid, through an `flock` on `STATE_DIR/macklake.lock` held for the process's
//! life (the kernel releases it when the process dies, however it dies).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum StateLockError {
    #[error("cannot lock the state directory ({path}): {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Another process holds it.
    #[error(
        "the state directory is in use by another macklake process ({owner}; lock file {path}): \
         two processes must not share a state_dir — stop the other one, or give this one its own state_dir"
    )]
    Held { path: PathBuf, owner: String },
}

/// Held while the process runs; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _lock: Flock<File>,
}

/// Takes the state directory's lock, recording who holds it (`what`: the command).
pub fn acquire(state_dir: &Path, what: &str) -> Result<StateLock, StateLockError> {
    let path = state_dir.join("macklake.lock");
    let io = |source| StateLockError::Io { path: path.clone(), source };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(&path)
        .map_err(io)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let note = format!("pid {} ({what})\n", std::process::id());
            lock.set_len(0).map_err(io)?;
            lock.rewind().map_err(io)?;
            lock.write_all(note.as_bytes()).map_err(io)?;
            Ok(StateLock { _lock: lock })
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            let owner = if owner.is_empty() { "pid unknown".to_string() } else { owner.to_string() };
            Err(StateLockError::Held { path, owner })
        }
        Err((_, errno)) => Err(io(std::io::Error::from(errno))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = acquire(dir.path(), "macklake run").expect("free");
        // flock locks belong to the open file description: a second open in the same process
        // conflicts just as another process's would.
        let err = acquire(dir.path(), "macklake import-offsets").expect_err("held");
        let text = err.to_string();
        assert!(text.contains(&format!("pid {} (macklake run)", std::process::id())), "{text}");
        drop(first);
        acquire(dir.path(), "macklake run").expect("free again");
    }
}
