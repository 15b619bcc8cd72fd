//! `POST /machines/{name}/report`: the agent's hardware report.
//!
//! In order, and nothing reaches the [`ReportSink`](crate::machines::ReportSink) unless every
//! step passes:
//! 1. `Authorization: Bearer <token>` must carry the machine's token (constant-time compare;
//!    a missing header, a wrong token and an unknown machine all get 401, alike);
//! 2. the body must fit the limit (`Content-Length` checked first, then while reading) → 413;
//! 3. the body must be a report ([`parse_report`]) → 400 saying what is wrong.
//!
//! Success is 204.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use machinist_crds::common::{ITEM_ELEMENT_MAX_LENGTH, Quad};
use serde::Deserialize;

use super::Shared;
use machinist_crds::machine::BootStepKind;

use crate::machines::HardwareReport;
use crate::timeline::StepRecord;

/// Most items a report may carry (as `status.hardware.items` allows).
pub const MAX_ITEMS: usize = 8192;

/// What is wrong with a report body.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not JSON of the report's shape.
    #[error("invalid hardware report: {0}")]
    Shape(String),
    /// No items.
    #[error("invalid hardware report: items is empty")]
    Empty,
    /// Too many items.
    #[error("invalid hardware report: {count} items, at most {MAX_ITEMS} are allowed")]
    TooManyItems {
        /// How many were sent.
        count: usize,
    },
    /// An element longer than [`ITEM_ELEMENT_MAX_LENGTH`] bytes.
    #[error(
        "invalid hardware report: items[{index}] element {element} is {length} bytes long, at most {ITEM_ELEMENT_MAX_LENGTH} are allowed"
    )]
    ElementTooLong {
        /// Which item.
        index: usize,
        /// Which element (0 class, 1 type, 2 name, 3 value).
        element: usize,
        /// Its length.
        length: usize,
    },
}

/// The report as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    items: Vec<Quad>,
}

/// Validates a report body: `{"items": [[class, type, name, value], ...]}` of strings, between
/// 1 and [`MAX_ITEMS`] items, each element at most [`ITEM_ELEMENT_MAX_LENGTH`] bytes.
pub fn parse_report(body: &[u8]) -> Result<Vec<Quad>, ReportError> {
    let wire: Wire = serde_json::from_slice(body).map_err(|e| ReportError::Shape(e.to_string()))?;
    if wire.items.is_empty() {
        return Err(ReportError::Empty);
    }
    if wire.items.len() > MAX_ITEMS {
        return Err(ReportError::TooManyItems { count: wire.items.len() });
    }
    for (index, item) in wire.items.iter().enumerate() {
        for (element, value) in item.elements().iter().enumerate() {
            if value.len() > ITEM_ELEMENT_MAX_LENGTH {
                return Err(ReportError::ElementTooLong { index, element, length: value.len() });
            }
        }
    }
    Ok(wire.items)
}

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

fn unauthorized() -> Response {
    let mut response = reply(StatusCode::UNAUTHORIZED, "a valid machine token is required");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Checks the machine's token and reads a body of at most `limit` bytes; the error is the
/// response to send (401, 413 or 400).
pub(super) async fn authorized_body(
    state: &super::AppState,
    machine: &str,
    what: &str,
    request: Request,
    limit: usize,
) -> Result<(HeaderMap, axum::body::Bytes), Response> {
    let (parts, body) = request.into_parts();
    let verified = bearer_token(&parts.headers).is_some_and(|token| state.source.verify_token(machine, token));
    if !verified {
        tracing::info!(%machine, what, "agent request refused: missing or wrong token");
        return Err(unauthorized());
    }
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
    let body = match authorized_body(&state, &machine, "hardware report", request, limit).await {
        Ok((_, body)) => body,
        Err(response) => {
            state.counters.bump(&state.counters.reports_refused);
            return response;
        }
    };
    let items = match parse_report(&body) {
        Ok(items) => items,
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
    fn reports_are_validated() {
        let items =
            parse_report(br#"{"items": [["system","product","vendor","ACME"],["cpu","logical","number","8"]]}"#)
                .unwrap();
        assert_eq!(items[1], Quad::new("cpu", "logical", "number", "8"));
        let shape = |body: &str| match parse_report(body.as_bytes()) {
            Err(ReportError::Shape(message)) => message,
            other => panic!("{body}: {other:?}"),
        };
        assert!(shape(r#"{"items": [["a","b","c"]]}"#).contains("exactly four elements"));
        assert!(shape(r#"{"items": [["a","b","c","d","e"]]}"#).contains("exactly four elements"));
        assert!(shape(r#"{"items": [["a","b","c",4]]}"#).contains("expected a string"));
        assert!(shape(r#"{"items": [["a","b","c","d"]], "extra": 1}"#).contains("unknown field `extra`"));
        assert!(shape(r#"{}"#).contains("missing field `items`"));
        assert!(shape("not json").contains("expected"));
        assert_eq!(parse_report(br#"{"items": []}"#), Err(ReportError::Empty));
        let long =
            format!(r#"{{"items": [["a","b","c","d"],["a","b","c","{}"]]}}"#, "x".repeat(ITEM_ELEMENT_MAX_LENGTH + 1));
        assert_eq!(
            parse_report(long.as_bytes()),
            Err(ReportError::ElementTooLong { index: 1, element: 3, length: ITEM_ELEMENT_MAX_LENGTH + 1 })
        );
        let many = format!(r#"{{"items": [{}]}}"#, vec![r#"["a","b","c","d"]"#; MAX_ITEMS + 1].join(","));
        assert_eq!(parse_report(many.as_bytes()), Err(ReportError::TooManyItems { count: MAX_ITEMS + 1 }));
    }

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
