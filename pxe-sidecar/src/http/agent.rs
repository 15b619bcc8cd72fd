//! What the agent sends besides its hardware report, authenticated like it (per-machine bearer
//! token; 401 without it):
//!
//! - `POST /machines/{name}/progress`, JSON `{"step": "partition", "message": "…", "level":
//!   "info"|"warning"|"error"}` (at most [`PROGRESS_LIMIT`] bytes) → a step on the machine's
//!   boot timeline, hence an Event on the Machine (`kubectl describe machine`; a Warning for
//!   `warning` and `error`) and an entry of `status.lastBoot`. 204.
//! - `POST /machines/{name}/log`, UTF-8 text (eDeploy's `UPLOAD_LOG`; at most
//!   [`HttpConfig::log_limit`](super::HttpConfig) bytes per upload) → appended to the
//!   ConfigMap `machinist-log-<machine>`, key `agent.log`, which keeps the newest
//!   [`LOG_KEEP`](crate::machines::LOG_KEEP) bytes:
//!   `kubectl get configmap machinist-log-<machine> -o jsonpath='{.data.agent\.log}'`. 204.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use machinist_crds::machine::BootStepKind;
use serde::Deserialize;

use super::Shared;
use super::report::{authorized_body, reply};
use crate::timeline::StepRecord;

/// Largest progress body.
pub const PROGRESS_LIMIT: usize = 4096;
/// Longest progress step name.
pub const STEP_MAX: usize = 63;
/// Longest progress message (bytes).
pub const MESSAGE_MAX: usize = 200;

/// How serious a progress report is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// Normal progress.
    #[default]
    Info,
    /// Something to look at; the install goes on.
    Warning,
    /// The step failed.
    Error,
}

/// A progress report.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// The step (`inventory`, `partition`, `install`…): letters, digits, `.`, `_`, `-`.
    pub step: String,
    /// What happened.
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
    #[error("invalid progress report: step {0:?} must be 1-63 letters, digits, '.', '_' or '-'")]
    Step(String),
    /// A message too long.
    #[error("invalid progress report: message is {0} bytes long, at most 200 are allowed")]
    MessageTooLong(usize),
}

/// Validates a progress body.
pub fn parse_progress(body: &[u8]) -> Result<Progress, ProgressError> {
    let progress: Progress = serde_json::from_slice(body).map_err(|e| ProgressError::Shape(e.to_string()))?;
    let step_ok = !progress.step.is_empty()
        && progress.step.len() <= STEP_MAX
        && progress.step.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !step_ok {
        return Err(ProgressError::Step(progress.step));
    }
    if progress.message.len() > MESSAGE_MAX {
        return Err(ProgressError::MessageTooLong(progress.message.len()));
    }
    Ok(progress)
}

/// Validates a log upload: UTF-8 text without NUL bytes.
pub fn parse_log(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the log is not UTF-8 text: {e}"))?;
    if text.contains('\0') {
        return Err("the log contains NUL bytes".into());
    }
    Ok(text.to_owned())
}

pub(super) async fn progress(State(state): Shared, Path(machine): Path<String>, request: Request) -> Response {
    let body = match authorized_body(&state, &machine, "progress", request, PROGRESS_LIMIT).await {
        Ok((_, body)) => body,
        Err(response) => return response,
    };
    let progress = match parse_progress(&body) {
        Ok(progress) => progress,
        Err(error) => {
            tracing::info!(%machine, %error, "progress report refused");
            return reply(StatusCode::BAD_REQUEST, &error.to_string());
        }
    };
    tracing::info!(%machine, step = %progress.step, level = ?progress.level, message = %progress.message, "agent progress");
    if let Some(timeline) = &state.timeline {
        let detail = if progress.message.is_empty() {
            progress.step.clone()
        } else {
            format!("{}: {}", progress.step, progress.message)
        };
        let mut step = StepRecord::now(&machine, BootStepKind::Progress, detail);
        step.warning = progress.level != Level::Info;
        timeline.record(step);
    }
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn log(State(state): Shared, Path(machine): Path<String>, request: Request) -> Response {
    let limit = state.settings.log_limit;
    let body = match authorized_body(&state, &machine, "log", request, limit).await {
        Ok((_, body)) => body,
        Err(response) => return response,
    };
    let text = match parse_log(&body) {
        Ok(text) => text,
        Err(error) => {
            tracing::info!(%machine, %error, "log upload refused");
            return reply(StatusCode::BAD_REQUEST, &error);
        }
    };
    let size = text.len();
    match state.sink.append_log(&machine, text).await {
        Ok(()) => {
            tracing::info!(%machine, bytes = size, "agent log received");
            if let Some(timeline) = &state.timeline {
                timeline.record(StepRecord::now(&machine, BootStepKind::LogUpload, format!("{size} bytes")));
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => {
            tracing::error!(%machine, %error, "failed to keep the agent log");
            reply(StatusCode::SERVICE_UNAVAILABLE, "failed to keep the log; try again")
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn logs_must_be_text() {
        assert_eq!(parse_log(b"ok\n").unwrap(), "ok\n");
        assert!(parse_log(b"\xff\xfe").unwrap_err().contains("not UTF-8"));
        assert!(parse_log(b"a\0b").unwrap_err().contains("NUL"));
    }
}
