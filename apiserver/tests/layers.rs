//! The layers of `src/` stay layers: a module uses only modules of its own layer or of lower
//! ones, and the modules of one layer form no cycle. The sibling crates `schema/` and `apply/`
//! are one layer each under their crate root: their modules form no cycle either.
//!
//! Modules name each other by `crate::` paths (`use crate::semantics::ops::Patch;`,
//! `crate::store::ResourceKey::new(…)`, groups `use crate::http::{list, watch};`); the only
//! `super::` allowed is a test module's `use super::*;`. Comments, doc links and string
//! literals are not imports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers of `src/`, lowest first: each module path belongs to the layer of its first
/// segment (`crate` is `lib.rs`).
const SERVER_LAYERS: &[(&str, &[&str])] = &[
    ("storage and watch history", &["store"]),
    ("request semantics", &["semantics"]),
    ("the server's own controllers", &["controllers"]),
    ("HTTP and discovery", &["http"]),
    ("start and stop", &["crate", "home"]),
];

#[test]
fn apiserver_modules_use_only_their_own_and_lower_layers() {
    let files = read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let problems = check(&files, SERVER_LAYERS, false);
    assert!(problems.is_empty(), "apiserver/src breaks its layers:\n{}", problems.join("\n"));
}

#[test]
fn schema_and_apply_modules_form_no_cycle() {
    for krate in ["schema", "apply"] {
        let files = read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join(krate).join("src"));
        // Items of the crate root (`MAX_DEPTH`, shared types) are the crate's own vocabulary.
        let problems = check(&files, &[("modules", &["*"]), ("crate root", &["crate"])], true);
        assert!(problems.is_empty(), "apiserver/{krate}/src has cycles:\n{}", problems.join("\n"));
    }
}

// The checker checks itself on small made-up crates.

fn files(sources: &[(&str, &str)]) -> Vec<(String, String)> {
    sources.iter().map(|(path, text)| ((*path).to_owned(), (*text).to_owned())).collect()
}

#[test]
fn an_import_from_a_higher_layer_is_reported_with_its_file_and_line() {
    let crate_files = files(&[
        ("lib.rs", "pub mod store;\npub mod http;\n"),
        (
            "store.rs",
            "// crate::http in a comment is no import\nfn f() {\n    let _ = crate::http::router::handle;\n}\n",
        ),
        ("http/mod.rs", "pub mod router;\n"),
        ("http/router.rs", "use crate::store::Store;\n"),
    ]);
    let problems = check(&crate_files, &[("storage", &["store"]), ("http", &["http"]), ("root", &["crate"])], false);
    assert_eq!(
        problems,
        [
            "src/store.rs:3: `crate::http::router::handle`: store (storage) must not use http::router (http, a higher layer)"
        ]
    );
}

#[test]
fn a_cycle_within_a_layer_is_reported_with_the_imports_that_close_it() {
    let crate_files = files(&[
        ("lib.rs", "pub mod semantics;\n"),
        ("semantics/mod.rs", "pub mod ops;\npub mod admission;\npub mod meta;\n"),
        ("semantics/ops.rs", "use crate::semantics::{admission::admit, meta};\n"),
        (
            "semantics/admission.rs",
            "use crate::semantics::ops::Request;\nconst S: &str = \"crate::semantics::meta\";\n",
        ),
        ("semantics/meta.rs", "pub fn now() {}\n"),
    ]);
    let problems = check(&crate_files, &[("semantics", &["semantics"]), ("root", &["crate"])], false);
    assert_eq!(
        problems,
        ["cycle in semantics: semantics::admission -> semantics::ops -> semantics::admission\n  \
             src/semantics/admission.rs:1: `crate::semantics::ops::Request`\n  \
             src/semantics/ops.rs:1: `crate::semantics::admission::admit`"]
    );
}

#[test]
fn modules_of_no_layer_and_super_paths_are_reported() {
    let crate_files = files(&[
        ("lib.rs", "pub mod store;\npub mod extra;\n"),
        ("store.rs", "#[cfg(test)]\nmod tests {\n    use super::*;\n}\n"),
        ("extra.rs", "use super::store::Store;\n"),
    ]);
    let problems = check(&crate_files, &[("storage", &["store"]), ("root", &["crate"])], false);
    assert_eq!(
        problems,
        [
            "src/extra.rs: module extra belongs to no layer: add it to the layers this test lists",
            "src/extra.rs:1: `super::store::Store`: name other modules by `crate::` paths (only `use super::*;` in a test module)",
        ]
    );
}

#[test]
fn literals_comments_and_lifetimes_are_not_code() {
    let text = "let a = 'x'; let b = '\\''; fn f<'a>(s: &'a str) {}\n/* crate::a\n */ let r = r#\"crate::b \"# ; let c = crate::c::d;\n";
    let cleaned = clean(text);
    assert_eq!(references(&cleaned), [(3, "crate::c::d".to_owned(), vec!["c".to_owned(), "d".to_owned()])]);
    assert_eq!(cleaned.lines().count(), text.lines().count());
}

