//! The architecture's absences, checked: the code the model tests drive does not reach Kafka
//! (they would then test it only with a cluster, or not at all), and the modules of `src/` form
//! no import cycle.

use std::path::Path;

/// Files of the tailer and of what it uses.
const TAILER: &[&str] = &[
    "src/source/tailer",
    "src/source/reader.rs",
    "src/source/checkpoint.rs",
    "src/source/claims.rs",
    "src/source/discover.rs",
    "src/source/fingerprint.rs",
    "src/source/stats.rs",
    "src/source/events.rs",
    "src/source/sample.rs",
];

fn rust_files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("list a source directory") {
            rust_files(&entry.expect("directory entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

fn mentions_kafka_clients(paths: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for p in paths {
        rust_files(&root.join(p), &mut files);
    }
    assert!(files.len() >= paths.len(), "the files under test were found: {files:?}");
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read a source file");
        for (i, line) in text.lines().enumerate() {
            if line.contains("rdkafka") || line.contains("crate::kafka") {
                found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_tailer_imports_nothing_of_kafka() {
    let found = mentions_kafka_clients(TAILER);
    assert!(found.is_empty(), "the tailer must not use Kafka:\n{}", found.join("\n"));
}

#[test]
fn the_check_finds_a_kafka_import() {
    // The check itself can fail: source/mod.rs drives the producer.
    assert!(!mentions_kafka_clients(&["src/source/mod.rs"]).is_empty());
}

/// Which top-level modules of `src/` each one names (`crate::x`), tests left out.
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("list src") {
        let path = entry.expect("directory entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if name == "main" || name == "lib" {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&path, &mut files);
        modules.insert(name, files);
    }
    let mut graph = std::collections::BTreeMap::new();
    for (name, files) in &modules {
        let mut deps = std::collections::BTreeSet::new();
        for f in files {
            let text = std::fs::read_to_string(f).expect("read a source file");
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let dep: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                if dep != *name && modules.contains_key(&dep) {
                    deps.insert(dep);
                }
            }
        }
        graph.insert(name.clone(), deps);
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(graph, dep, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph.keys().find_map(|n| visit(graph, n, &mut Vec::new(), &mut done))
}

/// Issue 15, part 3: the modules form no import cycle (ARCHITECTURE.md lists the graph).
#[test]
fn the_modules_form_no_cycle() {
    let graph = module_graph();
    assert!(graph.len() >= 10 && graph["daemon"].contains("source"), "the graph was read: {graph:?}");
    assert_eq!(cycle(&graph), None, "an import cycle between src/ modules");
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut graph = module_graph();
    graph.get_mut("config").expect("config").insert("daemon".into());
    assert!(cycle(&graph).is_some());
}
