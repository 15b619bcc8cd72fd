//! `POST /machines/{name}/report`: the agent's hardware report.
//!
//! In order, and nothing reaches the [`ReportSink`](crate::machines::ReportSink) unless every
//! step passes:
//! 1. `Authorization: Bearer <token>` must carry the machine's token (constant-time compare;
//!    a missing header, a wrong token and an unknown machine all get 401, alike);
//! 2. the body must fit the limit (`Content-Length` checked first, then while reading) → 413;
//! 3. the body must be a report (the contract's
//!    [`parse_report`](machinist_agent_protocol::report::parse_report)) → 400 saying what is wrong.
//!
//! Success is 204.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use machinist_agent_protocol::Endpoint;
use machinist_agent_protocol::report::parse_report;
use machinist_crds::machine::BootStepKind;

use super::Shared;

use crate::machines::HardwareReport;
use crate::timeline::StepRecord;

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub(super) fn reply(code: StatusCode, message: &str) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
}

pub(super) fn unauthorized() -> Response {
    let mut response = reply(StatusCode::UNAUTHORIZED, "a valid machine token is required");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Which credential a request must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Credential {
    /// The agent's token (`machinist.token`).
    Agent,
    /// The installed system's phone-home token.
    PhoneHome,
}

/// Whether the request's bearer token is the machine's `credential`.
pub(super) fn verified(state: &super::AppState, machine: &str, headers: &HeaderMap, credential: Credential) -> bool {
    bearer_token(headers).is_some_and(|token| match credential {
        Credential::Agent => state.source.verify_token(machine, token),
        Credential::PhoneHome => state.source.verify_phone_home(machine, token),
    })
}

/// Checks the machine's agent token and reads a body of at most `limit` bytes; the error is the
/// response to send (401, 413 or 400).
pub(super) async fn authorized_body(
    state: &super::AppState,
    machine: &str,
    what: &str,
    request: Request,
    limit: usize,
) -> Result<(HeaderMap, axum::body::Bytes), Response> {
    checked_body(state, machine, what, request, limit, Credential::Agent).await
}

/// [`authorized_body`] for either credential.
pub(super) async fn checked_body(
    state: &super::AppState,
    machine: &str,
    what: &str,
    request: Request,
    limit: usize,
    credential: Credential,
) -> Result<(HeaderMap, axum::body::Bytes), Response> {
    if !verified(state, machine, request.headers(), credential) {
        tracing::info!(%machine, what, "agent request refused: missing or wrong token");
        return Err(unauthorized());
    }
    read_limited(machine, what, request, limit).await
}

/// Reads a body of at most `limit` bytes (the caller checked the credential); the error is the
/// response to send (413 or 400).
pub(super) async fn read_limited(
    machine: &str,
    what: &str,
    request: Request,
    limit: usize,
) -> Result<(HeaderMap, axum::body::Bytes), Response> {
    let (parts, body) = request.into_parts();
    let too_large = || {
        tracing::info!(%machine, what, limit, "agent request refused: too large");
        reply(StatusCode::PAYLOAD_TOO_LARGE, &format!("{what} bodies are limited to {limit} bytes"))
    };
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(Body::new(body), limit).collect().await {
        Ok(collected) => Ok((parts.headers, collected.to_bytes())),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => {
            tracing::info!(%machine, what, %error, "agent request refused: failed to read the body");
            Err(reply(StatusCode::BAD_REQUEST, "failed to read the request body"))
        }
    }
}

pub(super) async fn receive(State(state): Shared, Path(machine): Path<String>, request: Request) -> Response {
    let limit = state.settings.report_limit;
    let body = match authorized_body(&state, &machine, Endpoint::Report.what(), request, limit).await {
        Ok((_, body)) => body,
        Err(response) => {
            state.counters.bump(&state.counters.reports_refused);
            return response;
        }
    };
    let items = match parse_report(&body) {
        Ok(report) => report.items,
        Err(error) => {
            state.counters.bump(&state.counters.reports_refused);
            tracing::info!(%machine, %error, "hardware report refused");
            return reply(StatusCode::BAD_REQUEST, &error.to_string());
        }
    };
    let count = items.len();
    let report = HardwareReport { items, received: jiff::Timestamp::now() };
    match state.sink.hardware_report(&machine, report).await {
        Ok(()) => {
            state.counters.bump(&state.counters.reports_accepted);
            tracing::info!(%machine, items = count, "hardware report received");
            if let Some(timeline) = &state.timeline {
                timeline.record(StepRecord::now(&machine, BootStepKind::HardwareReport, format!("{count} items")));
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => {
            tracing::error!(%machine, %error, "failed to record hardware report");
            reply(StatusCode::SERVICE_UNAVAILABLE, "failed to record the hardware report; try again")
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let headers = |value: &'static str| {
            let mut map = HeaderMap::new();
            map.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            map
        };
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
