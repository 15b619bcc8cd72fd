//! `POST /machines/{name}/progress`: one step of the agent's work, `{"step": "partition",
//! "message": "…", "level": "info"|"warning"|"error"}` (at most [`BODY_LIMIT`] bytes). The boot
//! services put it on the machine's boot timeline: an entry of `status.lastBoot` and an Event
//! (a Warning for `warning` and `error`).

use serde::{Deserialize, Serialize};

/// Largest progress body.
pub const BODY_LIMIT: usize = 4096;
/// Longest step name.
pub const STEP_MAX: usize = 63;
/// Longest message, in bytes.
pub const MESSAGE_MAX: usize = 200;

/// How serious a progress report is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// Normal progress.
    #[default]
    Info,
    /// Something to look at; the work goes on.
    Warning,
    /// The step failed.
    Error,
}

/// A progress report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// The step (`inventory`, `partition`, `install`…): 1 to [`STEP_MAX`] letters, digits, `.`,
    /// `_`, `-`.
    pub step: String,
    /// What happened, at most [`MESSAGE_MAX`] bytes.
    #[serde(default)]
    pub message: String,
    /// How serious.
    #[serde(default)]
    pub level: Level,
}

/// What is wrong with a progress report.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    /// Not JSON of the right shape.
    #[error("invalid progress report: {0}")]
    Shape(String),
    /// A bad step name.
    #[error("invalid progress report: step {0:?} must be 1-{STEP_MAX} letters, digits, '.', '_' or '-'")]
    Step(String),
    /// A message too long.
    #[error("invalid progress report: message is {0} bytes long, at most {MESSAGE_MAX} are allowed")]
    MessageTooLong(usize),
}

impl Progress {
    /// A report of `step`, its message cut to [`MESSAGE_MAX`] bytes (on a character boundary)
    /// so that a long error still gets through.
    pub fn new(step: impl Into<String>, message: &str, level: Level) -> Self {
        let mut end = message.len().min(MESSAGE_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Self { step: step.into(), message: message[..end].to_owned(), level }
    }

    /// The JSON body the agent sends.
    pub fn to_body(&self) -> Vec<u8> {
        // Strings and a unit enum always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks what the JSON shape alone does not.
    pub fn validate(&self) -> Result<(), ProgressError> {
        let step_ok = !self.step.is_empty()
            && self.step.len() <= STEP_MAX
            && self.step.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !step_ok {
            return Err(ProgressError::Step(self.step.clone()));
        }
        if self.message.len() > MESSAGE_MAX {
            return Err(ProgressError::MessageTooLong(self.message.len()));
        }
        Ok(())
    }
}

/// Reads and validates a progress body.
pub fn parse_progress(body: &[u8]) -> Result<Progress, ProgressError> {
    let progress: Progress = serde_json::from_slice(body).map_err(|e| ProgressError::Shape(e.to_string()))?;
    progress.validate()?;
    Ok(progress)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn progress_reports_are_validated() {
        let ok = parse_progress(br#"{"step": "partition", "message": "sda1", "level": "error"}"#).unwrap();
        assert_eq!((ok.step.as_str(), ok.message.as_str(), ok.level), ("partition", "sda1", Level::Error));
        assert_eq!(parse_progress(br#"{"step": "x"}"#).unwrap().level, Level::Info);
        assert!(matches!(parse_progress(br#"{"step": "a b"}"#), Err(ProgressError::Step(_))));
        assert!(matches!(parse_progress(br#"{"step": ""}"#), Err(ProgressError::Step(_))));
        let long = format!(r#"{{"step": "x", "message": "{}"}}"#, "m".repeat(201));
        assert_eq!(parse_progress(long.as_bytes()), Err(ProgressError::MessageTooLong(201)));
        assert!(matches!(parse_progress(br#"{"step": "x", "level": "fatal"}"#), Err(ProgressError::Shape(_))));
        assert!(matches!(parse_progress(br#"{"step": "x", "extra": 1}"#), Err(ProgressError::Shape(_))));
    }

    #[test]
    fn long_messages_are_cut_to_what_the_boot_services_accept() {
        // 150 two-byte characters: 300 bytes. Cut by characters (200) it would be refused.
        let message = "é".repeat(150);
        let progress = Progress::new("failed", &message, Level::Error);
        assert_eq!(progress.message.len(), MESSAGE_MAX);
        assert_eq!(parse_progress(&progress.to_body()).unwrap(), progress);
        // A character straddling the limit is left out whole.
        let odd = format!("a{}", "é".repeat(150));
        assert_eq!(Progress::new("x", &odd, Level::Info).message.len(), MESSAGE_MAX - 1);
        assert_eq!(Progress::new("x", "short", Level::Info).message, "short");
    }

    #[test]
    fn levels_are_spelled_in_lower_case_on_the_wire() {
        let body = Progress::new("inventory", "112 items", Level::Warning).to_body();
        assert_eq!(String::from_utf8(body).unwrap(), r#"{"step":"inventory","message":"112 items","level":"warning"}"#);
    }
}
