//! The manual stays true to the code: the configuration chapter against the
//! shipped config and the config model, every relative link of the docs, and
//! the routes chapter against the routers and the real binary.
//!
//! Forms these checks read (write new docs in them):
//! - `docs/src/configuration.md`: tables whose header is `| key | default |
//!   meaning |`; the first cell is the key's full dotted path in backticks
//!   (`[]` stands for each entry of a list, as in `cluster.peers[].name`), the
//!   second its default as one backticked YAML value, or `—` for a key with no
//!   default (required inside its parent).
//! - `docs/src/routes.md`: one `## <Name> listener` section per listener with
//!   a table whose header starts `| route |`; the first cell holds the route
//!   in backticks, `METHOD[\|METHOD…] /path`, or a bare `/path`.
//! - links: inline Markdown links `[text](target)` outside code.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use beam_edge::config::Config;
use beam_edge::piece::commp::commp_of;
use common::*;
use serde_yaml::{Mapping, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Lines of a Markdown text outside fenced code blocks, with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// The cells of a table row (`| a | b |`), trimmed; `\|` stays inside a cell.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    out.push(cell.trim().to_string());
    out
}

/// The rows (after header and rule) of every table whose header's first
/// cells are `header`, within `lines`.
fn table_rows(lines: &[(usize, &str)], header: &[&str]) -> Vec<(usize, Vec<String>)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for (n, line) in lines {
        let is_row = line.trim_start().starts_with('|');
        if !is_row {
            in_table = false;
            continue;
        }
        let c = cells(line);
        if c.len() >= header.len() && c.iter().zip(header).all(|(a, b)| a == b) {
            in_table = true;
            continue;
        }
        if in_table && !c.iter().all(|x| x.chars().all(|ch| ch == '-' || ch == ':')) {
            rows.push((*n, c));
        }
    }
    rows
}

/// The text of the code spans of `cell`.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Configuration

/// Every leaf key of a YAML mapping, by full dotted path. An empty mapping is
/// a leaf (a section with no keys yet); lists are leaves.
fn yaml_keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let k = k
                    .as_str()
                    .unwrap_or_else(|| panic!("non-string key under {prefix:?}"));
                let path = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                yaml_keys(v, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// A documented key: its path and its default as YAML (`None` for `—`).
struct DocKey {
    line: usize,
    path: String,
    default: Option<Value>,
}

fn documented_keys() -> Vec<DocKey> {
    let text = read("docs/src/configuration.md");
    let lines = prose_lines(&text);
    let mut keys = Vec::new();
    for (line, c) in table_rows(&lines, &["key", "default", "meaning"]) {
        let key = code_spans(&c[0]);
        assert!(
            key.len() == 1 && c[0] == format!("`{}`", key[0]),
            "configuration.md:{line}: the first cell must be one key path in backticks, got {:?}",
            c[0]
        );
        let default = if c[1] == "—" {
            None
        } else {
            let d = code_spans(&c[1]);
            assert!(
                d.len() == 1 && c[1] == format!("`{}`", d[0]),
                "configuration.md:{line}: the default of {} must be one backticked YAML value or —, got {:?}",
                key[0],
                c[1]
            );
            Some(serde_yaml::from_str(&d[0]).unwrap_or(Value::String(d[0].clone())))
        };
        keys.push(DocKey {
            line,
            path: key[0].clone(),
            default,
        });
    }
    keys
}

/// A YAML document that sets only `path` (dotted, `[]` for a list entry) to `value`.
fn document_setting(path: &str, value: Value) -> Value {
    let mut v = value;
    for seg in path.rsplit('.') {
        let (name, in_list) = match seg.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (seg, false),
        };
        let mut m = Mapping::new();
        m.insert(Value::String(name.to_string()), v);
        v = Value::Mapping(m);
        if in_list {
            // `name[]` wraps the inner mapping in a one-entry list under `name`.
            let Value::Mapping(mut outer) = v else {
                unreachable!()
            };
            let inner = outer.remove(name).unwrap_or(Value::Null);
            let mut m = Mapping::new();
            m.insert(
                Value::String(name.to_string()),
                Value::Sequence(vec![inner]),
            );
            v = Value::Mapping(m);
        }
    }
    v
}

