//! Which configuration files the daemon trusts, as sshd's StrictModes decides: a file (or the
//! connectors directory) that someone other than root or the daemon's own user could write is
//! refused, naming the fix. A connector file decides what the daemon reads and where it writes,
//! so whoever can write one owns the daemon.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `Ok` if only root or the daemon's user can change `path`; otherwise why not and how to fix it.
pub fn check(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot check its permissions: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "refused: owned by uid {}, neither root nor the daemon's user (uid {me}); fix: chown {me} {}",
            meta.uid(),
            path.display()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        let who = if meta.mode() & 0o002 != 0 { "others" } else { "its group" };
        return Err(format!(
            "refused: writable by {who} (mode {:o}), so anyone in it could change what the daemon does; \
             fix: chmod go-w {}",
            meta.mode() & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn group_or_world_writable_files_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "x").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(check(&file), Ok(()));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let err = check(&file).expect_err("world-writable");
        assert!(err.contains("writable by others") && err.contains("chmod go-w"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).expect("chmod");
        assert!(check(&file).expect_err("group-writable").contains("its group"));
    }
}
