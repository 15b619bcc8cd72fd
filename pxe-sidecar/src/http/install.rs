//! The install, as the boot services serve and record it (the contract is
//! [`machinist_agent_protocol::install`]):
//!
//! - `GET /machines/{name}/plan` (agent token): the plan the operator wrote in `status.install`,
//!   its attempt, and the phone-home URL and token (the token is created on first use and kept
//!   in the machine's token Secret, key `phoneHome`), and the NoCloud seed ([`nocloud`]). 404
//!   unless the machine is `Provisioning`; 422 when the Role's templates do not render, after
//!   failing the install with the reason.
//! - `POST /machines/{name}/install` (agent token): a progress report → `status.installProgress`
//!   and a boot timeline step. 409 when it is about another attempt or goes back
//!   ([`follows`]).
//! - `POST /machines/{name}/phone-home` (phone-home token, as a bearer token or `?token=`, which
//!   cloud-init's `phone_home` needs since it sends no headers): the installed system is up →
//!   `status.installProgress.phase: Booted`, which the operator turns into `Ready`. 409 unless
//!   the current attempt `Succeeded`.

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use machinist_agent_protocol::Endpoint;
use machinist_agent_protocol::install::{
    self as contract, InstallReport, OrderError, PhoneHome, PlanResponse, follows, parse_install_report,
};
use machinist_agent_protocol::seed;
use machinist_crds::machine::{BootStepKind, InstallPhase, InstallProgress, MachinePhase, Time};

use super::report::{Credential, checked_body, read_limited, reply, unauthorized, verified};
use super::{AppState, Shared};
use crate::nocloud;
use crate::timeline::StepRecord;

pub(super) async fn plan(State(state): Shared, Path(machine): Path<String>, headers: HeaderMap) -> Response {
    if !verified(&state, &machine, &headers, Credential::Agent) {
        tracing::info!(%machine, "install plan refused: missing or wrong token");
        return unauthorized();
    }
    let view = state.source.install(&machine);
    let (attempt, plan, view) = match view {
        Some(mut view) if view.phase == Some(MachinePhase::Provisioning) && view.install.is_some() => {
            let install = view.install.take().unwrap_or_else(|| unreachable!("checked above"));
            (install.attempt, install.plan, view)
        }
        Some(view) => {
            let phase = view.phase.map_or("none".to_owned(), |p| format!("{p:?}"));
            return reply(StatusCode::NOT_FOUND, &format!("machine {machine} has no install to do (phase {phase})"));
        }
        None => return reply(StatusCode::NOT_FOUND, &format!("machine {machine} is not known")),
    };
    let Some(token) = state.source.phone_home_token(&machine).await else {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "failed to create the phone-home credential; try again");
    };
    let url = format!("{}{}", state.settings.public_url, Endpoint::PhoneHome.path(&machine));
    let seed = nocloud::render(nocloud::SeedInputs {
        machine: &machine,
        namespace: &view.namespace,
        attempt,
        plan: &plan,
        variables: &view.variables,
        templates: view.templates.as_ref(),
        phone_home_url: &seed::phone_home_url(&url, &token),
    });
    let seed = match seed {
        Ok(seed) => seed,
        Err(error) => {
            // The install cannot go on: fail it, saying why, for the operator to show.
            tracing::warn!(%machine, %error, "install refused: the seed does not render");
            let failed = InstallReport::new(attempt, InstallPhase::Failed, 0, None, &error.to_string());
            let recorded =
                record(&state, &machine, failed.to_progress(now()), BootStepKind::Install, error.to_string()).await;
            if recorded.status() != StatusCode::NO_CONTENT {
                return recorded;
            }
            return reply(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string());
        }
    };
    tracing::info!(%machine, attempt, disk = %plan.target_disk, "install plan served");
    if let Some(timeline) = &state.timeline {
        let detail = format!("plan: Role {} on {} (attempt {attempt})", plan.role.name, plan.target_disk);
        timeline.record(StepRecord::now(&machine, BootStepKind::Install, detail));
    }
    Json(PlanResponse { attempt, plan, phone_home: PhoneHome { url, token }, seed }).into_response()
}

/// What `machine` reported last for `attempt`: this server's memory, else the status.
fn previous(
    state: &AppState,
    machine: &str,
    attempt: Option<i32>,
    status: Option<InstallProgress>,
) -> Option<InstallProgress> {
    let remembered = state.installs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(machine).cloned();
    [remembered, status]
        .into_iter()
        .flatten()
        .filter(|p| Some(p.attempt) == attempt)
        .max_by_key(|p| (p.phase, p.bytes_written))
}

/// Whether this server accepted a success (or the phone-home) of `machine`'s current attempt.
pub(super) fn succeeded_here(state: &AppState, machine: &str) -> bool {
    // Every script request asks: read this server's memory first (mostly empty) and only then
    // the source, for the attempt alone.
    let succeeded = state
        .installs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(machine)
        .filter(|p| matches!(p.phase, InstallPhase::Succeeded | InstallPhase::Booted))
        .map(|p| p.attempt);
    succeeded.is_some_and(|attempt| state.source.install_attempt(machine) == Some(attempt))
}