// The checker.

/// Every `.rs` file under `dir`, by path relative to its parent (`src/http/watch.rs`), with
/// its text.
fn read_sources(dir: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `http/watch.rs` → `http::watch`, `http/mod.rs` → `http`, `lib.rs` → `crate`.
fn module_of(file: &str) -> String {
    let trimmed = file.trim_end_matches(".rs");
    match trimmed {
        "lib" | "main" => "crate".to_owned(),
        _ => trimmed.trim_end_matches("/mod").replace('/', "::"),
    }
}

/// One `crate::` path found in a module.
struct Import {
    file: String,
    line: usize,
    text: String,
    to: String,
}

/// The problems of a crate's sources: modules of no layer, imports from higher layers, and
/// cycles within a layer (each with the imports that make it). A layer's prefix `*` takes
/// every module no other layer names; with `ignore_root`, uses of the crate root's items are
/// not edges.
fn check(files: &[(String, String)], layers: &[(&str, &[&str])], ignore_root: bool) -> Vec<String> {
    let modules: BTreeSet<String> = files.iter().map(|(file, _)| module_of(file)).collect();
    let layer_of = |module: &str| -> Option<usize> {
        let first = module.split("::").next().unwrap_or(module);
        layers
            .iter()
            .position(|(_, prefixes)| prefixes.contains(&first))
            .or_else(|| (module != "crate").then(|| layers.iter().position(|(_, p)| p.contains(&"*"))).flatten())
    };
    let mut problems = Vec::new();
    let mut imports: BTreeMap<String, Vec<Import>> = BTreeMap::new();
    for (file, text) in files {
        let from = module_of(file);
        let from_layer = layer_of(&from);
        if from_layer.is_none() {
            problems
                .push(format!("src/{file}: module {from} belongs to no layer: add it to the layers this test lists"));
        }
        let cleaned = clean(text);
        for (line, text) in supers(&cleaned) {
            problems.push(format!(
                "src/{file}:{line}: `{text}`: name other modules by `crate::` paths (only `use super::*;` in a test module)"
            ));
        }
        let Some(from_layer) = from_layer else { continue };
        for (line, text, path) in references(&cleaned) {
            // The longest prefix of the path that is a module; else an item of the crate root.
            let to = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|candidate| modules.contains(candidate))
                .unwrap_or_else(|| "crate".to_owned());
            if to == from || (ignore_root && to == "crate") {
                continue;
            }
            let Some(to_layer) = layer_of(&to) else { continue };
            if to_layer > from_layer {
                problems.push(format!(
                    "src/{file}:{line}: `{text}`: {from} ({}) must not use {to} ({}, a higher layer)",
                    layers[from_layer].0, layers[to_layer].0
                ));
            } else if to_layer == from_layer {
                imports.entry(from.clone()).or_default().push(Import { file: file.clone(), line, text, to });
            }
        }
    }
    for cycle in cycles(&imports) {
        let layer = layer_of(&cycle.0[0]).map_or("?", |l| layers[l].0);
        let (path, members) = cycle;
        let mut report = format!("cycle in {layer}: {} -> {}", path.join(" -> "), path[0]);
        if members.len() > path.len() {
            report.push_str(&format!(" (one of the cycles among {})", members.join(", ")));
        }
        let cycle = path;
        for (i, from) in cycle.iter().enumerate() {
            let to = &cycle[(i + 1) % cycle.len()];
            if let Some(import) = imports[from].iter().find(|import| &import.to == to) {
                report.push_str(&format!("\n  src/{}:{}: `{}`", import.file, import.line, import.text));
            }
        }
        problems.push(report);
    }
    problems
}

