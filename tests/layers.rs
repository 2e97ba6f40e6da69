//! The layers of ARCHITECTURE.md, held against the code: no two files import each other
//! in a circle, and the pure layers (`dyno`, `plan`, the supervisor's core and its
//! attach rules) import nothing from a layer that does I/O (`os`, `logs`, `control`,
//! `router`, `config`, ...).
//!
//! Read from the sources' `use` lines and `crate::`/`super::` paths, so moving a type
//! into the wrong module fails here, not in a review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path: `["supervisor", "core"]`.
type Module = Vec<String>;

/// What each pure layer may import (module paths by prefix); everything else is refused.
const PURE: &[(&str, &[&str])] = &[
    ("dyno", &["dyno"]),
    ("plan", &["dyno", "plan"]),
    (
        "supervisor::core",
        &[
            "dyno",
            "plan",
            "supervisor::core",
            "supervisor::event",
            "supervisor::input",
            "supervisor::outcome",
            "supervisor::restart",
        ],
    ),
    (
        "supervisor::input",
        &[
            "dyno",
            "plan",
            "supervisor::event",
            "supervisor::input",
            "supervisor::outcome",
        ],
    ),
    (
        "supervisor::event",
        &["dyno", "plan", "supervisor::event", "supervisor::outcome"],
    ),
    (
        "supervisor::outcome",
        &["dyno", "plan", "supervisor::outcome"],
    ),
    (
        "supervisor::attach",
        &[
            "dyno",
            "plan",
            "supervisor::attach",
            "supervisor::core",
            "supervisor::input",
        ],
    ),
    ("supervisor::restart", &["supervisor::restart"]),
];