#[test]
fn every_shipped_config_key_is_documented_and_every_documented_key_exists() {
    let shipped: Value = serde_yaml::from_str(&read("config/beam-edge.yaml")).unwrap();
    let mut shipped_keys = BTreeSet::new();
    yaml_keys(&shipped, "", &mut shipped_keys);
    assert!(shipped_keys.len() > 40, "walked {shipped_keys:?}");

    let documented = documented_keys();
    let mut seen = BTreeMap::new();
    for k in &documented {
        if let Some(first) = seen.insert(k.path.clone(), k.line) {
            panic!(
                "configuration.md:{}: {} is documented twice (first on line {first})",
                k.line, k.path
            );
        }
    }
    let missing: Vec<_> = shipped_keys
        .iter()
        .filter(|k| !seen.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of config/beam-edge.yaml missing from docs/src/configuration.md (add a row `| \\`key\\` | \\`default\\` | meaning |`): {missing:?}"
    );

    // The built-in defaults and the shipped file agree, so "the default"
    // below means one thing.
    assert_eq!(
        Config::embedded_default(),
        Config::default(),
        "config/beam-edge.yaml and the model's Default differ"
    );
    let defaults = Config::default();
    for k in &documented {
        let value = k
            .default
            .clone()
            .unwrap_or(Value::String("documented-key-probe".into()));
        let doc = serde_yaml::to_string(&document_setting(&k.path, value)).unwrap();
        match Config::parse_yaml(&doc, "configuration.md") {
            Err(e) if e.reason.contains("unknown field") => panic!(
                "configuration.md:{}: {} is documented but the config model has no such key ({}: {})",
                k.line, k.path, e.path, e.reason
            ),
            Err(e) if k.default.is_some() => panic!(
                "configuration.md:{}: the documented default of {} does not parse: {}: {}\n{doc}",
                k.line, k.path, e.path, e.reason
            ),
            // A key without a default: any error but "unknown field" (a
            // missing sibling, a type) shows that the key exists.
            Err(_) => {}
            Ok(cfg) => {
                if k.default.is_some() {
                    assert!(
                        cfg == defaults,
                        "configuration.md:{}: {} is documented with default {:?}, but the code's default differs\n{doc}",
                        k.line,
                        k.path,
                        k.default
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Links

/// The anchor a heading gets (GitHub's and mdBook's rule: lowercase; letters,
/// digits, `-` and `_` kept; spaces become `-`; everything else dropped).
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let s = slug(&line[hashes..]);
        let n = counts.entry(s.clone()).or_default();
        out.insert(if *n == 0 {
            s.clone()
        } else {
            format!("{s}-{n}")
        });
        *n += 1;
    }
    out
}

/// Inline link targets of one line, code spans removed first.
fn link_targets(line: &str) -> Vec<String> {
    let text: String = line
        .split('`')
        .enumerate()
        .map(|(i, s)| if i % 2 == 0 { s } else { "" })
        .collect();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j..];
            }
            None => break,
        }
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut files = vec![repo().join("README.md"), repo().join("deploy/README.md")];
    walk(&repo().join("docs"), &mut files);
    files
}

#[test]
fn every_relative_link_of_the_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(repo()).unwrap().display().to_string();
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                if !resolved.exists() {
                    broken.push(format!("{shown}:{n}: {target}: no such file"));
                    continue;
                }
                if let Some(a) = anchor {
                    if resolved.extension().is_some_and(|x| x == "md") {
                        let t = std::fs::read_to_string(&resolved).unwrap();
                        if !anchors(&t).contains(a) {
                            broken.push(format!("{shown}:{n}: {target}: no heading #{a}"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn summary_links_every_chapter() {
    let summary = read("docs/src/SUMMARY.md");
    let linked: BTreeSet<String> = summary.lines().flat_map(link_targets).collect();
    for e in std::fs::read_dir(repo().join("docs/src"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            assert!(
                linked.contains(&name),
                "docs/src/SUMMARY.md does not link {name}"
            );
        }
    }
}

#[test]
fn the_readme_stays_a_five_minute_page() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines: keep it to 200 (what it is, the two commands, the quick start, the status table, links into docs/src/) and move the rest into a chapter"
    );
    for must in [
        "make serve",
        "make test",
        "docs/src/SUMMARY.md",
        "docs/src/testing.md",
    ] {
        assert!(readme.contains(must), "README.md no longer mentions {must}");
    }
}

#[test]
fn the_module_map_names_every_module_and_only_real_ones() {
    let text = read("docs/src/architecture.md");
    let map = text
        .split("\n## Module map\n")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("architecture.md has a ## Module map with a code block");
    let entries: Vec<&str> = map
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|e| e.contains('/') || e.ends_with(".rs"))
        .collect();
    for e in &entries {
        assert!(
            repo().join(e).exists(),
            "architecture.md, Module map: {e} does not exist"
        );
    }
    let lib = read("src/lib.rs");
    for line in lib.lines() {
        let Some(name) = line
            .trim()
            .strip_prefix("pub mod ")
            .and_then(|m| m.strip_suffix(';'))
        else {
            continue;
        };
        let (file, dir) = (format!("src/{name}.rs"), format!("src/{name}/"));
        assert!(
            entries.iter().any(|e| *e == file || *e == dir),
            "architecture.md, Module map: no line for the module {name} ({file} or {dir})"
        );
    }
}

// ---------------------------------------------------------------------------
// Command line

fn help_of(args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "beam-edge {args:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// `(long, short)` of every option `--help` lists, `--help`/`--version` aside.
fn options_of(help: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let (short, rest) = match t.strip_prefix('-') {
            Some(r) if !r.starts_with('-') => {
                let (s, rest) = r.split_once(", ").unwrap_or((r, ""));
                (Some(format!("-{s}")), rest)
            }
            _ => (None, t),
        };
        let Some(long) = rest.strip_prefix("--") else {
            continue;
        };
        let long: String = long
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if long != "help" && long != "version" {
            out.push((format!("--{long}"), short));
        }
    }
    out
}

/// True when `line` names `flag` as a whole word.
fn mentions(line: &str, flag: &str) -> bool {
    line.match_indices(flag).any(|(i, _)| {
        let before = line[..i].chars().last().unwrap_or(' ');
        let after = line[i + flag.len()..].chars().next().unwrap_or(' ');
        !before.is_ascii_alphanumeric()
            && before != '-'
            && !after.is_ascii_alphanumeric()
            && after != '-'
    })
}

#[test]
fn every_command_and_flag_is_in_the_command_line_section() {
    let text = read("docs/src/getting-started.md");
    let section = text
        .split("\n## Command line\n")
        .nth(1)
        .expect("getting-started.md has a ## Command line section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the Command line section opens with a code block");
    let top = help_of(&[]);
    let commands: Vec<&str> = top
        .split("Commands:")
        .nth(1)
        .unwrap_or("")
        .split("Options:")
        .next()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 6, "commands: {commands:?}");
    for command in commands {
        let prefix = format!("beam-edge {command} ");
        let line = block
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| {
                panic!("getting-started.md, Command line: no line for `beam-edge {command}`")
            });
        let options = options_of(&help_of(&[command]));
        for (long, short) in &options {
            assert!(
                mentions(line, long) || short.as_deref().is_some_and(|s| mentions(line, s)),
                "getting-started.md, Command line: `beam-edge {command}` does not show {long}: {line}"
            );
        }
        for word in line.split(|c: char| c.is_whitespace() || "[]|".contains(c)) {
            if let Some(flag) = word.strip_prefix("--") {
                let flag = format!("--{flag}");
                assert!(
                    options.iter().any(|(l, _)| *l == flag),
                    "getting-started.md, Command line: `beam-edge {command}` shows {flag}, which it does not take"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Routes

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Listener {
    Public,
    Peer,
    Admin,
    Metrics,
}

impl Listener {
    fn heading(self) -> &'static str {
        match self {
            Listener::Public => "## Public listener",
            Listener::Peer => "## Peer listener",
            Listener::Admin => "## Admin listener",
            Listener::Metrics => "## Metrics listener",
        }
    }
}

/// A route: where, the method requested, the documented path, and a
/// concrete path to request (`{cid}` and `{payer}` filled in).
struct Route {
    listener: Listener,
    method: &'static str,
    documented: &'static str,
    request: &'static str,
}

const fn r(
    listener: Listener,
    method: &'static str,
    documented: &'static str,
    request: &'static str,
) -> Route {
    Route {
        listener,
        method,
        documented,
        request,
    }
}

/// Every route the edge answers. Kept in step with the routers by
/// [`router_path_literals`] and with `docs/src/routes.md` by the test below.
const ROUTES: &[Route] = &[
    r(
        Listener::Public,
        "GET",
        "/piece/<PieceCID>[/<name>]",
        "/piece/{cid}/clip.mp4",
    ),
    r(
        Listener::Public,
        "OPTIONS",
        "/piece/<PieceCID>[/<name>]",
        "/piece/{cid}",
    ),
    r(
        Listener::Public,
        "GET",
        "/asset/<id>[/<name>]",
        "/asset/{cid}",
    ),
    r(
        Listener::Public,
        "GET",
        "/beam/[<network>/]<payer>/<PieceCID>[/<name>]",
        "/beam/calibration/{payer}/{cid}",
    ),
    r(
        Listener::Public,
        "GET",
        "/beam/[<network>/]<payer>/asset/<id>[/<name>]",
        "/beam/{payer}/asset/{cid}",
    ),
    r(Listener::Public, "GET", "/piece", "/piece"),
    r(Listener::Public, "GET", "/beam/…", "/beam"),
    r(Listener::Public, "GET", "/", "/"),
    r(Listener::Public, "HEAD", "/index.html", "/index.html"),
    r(
        Listener::Public,
        "GET",
        "/player/player.js",
        "/player/player.js",
    ),
    r(
        Listener::Public,
        "GET",
        "/player/player.css",
        "/player/player.css",
    ),
    r(Listener::Public, "GET", "/healthz", "/healthz"),
    r(Listener::Public, "HEAD", "/readyz", "/readyz"),
    r(
        Listener::Peer,
        "GET",
        "/piece/<PieceCID>[/<name>]",
        "/piece/{cid}",
    ),
    r(Listener::Peer, "GET", "/readyz", "/readyz"),
    r(Listener::Peer, "GET", "/layer/<PieceCID>", "/layer/{cid}"),
    r(Listener::Metrics, "GET", "/metrics", "/metrics"),
    r(Listener::Admin, "GET", "/", "/"),
    r(Listener::Admin, "GET", "/index.html", "/index.html"),
    r(
        Listener::Admin,
        "GET",
        "/player/player.js",
        "/player/player.js",
    ),
    r(
        Listener::Admin,
        "GET",
        "/player/player.css",
        "/player/player.css",
    ),
    r(Listener::Admin, "GET", "/admin/cluster", "/admin/cluster"),
    r(Listener::Admin, "GET", "/admin/cache", "/admin/cache"),
    r(
        Listener::Admin,
        "GET",
        "/admin/cache/<cid>",
        "/admin/cache/{cid}",
    ),
    r(
        Listener::Admin,
        "DELETE",
        "/admin/cache/<cid>",
        "/admin/cache/{cid}",
    ),
    r(
        Listener::Admin,
        "POST",
        "/admin/cache/warm/<cid>",
        "/admin/cache/warm/{cid}",
    ),
    r(Listener::Admin, "POST", "/admin/uploads", "/admin/uploads"),
    r(
        Listener::Admin,
        "GET",
        "/admin/sign",
        "/admin/sign?path=/piece/{cid}&ttl=1h",
    ),
];

/// The request paths the routers compare with: string literals after `==`,
/// in `strip_prefix(` / `starts_with(`, or as `match` arms, in the non-test
/// code of the modules that route requests. `(literal, is_prefix, file)`.
fn router_path_literals() -> Vec<(String, bool, String)> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if p.is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                walk(&e.path(), out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p.to_path_buf());
        }
    }
    let mut files = Vec::new();
    for root in ["src/edge", "src/admin.rs", "src/admin", "src/metrics.rs"] {
        let p = repo().join(root);
        if p.exists() {
            walk(&p, &mut files);
        }
    }
    assert!(files.len() >= 5, "router files: {files:?}");
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let shown = f.strip_prefix(repo()).unwrap().display().to_string();
        for line in code.lines() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            let mut rest = line;
            while let Some(i) = rest.find("\"/") {
                let before = rest[..i].trim_end();
                let after = &rest[i + 1..];
                let Some(j) = after.find('"') else { break };
                let lit = &after[..j];
                let tail = after[j + 1..].trim_start();
                let prefix = before.ends_with("strip_prefix(") || before.ends_with("starts_with(");
                let exact = before.ends_with("==")
                    || ((before.is_empty() || before.ends_with('|'))
                        && (tail.starts_with("=>") || tail.starts_with('|')));
                // A request path is `/` or `/` and a name; other literals
                // (the Bad Bits list's `//<hash>` lines) are not routes.
                let is_path = lit == "/"
                    || lit[1..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
                if (prefix || exact) && is_path {
                    out.push((lit.to_string(), prefix, shown.clone()));
                }
                rest = &after[j + 1..];
            }
        }
    }
    out
}

#[test]
fn every_path_the_routers_match_is_a_listed_route() {
    let literals = router_path_literals();
    for (lit, prefix, file) in &literals {
        let listed = ROUTES.iter().any(|r| {
            let path = r.request.split('?').next().unwrap_or("");
            if *prefix {
                path.starts_with(lit.as_str()) && path.len() > lit.len()
            } else {
                path == lit
            }
        });
        assert!(
            listed,
            "{file} routes {lit:?}{}, which no entry of ROUTES in tests/docs.rs requests: add the route there and to docs/src/routes.md",
            if *prefix { "…" } else { "" }
        );
    }
    // The scan itself works: it finds routes every build has.
    for want in ["/healthz", "/admin/cache/warm/", "/metrics", "/piece/"] {
        assert!(
            literals.iter().any(|(l, _, _)| l == want),
            "the scan missed {want}: {literals:?}"
        );
    }
}

/// The route cells of `listener`'s table in routes.md: (methods, path).
fn documented_routes(listener: Listener) -> Vec<(Vec<String>, String)> {
    let text = read("docs/src/routes.md");
    let start = text
        .find(&format!("\n{}\n", listener.heading()))
        .unwrap_or_else(|| panic!("routes.md has no {:?}", listener.heading()));
    let section = &text[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let lines = prose_lines(&section[..end]);
    let mut out = Vec::new();
    for (_, c) in table_rows(&lines, &["route"]) {
        for span in code_spans(&c[0]) {
            let (methods, path) = match span.split_once(' ') {
                Some((m, p)) if m.chars().all(|c| c.is_ascii_uppercase() || c == '|') => {
                    (m.split('|').map(str::to_string).collect(), p.to_string())
                }
                _ => (Vec::new(), span.clone()),
            };
            if path.starts_with('/') {
                out.push((methods, path));
            }
        }
    }
    out
}

#[test]
fn every_route_is_in_the_routes_chapter_and_every_documented_route_is_listed() {
    for route in ROUTES {
        let documented = documented_routes(route.listener);
        let found = documented.iter().any(|(methods, path)| {
            path == route.documented
                && (methods.is_empty() || methods.iter().any(|m| m == route.method))
        });
        assert!(
            found
                || (route.method == "OPTIONS"
                    && documented.iter().any(|(_, p)| p == route.documented)),
            "docs/src/routes.md, {}: no row for {} {} (rows: {documented:?})",
            route.listener.heading(),
            route.method,
            route.documented
        );
    }
    for listener in [
        Listener::Public,
        Listener::Peer,
        Listener::Admin,
        Listener::Metrics,
    ] {
        for (_, path) in documented_routes(listener) {
            assert!(
                ROUTES
                    .iter()
                    .any(|r| r.listener == listener && r.documented == path),
                "docs/src/routes.md, {}: {path} is documented but tests/docs.rs ROUTES has no such route (is it real?)",
                listener.heading()
            );
        }
    }
}

#[test]
fn every_listed_route_is_answered_by_the_real_binary() {
    let beam = MockBeam::start();
    let data = mp4_like(300_000, 7);
    let cid = commp_of(&data).unwrap().to_string();
    beam.add_piece(&cid, data);
    let peer: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let edge = EdgeProcess::start_opts(EdgeOptions {
        upstream: beam_upstream(&beam, ""),
        extra: format!(
            "cluster:\n  enabled: true\n  self: a\n  peer_listen: \"{peer}\"\n  peers:\n    - {{ name: a, addr: \"{peer}\" }}\n"
        ),
        ..Default::default()
    });
    let addr = |l: Listener| match l {
        Listener::Public => edge.public,
        Listener::Peer => peer,
        Listener::Admin => edge.admin,
        Listener::Metrics => edge.metrics,
    };
    // What each listener answers for a path it does not route.
    let catch_all = |l: Listener| {
        let (status, _, body) = raw_get(addr(l), "/no/such/route", &[]).unwrap();
        assert_eq!(status, 404, "{l:?}");
        body
    };
    for route in ROUTES {
        let path = route
            .request
            .replace("{cid}", &cid)
            .replace("{payer}", PAYER);
        let (status, _, body) = raw_request(addr(route.listener), route.method, &path, &[])
            .unwrap_or_else(|e| panic!("{:?} {} {path}: {e}", route.listener, route.method));
        assert!(
            status != 404 || body != catch_all(route.listener),
            "{:?} {} {path}: the listener's catch-all 404, so {} is not a route: {}",
            route.listener,
            route.method,
            route.documented,
            String::from_utf8_lossy(&body)
        );
    }
}
