//! The layout rules of docs/architecture.md, checked on the source so they cannot rot: top-level
//! modules form no import cycle, and only the ingest service stores rows. That `domain` and
//! `formats` use no SQL and no HTTP is the compiler's job: they are a crate
//! (`crates/shadowcheck-domain`) that depends on neither.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The service's sources and the domain crate's: one module graph.
const ROOTS: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/src"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/crates/shadowcheck-domain/src"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every library file with its top-level module (`src/db/keys.rs` → `db`).
fn library_files() -> Vec<(String, PathBuf, String)> {
    let mut files = Vec::new();
    for root in ROOTS {
        rust_files(Path::new(root), &mut files);
    }
    files
        .into_iter()
        .filter_map(|path| {
            let root = ROOTS.iter().find(|r| path.starts_with(r))?;
            let relative = path.strip_prefix(root).expect("under a root");
            let first = relative.components().next()?.as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            if matches!(module.as_str(), "lib" | "main" | "bin") {
                return None;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            Some((module, path, text))
        })
        .collect()
}

/// The top-level modules a file names through `crate::x` or `use crate::{x, y::z}`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group, skipping nested braces.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        found.insert(ident(&group[i..]));
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

#[test]
fn top_level_modules_form_no_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, _, text) in library_files() {
        let deps = crate_references(&text);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(deps.into_iter().filter(|d| *d != module));
    }
    assert!(graph.len() > 8, "modules not found: {graph:?}");
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}\n{graph:#?}", cycle.join(" → "));
        }
    }
}

#[test]
fn parsers_never_print() {
    for (module, path, text) in library_files() {
        if module == "formats" || module == "domain" {
            for banned in ["println!", "eprintln!"] {
                assert!(!text.contains(banned), "{} uses `{banned}`", path.display());
            }
        }
    }
}

#[test]
fn only_the_ingest_service_stores() {
    for (module, path, text) in library_files() {
        let name = path.display();
        if module != "ingest" && module != "db" {
            for store in [
                "insert_batch(",
                "ensure_partitions(",
                "idempotency::claim(",
                "imports::record(",
                "Detection::parse(",
            ] {
                // Validation and storage happen only behind Ingest::submit.
                if module == "domain" && store == "Detection::parse(" {
                    continue;
                }
                assert!(!text.contains(store), "{name} calls `{store}`");
            }
        }
    }
}

#[test]
fn the_reference_scanner_sees_groups() {
    let refs = crate_references(
        "use crate::{db::{self, Pool}, error::ApiError};\nx(crate::ingest::Ingest)",
    );
    let expected: BTreeSet<String> = ["db", "error", "ingest"].map(String::from).into();
    assert_eq!(refs, expected);
}
