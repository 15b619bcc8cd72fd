//! `machinist import edeploy DIR`: reads an eDeploy configuration directory (the crate's only
//! I/O) and converts it with [`crate::edeploy::convert`].

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

pub use crate::edeploy::{ImportError, ImportResult};

/// Largest file read, in bytes.
pub const MAX_FILE_SIZE: u64 = crate::pyliteral::MAX_INPUT as u64;
/// Most directory entries looked at.
pub const MAX_FILES: usize = 10_000;

/// Reads `state`, `*.specs`, `*.cmdb` and `*.configure` of `dir` (other files are listed in the
/// notes, never read) and converts them.
pub fn import_edeploy_dir(dir: &Path) -> Result<ImportResult, ImportError> {
    let read_error =
        |path: &Path, e: std::io::Error| ImportError::Read { path: path.display().to_string(), message: e.to_string() };
    let mut files = BTreeMap::new();
    let mut others = Vec::new();
    for (count, entry) in std::fs::read_dir(dir).map_err(|e| read_error(dir, e))?.enumerate() {
        if count >= MAX_FILES {
            return Err(ImportError::Read {
                path: dir.display().to_string(),
                message: format!("more than {MAX_FILES} entries"),
            });
        }
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            others.push(entry.file_name().to_string_lossy().into_owned());
            continue;
        };
        let wanted = name == "state" || [".specs", ".cmdb", ".configure"].iter().any(|ext| name.ends_with(ext));
        if !wanted || !path.is_file() {
            others.push(name);
            continue;
        }
        files.insert(
            name,
            read_text(&path).map_err(|message| ImportError::Read { path: path.display().to_string(), message })?,
        );
    }
    if !files.contains_key("state") {
        return Err(ImportError::NoState(dir.display().to_string()));
    }
    let mut result = crate::edeploy::convert(&files)?;
    if !others.is_empty() {
        others.sort();
        result.notes.push(format!("not read: {}", others.join(", ")));
    }
    Ok(result)
}

fn read_text(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(format!("larger than {MAX_FILE_SIZE} bytes"));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))
}