#[test]
fn the_pure_layers_import_no_io_layer() {
    let graph = graph();
    let mut wrong = Vec::new();
    for (file, imports) in &graph.imports {
        let module = &graph.modules[file];
        let Some((layer, allowed)) = PURE.iter().find(|(layer, _)| starts_with(module, layer))
        else {
            continue;
        };
        for import in imports {
            // An ancestor is the file's own module seen from an inline `mod tests`
            // (`use super::*`).
            let ancestor = module.starts_with(import);
            if !ancestor && !allowed.iter().any(|a| starts_with(import, a)) {
                wrong.push(format!(
                    "{} ({layer}) imports crate::{}",
                    file.display(),
                    import.join("::")
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The check reads what it should: the core is there, and imports the plan.
    let core = Path::new("src/supervisor/core.rs");
    assert!(graph.imports[core].iter().any(|m| starts_with(m, "plan")));
}

/// Crates that run tasks or read /proc: not even named in a pure layer.
const RUNTIME_CRATES: &[&str] = &["tokio", "procfs", "signal_hook", "crossterm"];

/// Crates and paths that do I/O, run tasks or spawn processes: none of them in a pure layer.
const RUNTIME_ONLY: &[&str] = &[
    "tokio::",
    "procfs::",
    "std::process",
    "Command::new",
    "std::fs::",
    "std::net::TcpStream",
    "std::thread",
];

#[test]
fn the_pure_layers_use_no_runtime_crate_nor_spawn_anything() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = graph();
    let mut wrong = Vec::new();
    for file in graph.modules.keys() {
        let module = &graph.modules[file];
        if !PURE.iter().any(|(layer, _)| starts_with(module, layer)) {
            continue;
        }
        let text = std::fs::read_to_string(root.join(file)).expect("a readable source file");
        // The file's tests may use what they like.
        let code = code_only(&text);
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        for used in RUNTIME_ONLY {
            if code.contains(used) {
                wrong.push(format!("{} uses {used}", file.display()));
            }
        }
        // A crate named however it is (`use tokio as _;`, `tokio::spawn`, `::tokio`).
        let words: BTreeSet<&str> = code
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .collect();
        for name in RUNTIME_CRATES {
            if words.contains(name) {
                wrong.push(format!("{} names the crate {name}", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let graph = graph();
    // File -> files it imports, a module's own parts (parent or child) aside.
    let mut edges: BTreeMap<&Path, BTreeSet<&Path>> = BTreeMap::new();
    for (file, imports) in &graph.imports {
        let from = &graph.modules[file];
        let targets = edges.entry(file.as_path()).or_default();
        for import in imports {
            let Some(to) = graph.file_of(import) else {
                continue;
            };
            let to_module = &graph.modules[to];
            if to_module.starts_with(from) || from.starts_with(to_module) {
                continue;
            }
            targets.insert(to.as_path());
        }
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for &start in edges.keys() {
        let mut path = Vec::new();
        visit(start, &edges, &mut path, &mut done, &mut circles);
    }
    assert!(
        circles.is_empty(),
        "files that import each other in a circle:\n{}",
        circles.join("\n")
    );
    assert!(edges.len() > 30, "only {} files read", edges.len());
}

/// A folder is a module: the node a file belongs to is its folder's module, or its own
/// for a file at the crate's root (`cli`, `errors`) and for the root file of a folder
/// (`supervisor/core.rs` with `supervisor/core/`, `control/mod.rs`).
fn node_of(file: &Path) -> Module {
    let module = module_of(file);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let folder_root = file.file_stem().is_some_and(|s| s == "mod")
        || root.join(file.with_extension("")).is_dir()
        || module.len() <= 1;
    match folder_root {
        true => module,
        false => module[..module.len() - 1].to_vec(),
    }
}

/// Node -> nodes it imports from, its own ancestors and descendants aside (a folder's
/// root file and the files below it are one module seen from two sides).
fn node_edges(graph: &Graph) -> BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>> {
    let mut edges: BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>> = BTreeMap::new();
    for (file, imports) in &graph.imports {
        let from = node_of(file);
        if from.is_empty() {
            continue;
        }
        let targets = edges.entry(from.clone()).or_default();
        for import in imports {
            let Some(to_file) = graph.file_of(import) else {
                continue;
            };
            let to = node_of(to_file);
            if to.is_empty() || to.starts_with(&from) || from.starts_with(&to) {
                continue;
            }
            targets.entry(to).or_default().insert(format!(
                "{} uses crate::{}",
                file.display(),
                import.join("::")
            ));
        }
    }
    edges
}

/// Module imports that still close a circle, each `from -> to`: none. The test fails on
/// any that does (and, were one listed, on one listed that no longer does).
const CIRCLES_LEFT: &[&str] = &[];

/// The layers of ARCHITECTURE.md's picture, top first; a module imports only from its
/// own layer or those below it.
const LAYERS: &[&[&str]] = &[
    &["cmd", "cli", "errors"],
    &["export"],
    &["supervisor::runtime"],
    &["dashboard", "metrics"],
    &["control::server"],
    &["control"],
    &["config", "config::settings", "scheduler"],
    &["supervisor", "supervisor::core", "supervisor::event"],
    &["logs", "logs::drains", "router", "os", "http", "seats"],
    &["plan"],
    &["dyno"],
];

/// Imports that still point up the layers, each `from -> to`: the same rule as
/// `CIRCLES_LEFT`. None: `start`'s settings are `config::settings::args`, which `cli`
/// flattens.
const UPWARD_LEFT: &[&str] = &[];

/// Whether `to` reaches `from` through the edges: `from -> to` is then on a circle.
fn reaches(
    edges: &BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>>,
    to: &Module,
    from: &Module,
) -> bool {
    let mut seen = BTreeSet::new();
    let mut next = vec![to];
    while let Some(node) = next.pop() {
        if node == from {
            return true;
        }
        if seen.insert(node) {
            next.extend(edges.get(node).into_iter().flat_map(|t| t.keys()));
        }
    }
    false
}

/// The arrows of `edges` that `keep` picks, as `from -> to`, each with one import that
/// makes it.
fn arrows(
    edges: &BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>>,
    keep: impl Fn(&Module, &Module) -> bool,
) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (from, targets) in edges {
        for (to, why) in targets {
            if keep(from, to) {
                found.insert(
                    format!("{} -> {}", from.join("::"), to.join("::")),
                    why.iter().next().cloned().unwrap_or_default(),
                );
            }
        }
    }
    found
}

/// `found` against `left`: every arrow new, and every one of `left` no longer there.
fn against(found: &BTreeMap<String, String>, left: &[&str]) -> Vec<String> {
    let mut wrong: Vec<String> = found
        .iter()
        .filter(|(arrow, _)| !left.contains(&arrow.as_str()))
        .map(|(arrow, why)| format!("new: {arrow} ({why})"))
        .collect();
    wrong.extend(
        left.iter()
            .filter(|arrow| !found.contains_key(**arrow))
            .map(|arrow| format!("gone, take it off the list: {arrow}")),
    );
    wrong
}

#[test]
fn no_new_module_imports_close_a_circle() {
    let graph = graph();
    let edges = node_edges(&graph);
    assert!(edges.len() > 15, "only {} modules read", edges.len());
    let circling = arrows(&edges, |from, to| reaches(&edges, to, from));
    let wrong = against(&circling, CIRCLES_LEFT);
    assert!(
        wrong.is_empty(),
        "module imports that close a circle (a folder is a module):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_new_module_imports_point_up_the_layers() {
    let graph = graph();
    let edges = node_edges(&graph);
    let layer = |module: &Module| {
        let name = module.join("::");
        LAYERS
            .iter()
            .position(|layer| layer.contains(&name.as_str()))
    };
    // Every module is in the picture.
    let missing: Vec<String> = edges
        .keys()
        .filter(|m| layer(m).is_none())
        .map(|m| m.join("::"))
        .collect();
    assert!(missing.is_empty(), "modules in no layer: {missing:?}");
    let upward = arrows(&edges, |from, to| layer(to) < layer(from));
    let wrong = against(&upward, UPWARD_LEFT);
    assert!(
        wrong.is_empty(),
        "module imports that point up the layers:\n{}",
        wrong.join("\n")
    );
}

/// Depth-first search; a file met again on the current path closes a circle.
fn visit<'a>(
    file: &'a Path,
    edges: &BTreeMap<&'a Path, BTreeSet<&'a Path>>,
    path: &mut Vec<&'a Path>,
    done: &mut BTreeSet<&'a Path>,
    circles: &mut Vec<String>,
) {
    if let Some(at) = path.iter().position(|&p| p == file) {
        let circle: Vec<String> = path[at..]
            .iter()
            .chain([&file])
            .map(|p| p.display().to_string())
            .collect();
        circles.push(circle.join(" -> "));
        return;
    }
    if !done.insert(file) {
        return;
    }
    path.push(file);
    for &next in edges.get(file).into_iter().flatten() {
        visit(next, edges, path, done, circles);
    }
    path.pop();
}

struct Graph {
    /// Each source file's module path.
    modules: BTreeMap<PathBuf, Module>,
    /// Each source file's imports within the crate, as module paths (maybe into an item).
    imports: BTreeMap<PathBuf, BTreeSet<Module>>,
}

impl Graph {
    /// The file that defines the longest module prefix of `path`.
    fn file_of(&self, path: &Module) -> Option<&PathBuf> {
        (1..=path.len()).rev().find_map(|n| {
            self.modules
                .iter()
                .find(|(_, m)| m.as_slice() == &path[..n])
                .map(|(f, _)| f)
        })
    }
}

fn starts_with(module: &Module, prefix: &str) -> bool {
    let prefix: Vec<&str> = prefix.split("::").collect();
    module.len() >= prefix.len() && module.iter().zip(&prefix).all(|(a, b)| a == b)
}

fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect(&root.join("src"), &mut files);
    let mut modules = BTreeMap::new();
    let mut imports = BTreeMap::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .expect("under the crate")
            .to_path_buf();
        let module = module_of(&relative);
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let found = paths_in(&code_only(&text), &module);
        modules.insert(relative.clone(), module);
        imports.insert(relative, found);
    }
    Graph { modules, imports }
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// `src/supervisor/core/control.rs` -> `supervisor::core::control`; `mod.rs`, `lib.rs`
/// and `main.rs` name their folder's module.
fn module_of(file: &Path) -> Module {
    let mut parts: Vec<String> = file
        .with_extension("")
        .components()
        .skip(1)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The text without comments, so a comment naming a module is no import.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::...` and `super::...` path, braces of `use` lines expanded, resolved to
/// module paths from the crate's root.
fn paths_in(code: &str, module: &Module) -> BTreeSet<Module> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start).map(|i| from + i) {
            from = at + start.len();
            let before = at.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            let base = match start {
                "crate::" => Vec::new(),
                // From a file, `super` is its parent module.
                _ => module[..module.len().saturating_sub(1)].to_vec(),
            };
            for path in expand(&code[from..]) {
                let mut full = base.clone();
                full.extend(path);
                found.insert(full);
            }
        }
    }
    found
}

/// The paths after `crate::`: `a::b::C`, or `a::{b, c::D}` expanded; lower-case segments
/// only (types and functions end a module path).
fn expand(rest: &str) -> Vec<Module> {
    let mut head = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let mut segment = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            'a'..='z' | '0'..='9' | '_' => segment.push(c),
            ':' if chars.peek().is_some_and(|&(_, n)| n == ':') => {
                chars.next();
                head.push(std::mem::take(&mut segment));
            }
            '{' => {
                let inner = &rest[i + 1..];
                let end = closing(inner);
                return split_top(&inner[..end])
                    .into_iter()
                    .flat_map(|part| {
                        let part = part.trim();
                        let mut paths = match part {
                            "self" | "" => vec![Vec::new()],
                            _ => expand(part),
                        };
                        for p in &mut paths {
                            p.splice(0..0, head.iter().cloned());
                        }
                        paths
                    })
                    .collect();
            }
            _ => break,
        }
    }
    if !segment.is_empty() {
        head.push(segment);
    }
    vec![head]
}

/// Where the brace that closes an opened one is.
fn closing(text: &str) -> usize {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

/// Splits at commas outside braces.
fn split_top(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut from) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[from..]);
    parts
}
