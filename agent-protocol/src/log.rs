//! `POST /machines/{name}/log`: the agent's log as UTF-8 text (eDeploy's `UPLOAD_LOG`), sent
//! when its work failed. The boot services append it to the ConfigMap `machinist-log-<machine>`.

/// Default limit of one upload in bytes; the boot services' `http.logLimit` changes it.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// What is wrong with a log upload.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// Not UTF-8.
    #[error("the log is not UTF-8 text: {0}")]
    NotText(std::str::Utf8Error),
    /// NUL bytes, which a ConfigMap's text cannot hold usefully.
    #[error("the log contains NUL bytes")]
    Nul,
}

/// Validates a log upload: UTF-8 text without NUL bytes.
pub fn parse_log(body: &[u8]) -> Result<&str, LogError> {
    let text = std::str::from_utf8(body).map_err(LogError::NotText)?;
    if text.contains('\0') {
        return Err(LogError::Nul);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn logs_must_be_text() {
        assert_eq!(parse_log(b"ok\n"), Ok("ok\n"));
        assert!(matches!(parse_log(b"\xff\xfe"), Err(LogError::NotText(_))));
        assert!(parse_log(b"\xff\xfe").map_err(|e| e.to_string()).unwrap_err().contains("not UTF-8"));
        assert_eq!(parse_log(b"a\0b"), Err(LogError::Nul));
    }
}
