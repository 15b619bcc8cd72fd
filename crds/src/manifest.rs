//! Reading manifests: YAML (or JSON) files holding one or more objects.

use serde_json::Value;

/// Largest manifest file read, so a hostile or mistaken input cannot exhaust memory.
pub const MAX_MANIFEST_BYTES: usize = 8 * 1024 * 1024;

/// A manifest that could not be read as YAML objects.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML.
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// The text is larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {0} bytes, more than the {MAX_MANIFEST_BYTES} allowed")]
    TooLarge(usize),
    /// A document is not a mapping.
    #[error("document {index} is not an object (found {found})")]
    NotAnObject {
        /// Position of the document in the file, from 1.
        index: usize,
        /// What was found.
        found: &'static str,
    },
}

/// Reads every object of a YAML stream (documents separated by `---`), skipping empty
/// documents.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge(text.len()));
    }
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    documents
        .into_iter()
        .enumerate()
        .filter(|(_, document)| !document.is_null())
        .map(|(i, document)| match document {
            Value::Object(_) => Ok(document),
            other => Err(ManifestError::NotAnObject { index: i + 1, found: type_name(&other) }),
        })
        .collect()
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_several_documents_and_skips_empty_ones() -> Result<(), ManifestError> {
        let docs = parse_documents("---\na: 1\n---\n---\nb: two\n")?;
        assert_eq!(docs, vec![serde_json::json!({"a": 1}), serde_json::json!({"b": "two"})]);
        Ok(())
    }

    #[test]
    fn rejects_scalars_bad_yaml_and_huge_input() {
        assert!(matches!(parse_documents("a: 1\n---\n- x\n"), Err(ManifestError::NotAnObject { index: 2, .. })));
        assert!(matches!(parse_documents("a: [1, 2\n"), Err(ManifestError::Yaml(_))));
        let huge = "#".repeat(MAX_MANIFEST_BYTES + 1);
        assert!(matches!(parse_documents(&huge), Err(ManifestError::TooLarge(_))));
    }
}
