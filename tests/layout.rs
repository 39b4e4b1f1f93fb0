//! The house rules of the source tree, checked on the tree itself: every
//! file says what it owns, the top-level modules (the floors) import each
//! other in one direction only, and the low floors know nothing of the
//! modules built on them.
//!
//! A dependency is a `crate::<module>` path outside comments and outside the
//! file's `#[cfg(test)]` part (tests may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`src/cache/disk/mod.rs` → `cache`);
/// `None` for the crate roots.
fn floor_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules that `text` names as `crate::<module>`.
fn named_floors(text: &str, floors: &BTreeSet<String>) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(list) = rest.strip_prefix('{') {
                // `use crate::{a, b::c}`
                let inner = list.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name = item.trim().split("::").next().unwrap_or("").to_string();
                    if floors.contains(&name) {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if floors.contains(&name) {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// floor → the floors it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let floors: BTreeSet<String> = files.iter().filter_map(|f| floor_of(f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = floors
        .iter()
        .map(|f| (f.clone(), BTreeSet::new()))
        .collect();
    for file in &files {
        let Some(floor) = floor_of(file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for dep in named_floors(&text, &floors) {
            if dep != floor {
                g.get_mut(&floor).unwrap().insert(dep);
            }
        }
    }
    g
}

#[test]
fn every_source_file_opens_with_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let bare: Vec<_> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .collect();
    assert!(bare.is_empty(), "files without a //! header: {bare:?}");
}

#[test]
fn the_floors_import_each_other_in_one_direction_only() {
    let g = graph();
    assert!(g.contains_key("cache") && g.contains_key("chain"), "{g:?}");
    // A depth-first walk; a back edge is a cycle, reported with its path.
    fn walk(
        g: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == at) {
            let mut cycle = path[i..].to_vec();
            cycle.push(at.to_string());
            return Some(cycle);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_string());
        for next in &g[at] {
            if let Some(c) = walk(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(at.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for floor in g.keys() {
        if let Some(cycle) = walk(&g, floor, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_low_floors_know_nothing_of_what_is_built_on_them() {
    let g = graph();
    // floor → the only floors it may import.
    let rules: &[(&str, &[&str])] = &[
        ("piece", &[]),
        ("http", &[]),
        ("metrics", &[]),
        ("progress", &[]),
        ("tls", &[]),
        ("chain", &[]),
        ("manifest", &["http", "piece"]),
        ("media", &["http"]),
        // The configuration names the network (chain) and checks TLS files
        // (tls); it imports nothing from the modules that read it.
        ("config", &["chain", "tls"]),
        ("upstream", &["chain", "http", "metrics", "piece", "config"]),
    ];
    for (floor, allowed) in rules {
        let deps = g.get(*floor).unwrap_or_else(|| panic!("no module {floor}"));
        let extra: Vec<_> = deps
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "{floor} imports {extra:?}; it may import only {allowed:?}"
        );
    }
}