/// One cycle through each strongly connected group of modules (Tarjan's algorithm, then a
/// shortest path around the group from its first module), with the group's members.
fn cycles(imports: &BTreeMap<String, Vec<Import>>) -> Vec<(Vec<String>, Vec<String>)> {
    let edges: BTreeMap<&str, BTreeSet<&str>> =
        imports.iter().map(|(from, list)| (from.as_str(), list.iter().map(|i| i.to.as_str()).collect())).collect();
    let nodes: BTreeSet<&str> =
        edges.iter().flat_map(|(from, to)| std::iter::once(*from).chain(to.iter().copied())).collect();

    struct Tarjan<'a> {
        edges: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        groups: Vec<Vec<&'a str>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for &next in self.edges.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut group = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    group.push(top);
                    if top == node {
                        break;
                    }
                }
                self.groups.push(group);
            }
        }
    }
    let mut tarjan = Tarjan {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for node in &nodes {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    let mut out = Vec::new();
    for group in tarjan.groups.into_iter().filter(|g| g.len() > 1) {
        let members: BTreeSet<&str> = group.iter().copied().collect();
        // Breadth-first from the group's first module back to itself, inside the group.
        let start = *members.iter().next().unwrap();
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut end = None;
        while let Some(node) = queue.pop_front() {
            for &next in edges.get(node).into_iter().flatten().filter(|n| members.contains(*n)) {
                if next == start {
                    end = Some(node);
                    queue.clear();
                    break;
                }
                if !previous.contains_key(next) {
                    previous.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        let mut path = vec![end.unwrap()];
        while *path.last().unwrap() != start {
            path.push(previous[path.last().unwrap()]);
        }
        path.reverse();
        out.push((path.into_iter().map(str::to_owned).collect(), members.into_iter().map(str::to_owned).collect()));
    }
    out.sort();
    out
}

/// The source with comments removed and the contents of string and character literals
/// blanked, line breaks kept (so line numbers stay right).
fn clean(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && !ident_char(chars.get(i.wrapping_sub(1)).copied().filter(|_| i > 0))
            && {
                let mut j = i + if c == 'b' { 2 } else { 1 };
                while chars.get(j) == Some(&'#') {
                    j += 1;
                }
                chars.get(j) == Some(&'"')
            }
        {
            // A raw string: r"…", r#"…"#, br"…".
            let mut j = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            out.push('"');
            while j < chars.len() {
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(chars[j]));
                j += 1;
            }
            out.push('"');
            i = j;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), or a lifetime ('a, 'static).
            let end = if next == Some('\\') {
                (i + 3..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.push_str("' '");
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The word `word` at `i` of `chars`, not part of a longer identifier (nor `$crate`).
fn word_at(chars: &[char], i: usize, word: &str) -> bool {
    let end = i + word.chars().count();
    chars[i..].iter().take(word.chars().count()).copied().eq(word.chars())
        && !ident_char(chars.get(end).copied())
        && (i == 0 || !(ident_char(Some(chars[i - 1])) || chars[i - 1] == '$'))
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

fn line_of(chars: &[char], i: usize) -> usize {
    1 + chars[..i].iter().filter(|c| **c == '\n').count()
}

/// Every `crate::…` path of cleaned source: its line, its text, and its segments after
/// `crate` (a group `crate::a::{b, c::d}` gives `a::b` and `a::c::d`; `self` in a group is the
/// group's prefix).
fn references(cleaned: &str) -> Vec<(usize, String, Vec<String>)> {
    let chars: Vec<char> = cleaned.chars().collect();
    let mut out = Vec::new();
    for i in 0..chars.len() {
        if !word_at(&chars, i, "crate") {
            continue;
        }
        let after = skip_space(&chars, i + 5);
        if !(chars.get(after) == Some(&':') && chars.get(after + 1) == Some(&':')) {
            continue;
        }
        let mut paths = Vec::new();
        use_tree(&chars, after + 2, Vec::new(), &mut paths);
        for path in paths {
            out.push((line_of(&chars, i), format!("crate::{}", path.join("::")), path));
        }
    }
    out
}

/// Parses a path or use tree at `i` below `prefix`; returns where it ends.
fn use_tree(chars: &[char], i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut i = skip_space(chars, i);
    match chars.get(i) {
        Some('{') => {
            i += 1;
            loop {
                i = skip_space(chars, i);
                match chars.get(i) {
                    None => return i,
                    Some('}') => return i + 1,
                    Some(',') => i += 1,
                    Some(_) => {
                        let end = use_tree(chars, i, prefix.clone(), out);
                        i = if end == i { i + 1 } else { end };
                    }
                }
            }
        }
        Some('*') => {
            out.push(prefix);
            i + 1
        }
        _ => {
            let start = i;
            while ident_char(chars.get(i).copied()) {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            if ident.is_empty() {
                if !prefix.is_empty() {
                    out.push(prefix);
                }
                return i;
            }
            let mut path = prefix;
            if ident != "self" {
                path.push(ident);
            }
            let after = skip_space(chars, i);
            if chars.get(after) == Some(&':') && chars.get(after + 1) == Some(&':') {
                return use_tree(chars, after + 2, path, out);
            }
            out.push(path);
            if word_at(chars, after, "as") {
                let mut j = skip_space(chars, after + 2);
                while ident_char(chars.get(j).copied()) {
                    j += 1;
                }
                return j;
            }
            i
        }
    }
}

/// `super::` paths other than `use super::*;`, with their line and text.
fn supers(cleaned: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = cleaned.chars().collect();
    let mut out = Vec::new();
    for i in 0..chars.len() {
        if !word_at(&chars, i, "super") {
            continue;
        }
        let after = skip_space(&chars, i + 5);
        if !(chars.get(after) == Some(&':') && chars.get(after + 1) == Some(&':')) {
            continue;
        }
        let rest = skip_space(&chars, after + 2);
        if chars.get(rest) == Some(&'*') {
            continue;
        }
        let mut paths = Vec::new();
        use_tree(&chars, after + 2, Vec::new(), &mut paths);
        for path in paths {
            out.push((line_of(&chars, i), format!("super::{}", path.join("::"))));
        }
    }
    out
}
