//! Talking to the boot services: the hardware report, progress steps and the log (the messages
//! of [`machinist_agent_protocol`]), each a POST with the machine's bearer token, retried with
//! jittered backoff while the boot services are unreachable or answer 5xx/408/429; any other
//! refusal (401 wrong token, 400, 413) is final.

use std::time::Duration;

use machinist_agent_protocol::Endpoint;
use machinist_agent_protocol::cmdline::Args;
use machinist_agent_protocol::install::{InstallReport, PlanResponse};
use machinist_agent_protocol::progress::{Level, Progress};
use machinist_agent_protocol::report::Report;

use crate::backoff::{Backoff, random_fraction};

/// A POST that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The boot services refused it; retrying would not help.
    #[error("{url} refused the request: HTTP {status}: {body}")]
    Refused {
        /// Where.
        url: String,
        /// The status.
        status: u16,
        /// What they said.
        body: String,
    },
    /// Every attempt failed.
    #[error("gave up on {url} after {attempts} attempts; last: {last}")]
    GaveUp {
        /// Where.
        url: String,
        /// How many.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// How many times a plan request answered 404 is tried again (see [`Sidecar::plan`]).
pub const PLAN_NOT_FOUND_ATTEMPTS: u32 = 5;

/// What to do after one attempt (pure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Delivered,
    /// Try again later.
    Retry(String),
    /// Give up now.
    Refused(u16),
}

/// Classifies an HTTP status.
pub fn outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry(format!("HTTP {status}")),
        other => Outcome::Refused(other),
    }
}

/// The boot services, as one machine's agent sees them.
#[derive(Debug)]
pub struct Sidecar {
    base: String,
    machine: String,
    token: String,
    backoff: Backoff,
    http: ureq::Agent,
    /// For downloads: no overall timeout (an image takes as long as it takes), but bounded
    /// connection and response waits.
    streaming: ureq::Agent,
}

