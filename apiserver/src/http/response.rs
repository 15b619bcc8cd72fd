//! What the server answers: JSON bodies with `Warning` headers, errors as `Status` objects,
//! and streamed bodies (watches).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::semantics::errors::ApiError;

/// A JSON answer, with `Warning` headers.
pub fn json_response(code: StatusCode, value: &Value, warnings: &[String]) -> Response {
    let mut response = (code, [("content-type", "application/json")], value.to_string()).into_response();
    for warning in warnings {
        let text = format!("299 - {:?}", warning);
        if let Ok(header) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", header);
        }
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, [("content-type", "application/json")], self.to_status().to_string()).into_response()
    }
}

/// A body that streams lines sent on a channel.
pub fn streaming_body(receiver: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|bytes| (Ok::<_, Infallible>(bytes), receiver))
    });
    Body::from_stream(stream)
}
