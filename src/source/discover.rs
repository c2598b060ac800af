//! Which files a source follows: absolute globs (a directory means every file in it) minus
//! `exclude` globs. Only regular files are followed; symlinks only with `follow_symlinks` (and
//! only to regular files); FIFOs, sockets and devices never. What matches but is not followed is
//! reported by the caller.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A compiled set of `paths` and `exclude` patterns, with the directories to watch.
#[derive(Debug, Clone)]
pub struct Discovery {
    include: GlobSet,
    /// `exclude` patterns with a `/`: matched against the whole path.
    exclude: GlobSet,
    /// `exclude` patterns without a `/` (`"*.gz"`): matched against the file name, as in
    /// .gitignore; against the whole absolute path they could never match.
    exclude_names: GlobSet,
    /// Directories to list and watch, with how deep below them a match can be (`None`: any depth).
    roots: Vec<(PathBuf, Option<usize>)>,
    follow_symlinks: bool,
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    // `*` must not cross directories, as in a shell.
    GlobBuilder::new(pattern).literal_separator(true).build()
}

impl Discovery {
    pub fn new(paths: &[PathBuf], exclude: &[String]) -> Result<Discovery, globset::Error> {
        let mut include = GlobSetBuilder::new();
        let mut roots = Vec::new();
        for p in paths {
            let mut pattern = p.to_string_lossy().into_owned();
            if !is_glob(&pattern) && p.is_dir() {
                pattern = format!("{}/*", pattern.trim_end_matches('/'));
            }
            include.add(glob(&pattern)?);
            // The watch root is the longest leading part without glob characters.
            let pattern_path = PathBuf::from(&pattern);
            let mut root = PathBuf::new();
            let mut rest = Vec::new();
            for comp in pattern_path.components() {
                let s = comp.as_os_str().to_string_lossy();
                if rest.is_empty() && !is_glob(&s) {
                    root.push(comp);
                } else {
                    rest.push(s.into_owned());
                }
            }
            if rest.is_empty() {
                // A plain file path: watch its directory.
                let file = root.clone();
                root = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
                rest.push(String::new());
            }
            let depth = if rest.iter().any(|r| r.contains("**")) { None } else { Some(rest.len()) };
            roots.push((root, depth));
        }
        let (mut ex, mut ex_names) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for e in exclude {
            if e.contains('/') {
                ex.add(glob(e)?)
            } else {
                ex_names.add(glob(e)?)
            };
        }
        Ok(Discovery {
            include: include.build()?,
            exclude: ex.build()?,
            exclude_names: ex_names.build()?,
            roots,
            follow_symlinks: false,
        })
    }

    /// Also select symlinks that lead to regular files (off by default: a symlink planted in a
    /// watched directory could otherwise make the daemon publish any file it may read).
    pub fn following_symlinks(mut self, on: bool) -> Self {
        self.follow_symlinks = on;
        self
    }

    /// The directories whose events matter.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        self.roots.iter().map(|(p, _)| p.as_path())
    }

    /// True if `path` is selected by the patterns (whatever kind of file it is).
    pub fn matches(&self, path: &Path) -> bool {
        self.include.is_match(path)
            && !self.exclude.is_match(path)
            && !path.file_name().is_some_and(|name| self.exclude_names.is_match(name))
    }

    /// Lists the roots and returns every selected regular file (not following symlinks).
    pub fn scan(&self) -> Vec<PathBuf> {
        self.scan_reporting().files
    }

    /// Like `scan`, and also says which directories could not be listed (a missing root is not
    /// a problem: the application may not have created it yet).
    pub fn scan_reporting(&self) -> Scan {
        let mut scan = Scan::default();
        for (root, depth) in &self.roots {
            self.walk(root, *depth, 0, &mut scan);
        }
        scan.files.sort();
        scan.files.dedup();
        scan
    }

    fn walk(&self, dir: &Path, depth: Option<usize>, level: usize, scan: &mut Scan) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                scan.unreadable.push((dir.to_path_buf(), e));
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_file() {
                if self.matches(&path) {
                    scan.files.push(path);
                }
            } else if kind.is_dir() {
                if depth.is_none_or(|d| level + 1 < d) {
                    self.walk(&path, depth, level + 1, scan);
                }
            } else if !self.matches(&path) {
            } else if kind.is_symlink() {
                let to_file = std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_file());
                if self.follow_symlinks && to_file {
                    scan.files.push(path);
                } else {
                    scan.refused.push((path, if to_file { Refused::Symlink } else { Refused::NotAFile }));
                }
            } else {
                scan.refused.push((path, Refused::NotAFile));
            }
        }
    }
}

/// Why a path that matches the globs is not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A symlink (to a regular file), and `follow_symlinks` is off.
    Symlink,
    /// A FIFO, socket, device, or a symlink to one of them (or to nothing): never read.
    NotAFile,
}

/// What one listing found.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<PathBuf>,
    /// Matching paths that are not followed, and why.
    pub refused: Vec<(PathBuf, Refused)>,
    /// Directories that exist but could not be listed (permissions), with why.
    pub unreadable: Vec<(PathBuf, std::io::Error)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_directories_and_excludes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for f in ["a.log", "b.log", "c.txt", "sub/d.log", "old.log"] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, b"x\n").expect("write");
        }
        std::os::unix::fs::symlink(d.join("a.log"), d.join("link.log")).expect("symlink");
        let star = Discovery::new(&[d.join("*.log")], &["**/old.log".to_string()]).expect("valid");
        assert_eq!(
            star.scan(),
            vec![d.join("a.log"), d.join("b.log")],
            "no subdirs, no symlinks, no excluded"
        );
        let deep = Discovery::new(&[d.join("**/*.log")], &[]).expect("valid");
        assert!(deep.scan().contains(&d.join("sub/d.log")));
        let whole = Discovery::new(&[d.to_path_buf()], &[]).expect("valid");
        assert_eq!(whole.scan().len(), 4, "a directory means every regular file in it");
        assert_eq!(whole.roots().collect::<Vec<_>>(), vec![d]);
        let one = Discovery::new(&[d.join("c.txt")], &[]).expect("valid");
        assert_eq!(one.scan(), vec![d.join("c.txt")]);
        let refused = star.scan_reporting().refused;
        assert_eq!(
            refused,
            vec![(d.join("link.log"), Refused::Symlink)],
            "the symlink is reported, not followed"
        );
        let following = Discovery::new(&[d.join("*.log")], &[]).expect("valid").following_symlinks(true);
        assert!(following.scan().contains(&d.join("link.log")));
        // A pattern without `/` is matched against the file name (it never matched an absolute path).
        let by_name =
            Discovery::new(&[d.join("**/*")], &["*.txt".to_string(), "old.*".to_string()]).expect("valid");
        assert_eq!(by_name.scan(), vec![d.join("a.log"), d.join("b.log"), d.join("sub/d.log")]);
        assert!(!by_name.matches(&d.join("sub/deeper/x.txt")), "at any depth");
        let by_path =
            Discovery::new(&[d.join("**/*.log")], &[format!("{}/sub/*", d.display())]).expect("valid");
        assert_eq!(by_path.scan(), vec![d.join("a.log"), d.join("b.log"), d.join("old.log")]);
        nix::unistd::mkfifo(&d.join("fifo.log"), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let refused = following.scan_reporting().refused;
        assert_eq!(refused, vec![(d.join("fifo.log"), Refused::NotAFile)], "a FIFO is never read");
    }
}