impl Sidecar {
    /// The boot services of `args`, retrying as `backoff` says.
    pub fn new(args: &Args, backoff: Backoff) -> Self {
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let streaming = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: args.url.clone(),
            machine: args.machine.clone(),
            token: args.token.clone(),
            backoff,
            http,
            streaming,
        }
    }

    /// The Machine's name.
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// Sends the hardware report; `on_retry(attempt, why)` is told about each failed attempt.
    pub fn report(&self, report: &Report, on_retry: impl FnMut(u32, &str)) -> Result<(), SendError> {
        self.post(Endpoint::Report, &report.to_body(), self.backoff, on_retry)
    }

    /// Reports a step; a message longer than the boot services take is cut. Tried a few times
    /// only: progress is informative, and the agent must not stall on it.
    pub fn progress(&self, step: &str, message: &str, level: Level) -> Result<(), SendError> {
        let quick = Backoff { attempts: 3, ..self.backoff };
        self.post(Endpoint::Progress, &Progress::new(step, message, level).to_body(), quick, |_, _| {})
    }

    /// Fetches the install plan, retrying while the boot services are unreachable.
    ///
    /// A 404 ("no install to do") is tried again [`PLAN_NOT_FOUND_ATTEMPTS`] times: the boot
    /// services answer from a cache, which can lag a moment behind the operator's write that
    /// started the install.
    pub fn plan(&self) -> Result<PlanResponse, SendError> {
        let url = format!("{}{}", self.base, Endpoint::Plan.path(&self.machine));
        let mut response = self.get(&url, &format!("Bearer {}", self.token), self.backoff, PLAN_NOT_FOUND_ATTEMPTS)?;
        let body = response.body_mut().read_to_string().map_err(|e| SendError::GaveUp {
            url: url.clone(),
            attempts: 1,
            last: format!("failed to read the plan: {e}"),
        })?;
        serde_json::from_str(&body).map_err(|e| SendError::Refused {
            url,
            status: 200,
            body: format!("the plan is not what the agent understands: {e}"),
        })
    }

    /// Reports install progress. `Writing` steps are tried a few times only (the next one
    /// says more); the others are retried as long as the report.
    pub fn install_report(&self, report: &InstallReport) -> Result<(), SendError> {
        let backoff = match report.phase {
            machinist_agent_protocol::install::InstallPhase::Writing => Backoff { attempts: 3, ..self.backoff },
            _ => self.backoff,
        };
        self.post(Endpoint::Install, &report.to_body(), backoff, |_, _| {})
    }

    /// Starts downloading `url` (an image), retrying `attempts` times while it is unreachable
    /// or answers 5xx/408/429; the response body streams from the returned reader, with the
    /// `Content-Length` when the server sent one.
    pub fn download(&self, url: &str, attempts: u32) -> Result<(impl std::io::Read + use<>, Option<u64>), SendError> {
        let response = self.get(url, "", Backoff { attempts, ..self.backoff }, 0)?;
        let length =
            response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        Ok((response.into_body().into_with_config().limit(u64::MAX).reader(), length))
    }

    /// A GET, retried as `backoff` says; a 404 is retried `not_found_retries` times at most.
    fn get(
        &self,
        url: &str,
        authorization: &str,
        backoff: Backoff,
        not_found_retries: u32,
    ) -> Result<ureq::http::Response<ureq::Body>, SendError> {
        let mut last = String::new();
        let mut not_found = 0;
        for attempt in 0..backoff.attempts.max(1) {
            if attempt > 0 {
                std::thread::sleep(backoff.delay(attempt - 1, random_fraction()));
            }
            let mut request = self.streaming.get(url);
            if !authorization.is_empty() {
                request = request.header("Authorization", authorization);
            }
            let why = match request.call() {
                Ok(mut response) => match outcome(response.status().as_u16()) {
                    Outcome::Delivered => return Ok(response),
                    Outcome::Refused(404) if not_found < not_found_retries && attempt + 1 < backoff.attempts => {
                        not_found += 1;
                        let body = response.body_mut().read_to_string().unwrap_or_default();
                        format!("HTTP 404: {}", body.trim())
                    }
                    Outcome::Refused(status) => {
                        let body = response.body_mut().read_to_string().unwrap_or_default();
                        return Err(SendError::Refused { url: url.to_owned(), status, body: body.trim().to_owned() });
                    }
                    Outcome::Retry(why) => why,
                },
                Err(error) => error.to_string(),
            };
            tracing::warn!(url, attempt = attempt + 1, %why, "GET failed; retrying");
            last = why;
        }
        Err(SendError::GaveUp { url: url.to_owned(), attempts: backoff.attempts.max(1), last })
    }

    /// Uploads the agent's log (appended to the Machine's log ConfigMap).
    pub fn upload_log(&self, text: &str) -> Result<(), SendError> {
        let quick = Backoff { attempts: 5, ..self.backoff };
        self.post(Endpoint::Log, text.as_bytes(), quick, |_, _| {})
    }

    fn post(
        &self,
        endpoint: Endpoint,
        body: &[u8],
        backoff: Backoff,
        mut on_retry: impl FnMut(u32, &str),
    ) -> Result<(), SendError> {
        let url = format!("{}{}", self.base, endpoint.path(&self.machine));
        let mut last = String::new();
        for attempt in 0..backoff.attempts.max(1) {
            if attempt > 0 {
                std::thread::sleep(backoff.delay(attempt - 1, random_fraction()));
            }
            let sent = self
                .http
                .post(&url)
                .header("Authorization", &format!("Bearer {}", self.token))
                .header("Content-Type", endpoint.content_type())
                .send(body);
            let why = match sent {
                Ok(mut response) => match outcome(response.status().as_u16()) {
                    Outcome::Delivered => return Ok(()),
                    Outcome::Refused(status) => {
                        let body = response.body_mut().read_to_string().unwrap_or_default();
                        return Err(SendError::Refused { url, status, body: body.trim().to_owned() });
                    }
                    Outcome::Retry(why) => why,
                },
                Err(error) => error.to_string(),
            };
            on_retry(attempt + 1, &why);
            last = why;
        }
        Err(SendError::GaveUp { url, attempts: backoff.attempts.max(1), last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decide_retries() {
        assert_eq!(outcome(204), Outcome::Delivered);
        for status in [408, 429, 500, 503] {
            assert!(matches!(outcome(status), Outcome::Retry(_)), "{status}");
        }
        for status in [400, 401, 404, 413] {
            assert_eq!(outcome(status), Outcome::Refused(status));
        }
    }
}
