//! What the agent sends besides its hardware report, authenticated like it (per-machine bearer
//! token; 401 without it):
//!
//! - `POST /machines/{name}/progress`, JSON `{"step": "partition", "message": "…", "level":
//!   "info"|"warning"|"error"}` (the contract's [`Progress`], at most
//!   [`BODY_LIMIT`](machinist_agent_protocol::progress::BODY_LIMIT) bytes) → a step on the
//!   machine's boot timeline, hence an Event on the Machine (`kubectl describe machine`; a
//!   Warning for `warning` and `error`) and an entry of `status.lastBoot`. 204.
//! - `POST /machines/{name}/log`, UTF-8 text (eDeploy's `UPLOAD_LOG`; at most
//!   [`HttpConfig::log_limit`](super::HttpConfig) bytes per upload) → appended to the
//!   ConfigMap `machinist-log-<machine>`, key `agent.log`, which keeps the newest
//!   [`LOG_KEEP`](crate::machines::LOG_KEEP) bytes:
//!   `kubectl get configmap machinist-log-<machine> -o jsonpath='{.data.agent\.log}'`. 204.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use machinist_agent_protocol::Endpoint;
use machinist_agent_protocol::log::parse_log;
use machinist_agent_protocol::progress::{self, Level, parse_progress};
use machinist_crds::machine::BootStepKind;

use super::Shared;
use super::report::{authorized_body, reply};
use crate::timeline::StepRecord;

pub(super) async fn progress(State(state): Shared, Path(machine): Path<String>, request: Request) -> Response {
    let body = match authorized_body(&state, &machine, Endpoint::Progress.what(), request, progress::BODY_LIMIT).await {
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
    let body = match authorized_body(&state, &machine, Endpoint::Log.what(), request, limit).await {
        Ok((_, body)) => body,
        Err(response) => return response,
    };
    let text = match parse_log(&body) {
        Ok(text) => text,
        Err(error) => {
            tracing::info!(%machine, %error, "log upload refused");
            return reply(StatusCode::BAD_REQUEST, &error.to_string());
        }
    };
    let size = text.len();
    match state.sink.append_log(&machine, text.to_owned()).await {
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
