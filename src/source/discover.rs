//! Which files a source follows: absolute globs (a directory means every file in it) minus
//! `exclude` globs. Only regular files are followed; symlinks, FIFOs, sockets and devices never are.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A compiled set of `paths` and `exclude` patterns, with the directories to watch.
#[derive(Debug, Clone)]
pub struct Discovery {
    include: GlobSet,
    exclude: GlobSet,
    /// Directories to list and watch, with how deep below them a match can be (`None`: any depth).
    roots: Vec<(PathBuf, Option<usize>)>,
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
        let mut ex = GlobSetBuilder::new();
        for e in exclude {
            ex.add(glob(e)?);
        }
        Ok(Discovery { include: include.build()?, exclude: ex.build()?, roots })
    }

    /// The directories whose events matter.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        self.roots.iter().map(|(p, _)| p.as_path())
    }

    /// True if `path` is selected by the patterns (whatever kind of file it is).
    pub fn matches(&self, path: &Path) -> bool {
        self.include.is_match(path) && !self.exclude.is_match(path)
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
            } else if kind.is_dir() && depth.is_none_or(|d| level + 1 < d) {
                self.walk(&path, depth, level + 1, scan);
            }
        }
    }
}

/// What one listing found.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<PathBuf>,
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
    }
}