fn conflict(machine: &str, what: &str, error: &OrderError) -> Response {
    tracing::info!(%machine, %error, "{what} refused");
    reply(StatusCode::CONFLICT, &error.to_string())
}

/// Records `progress`: status, memory, timeline.
async fn record(
    state: &AppState,
    machine: &str,
    progress: InstallProgress,
    kind: BootStepKind,
    detail: String,
) -> Response {
    let warning = progress.phase == InstallPhase::Failed;
    match state.sink.install_progress(machine, progress.clone()).await {
        Ok(()) => {
            state
                .installs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(machine.to_owned(), progress);
            if let Some(timeline) = &state.timeline {
                let mut step = StepRecord::now(machine, kind, detail);
                step.warning = warning;
                timeline.record(step);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => {
            tracing::error!(%machine, %error, "failed to record install progress");
            reply(StatusCode::SERVICE_UNAVAILABLE, "failed to record the install progress; try again")
        }
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// `Writing: 12.0 MiB of 40.0 MiB`, for the timeline.
pub fn describe(report: &InstallReport) -> String {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut text = format!("{:?}", report.phase);
    match (report.phase, report.total_bytes) {
        (InstallPhase::Writing | InstallPhase::Written, Some(total)) => {
            text.push_str(&format!(": {:.1} MiB of {:.1} MiB", mib(report.bytes_written), mib(total)));
        }
        (InstallPhase::Writing | InstallPhase::Written, None) => {
            text.push_str(&format!(": {:.1} MiB", mib(report.bytes_written)));
        }
        _ => {}
    }
    if !report.message.is_empty() {
        text.push_str(": ");
        text.push_str(&report.message);
    }
    text
}

pub(super) async fn report(State(state): Shared, Path(machine): Path<String>, request: Request) -> Response {
    let what = Endpoint::Install.what();
    let body = match checked_body(&state, &machine, what, request, contract::BODY_LIMIT, Credential::Agent).await {
        Ok((_, body)) => body,
        Err(response) => return response,
    };
    let report = match parse_install_report(&body) {
        Ok(report) => report,
        Err(error) => {
            tracing::info!(%machine, %error, "install report refused");
            return reply(StatusCode::BAD_REQUEST, &error.to_string());
        }
    };
    let view = state.source.install(&machine);
    let current = view.as_ref().and_then(|v| v.install.as_ref()).map(|i| i.attempt);
    let before = previous(&state, &machine, current, view.and_then(|v| v.progress));
    if let Err(error) = follows(current, before.as_ref(), report.phase, report.bytes_written, report.attempt) {
        return conflict(&machine, what, &error);
    }
    tracing::info!(%machine, attempt = report.attempt, phase = ?report.phase, bytes = report.bytes_written, "install progress");
    let detail = describe(&report);
    record(&state, &machine, report.to_progress(now()), BootStepKind::Install, detail).await
}

/// `?token=` on the phone-home URL: cloud-init's `phone_home` sends no headers.
#[derive(Debug, serde::Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

pub(super) async fn phone_home(
    State(state): Shared,
    Path(machine): Path<String>,
    Query(query): Query<TokenQuery>,
    extensions: axum::http::Extensions,
    request: Request,
) -> Response {
    let what = Endpoint::PhoneHome.what();
    let limit = contract::PHONE_HOME_BODY_LIMIT;
    let by_query = query.token.as_deref().is_some_and(|t| !t.is_empty() && state.source.verify_phone_home(&machine, t));
    let body = if by_query {
        read_limited(&machine, what, request, limit).await
    } else {
        checked_body(&state, &machine, what, request, limit, Credential::PhoneHome).await
    };
    if let Err(response) = body {
        return response;
    }
    let view = state.source.install(&machine);
    let current = view.as_ref().and_then(|v| v.install.as_ref()).map(|i| i.attempt);
    let before = previous(&state, &machine, current, view.and_then(|v| v.progress));
    let bytes = before.as_ref().map_or(0, |p| u64::try_from(p.bytes_written).unwrap_or(0));
    if let Err(error) = follows(current, before.as_ref(), InstallPhase::Booted, bytes, current.unwrap_or(0)) {
        return conflict(&machine, what, &error);
    }
    let from = super::peer(&extensions).map_or_else(String::new, |ip| format!(" from {ip}"));
    tracing::info!(%machine, "the installed system phoned home{from}");
    let progress = InstallProgress {
        attempt: current.unwrap_or(0),
        phase: InstallPhase::Booted,
        bytes_written: before.as_ref().map_or(0, |p| p.bytes_written),
        total_bytes: before.as_ref().and_then(|p| p.total_bytes),
        message: format!("phoned home{from}"),
        updated_time: Some(now()),
    };
    record(&state, &machine, progress, BootStepKind::PhoneHome, format!("phoned home{from}")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_in_mebibytes() {
        let report = InstallReport::new(1, InstallPhase::Writing, 12 * 1024 * 1024, Some(40 * 1024 * 1024), "");
        assert_eq!(describe(&report), "Writing: 12.0 MiB of 40.0 MiB");
        let failed = InstallReport::new(1, InstallPhase::Failed, 0, None, "sha256 mismatch");
        assert_eq!(describe(&failed), "Failed: sha256 mismatch");
    }
}
