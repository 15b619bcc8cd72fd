//! Helpers shared by the crds integration tests.

#![allow(dead_code)] // each test file uses its own subset
#![allow(clippy::panic)] // helpers fail the test that calls them

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every manifest file under `examples/`, sorted.
pub fn example_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_root().join("examples"), &mut files);
    files.sort();
    files
}

/// Every object under `examples/`, with the file it came from.
pub fn example_objects() -> Vec<(PathBuf, Value)> {
    example_files()
        .into_iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let docs =
                machinist_crds::manifest::parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            docs.into_iter().map(move |doc| (file.clone(), doc))
        })
        .collect()
}

/// Is this object one of the machinist kinds?
pub fn is_machinist(object: &Value) -> bool {
    object["apiVersion"].as_str().is_some_and(|v| v.starts_with("machinist.dev/"))
}

/// The paths in `original` whose values are missing or different in `copy`: what a round trip
/// lost. Fields `copy` adds (defaults) are not losses.
pub fn losses(original: &Value, copy: &Value, path: &str) -> Vec<String> {
    match (original, copy) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .flat_map(|(key, value)| match b.get(key) {
                Some(other) => losses(value, other, &format!("{path}.{key}")),
                None => vec![format!("{path}.{key}")],
            })
            .collect(),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).enumerate().flat_map(|(i, (x, y))| losses(x, y, &format!("{path}[{i}]"))).collect()
        }
        (a, b) if a == b => Vec::new(),
        _ => vec![path.to_owned()],
    }
}
