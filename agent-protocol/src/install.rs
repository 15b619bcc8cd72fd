//! The install: the plan the agent fetches, the progress it reports, and the installed system's
//! phone-home.
//!
//! - `GET /machines/{name}/plan` (agent token) → [`PlanResponse`]: the attempt, the
//!   [`InstallPlan`] the operator resolved, the installed system's phone-home credential and
//!   its NoCloud seed (the Role's templates rendered). 404 when the machine has no install to
//!   do; 422 when the Role's templates do not render (the install is then failed, saying why).
//! - `POST /machines/{name}/install` (agent token), JSON [`InstallReport`]: where the install is.
//!   Reports of one attempt go forward only ([`follows`]): `Planned` → `Writing` (bytes growing)
//!   → `Written` → `Succeeded`, or `Failed` from any of the first three. Anything else is
//!   refused with 409, as is a report for an attempt that is not the current one.
//! - `POST /machines/{name}/phone-home` (the phone-home token, not the agent's): the installed
//!   system is up. Accepted once the current attempt `Succeeded`; 409 before.

/// The plan's types, as the API defines them (`status.install.plan`).
pub use machinist_crds::hardware_profile::{Filesystem, Partition, PartitionTable};
/// Where a plan's partitions go on the disk the agent finds (for `tar` trees).
pub use machinist_crds::layout;
use machinist_crds::machine::InstallProgress;
pub use machinist_crds::machine::{InstallPhase, InstallPlan, PlannedLayout, PlannedNetwork};
/// The image's types, as the Role defines them.
pub use machinist_crds::role::{Compression, ImageFormat, ImageSource};
use serde::{Deserialize, Serialize};

/// Largest install report body.
pub const BODY_LIMIT: usize = 4096;
/// Longest install report message, in bytes.
pub const MESSAGE_MAX: usize = 1024;
/// Largest phone-home body (it may be empty).
pub const PHONE_HOME_BODY_LIMIT: usize = 1024;

/// What `GET /machines/{name}/plan` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanResponse {
    /// The attempt the reports are about (`status.install.attempt`).
    pub attempt: i32,
    /// What to install.
    pub plan: InstallPlan,
    /// Where the installed system phones home, and with what.
    pub phone_home: PhoneHome,
    /// The cloud-init NoCloud seed the agent writes into the image ([`crate::seed`]).
    pub seed: crate::seed::NoCloud,
}

/// The installed system's way back to the boot services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhoneHome {
    /// `POST` here (`{publicUrl}/machines/{name}/phone-home`).
    pub url: String,
    /// `Authorization: Bearer <token>`: a credential of its own, not the agent's.
    pub token: String,
}

/// One install report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstallReport {
    /// The attempt of the plan.
    pub attempt: i32,
    /// Where the install is.
    pub phase: InstallPhase,
    /// Bytes written to the disk so far.
    #[serde(default)]
    pub bytes_written: u64,
    /// Bytes of the image once decompressed, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// What happened; why, in phase `Failed`. At most [`MESSAGE_MAX`] bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// What is wrong with an install report.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InstallReportError {
    /// Not JSON of the right shape.
    #[error("invalid install report: {0}")]
    Shape(String),
    /// An attempt below 1.
    #[error("invalid install report: attempt {0} must be at least 1")]
    Attempt(i32),
    /// More bytes written than the total.
    #[error("invalid install report: {written} bytes written of a total of {total}")]
    BeyondTotal {
        /// Written.
        written: u64,
        /// Total.
        total: u64,
    },
    /// `Booted` is the installed system's to say, through the phone-home.
    #[error("invalid install report: phase Booted is reported by the installed system's phone-home")]
    Booted,
    /// A message too long.
    #[error("invalid install report: message is {0} bytes long, at most {MESSAGE_MAX} are allowed")]
    MessageTooLong(usize),
}

impl InstallReport {
    /// A report, its message cut to [`MESSAGE_MAX`] bytes on a character boundary.
    pub fn new(attempt: i32, phase: InstallPhase, bytes_written: u64, total_bytes: Option<u64>, message: &str) -> Self {
        let mut end = message.len().min(MESSAGE_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Self { attempt, phase, bytes_written, total_bytes, message: message[..end].to_owned() }
    }

    /// The JSON body the agent sends.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks what the JSON shape alone does not.
    pub fn validate(&self) -> Result<(), InstallReportError> {
        if self.attempt < 1 {
            return Err(InstallReportError::Attempt(self.attempt));
        }
        if let Some(total) = self.total_bytes
            && self.bytes_written > total
        {
            return Err(InstallReportError::BeyondTotal { written: self.bytes_written, total });
        }
        if self.phase == InstallPhase::Booted {
            return Err(InstallReportError::Booted);
        }
        if self.message.len() > MESSAGE_MAX {
            return Err(InstallReportError::MessageTooLong(self.message.len()));
        }
        Ok(())
    }

    /// The status it becomes (`status.installProgress`), stamped `now`.
    pub fn to_progress(&self, now: machinist_crds::machine::Time) -> InstallProgress {
        InstallProgress {
            attempt: self.attempt,
            phase: self.phase,
            bytes_written: i64::try_from(self.bytes_written).unwrap_or(i64::MAX),
            total_bytes: self.total_bytes.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            message: self.message.clone(),
            updated_time: Some(now),
        }
    }
}

/// Reads and validates an install report body.
pub fn parse_install_report(body: &[u8]) -> Result<InstallReport, InstallReportError> {
    let report: InstallReport = serde_json::from_slice(body).map_err(|e| InstallReportError::Shape(e.to_string()))?;
    report.validate()?;
    Ok(report)
}

/// Why a report cannot follow what was reported before.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The report is about another attempt than the current one.
    #[error("the report is about install attempt {reported}, the current one is {current}")]
    OtherAttempt {
        /// The report's.
        reported: i32,
        /// The machine's.
        current: i32,
    },
    /// The machine has no install to report on.
    #[error("the machine has no install in progress")]
    NoInstall,
    /// The report goes back (a phase before the last one, or fewer bytes written).
    #[error("out of order: {next} cannot follow {previous}")]
    Backwards {
        /// What was reported last.
        previous: String,
        /// What came now.
        next: String,
    },
}

fn describe(phase: InstallPhase, bytes: u64) -> String {
    match phase {
        InstallPhase::Writing => format!("Writing ({bytes} bytes)"),
        other => format!("{other:?}"),
    }
}

/// Whether `next` may follow `previous` (what the current attempt reported last, if anything)
/// for attempt `current`. Repeating the last report is allowed (a retried POST).
pub fn follows(
    current: Option<i32>,
    previous: Option<&InstallProgress>,
    next_phase: InstallPhase,
    next_bytes: u64,
    next_attempt: i32,
) -> Result<(), OrderError> {
    let current = current.ok_or(OrderError::NoInstall)?;
    if next_attempt != current {
        return Err(OrderError::OtherAttempt { reported: next_attempt, current });
    }
    let Some(previous) = previous.filter(|p| p.attempt == current) else {
        // Nothing yet for this attempt: the first report may be any phase but Booted.
        return if next_phase == InstallPhase::Booted {
            Err(OrderError::Backwards { previous: "nothing".into(), next: "Booted".into() })
        } else {
            Ok(())
        };
    };
    let previous_bytes = u64::try_from(previous.bytes_written).unwrap_or(0);
    let same = previous.phase == next_phase && previous_bytes == next_bytes;
    let allowed = same
        || match (previous.phase, next_phase) {
            (InstallPhase::Failed | InstallPhase::Booted, _) => false,
            (InstallPhase::Succeeded, next) => next == InstallPhase::Booted,
            (_, InstallPhase::Booted) => false,
            (_, InstallPhase::Failed) => true,
            (InstallPhase::Writing, InstallPhase::Writing) => next_bytes >= previous_bytes,
            (before, after) => after > before,
        };
    if allowed {
        Ok(())
    } else {
        Err(OrderError::Backwards {
            previous: describe(previous.phase, previous_bytes),
            next: describe(next_phase, next_bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn progress(attempt: i32, phase: InstallPhase, bytes: i64) -> InstallProgress {
        InstallProgress {
            attempt,
            phase,
            bytes_written: bytes,
            total_bytes: None,
            message: String::new(),
            updated_time: None,
        }
    }

    #[test]
    fn reports_are_validated() {
        let ok = parse_install_report(br#"{"attempt": 2, "phase": "Writing", "bytesWritten": 10, "totalBytes": 20}"#)
            .unwrap();
        assert_eq!((ok.attempt, ok.phase, ok.bytes_written, ok.total_bytes), (2, InstallPhase::Writing, 10, Some(20)));
        let bad = |body: &[u8]| parse_install_report(body).unwrap_err();
        assert_eq!(bad(br#"{"attempt": 0, "phase": "Planned"}"#), InstallReportError::Attempt(0));
        assert_eq!(
            bad(br#"{"attempt": 1, "phase": "Writing", "bytesWritten": 21, "totalBytes": 20}"#),
            InstallReportError::BeyondTotal { written: 21, total: 20 }
        );
        assert_eq!(bad(br#"{"attempt": 1, "phase": "Booted"}"#), InstallReportError::Booted);
        assert!(matches!(bad(br#"{"attempt": 1, "phase": "Done"}"#), InstallReportError::Shape(_)));
        assert!(matches!(bad(br#"{"attempt": 1, "phase": "Planned", "x": 1}"#), InstallReportError::Shape(_)));
        assert!(matches!(
            bad(br#"{"attempt": 1, "phase": "Writing", "bytesWritten": -1}"#),
            InstallReportError::Shape(_)
        ));
        let long = format!(r#"{{"attempt": 1, "phase": "Failed", "message": "{}"}}"#, "m".repeat(MESSAGE_MAX + 1));
        assert_eq!(bad(long.as_bytes()), InstallReportError::MessageTooLong(MESSAGE_MAX + 1));
        let cut = InstallReport::new(1, InstallPhase::Failed, 0, None, &"é".repeat(MESSAGE_MAX));
        assert_eq!(cut.message.len(), MESSAGE_MAX);
        assert_eq!(parse_install_report(&cut.to_body()).unwrap(), cut);
    }

    #[test]
    fn reports_of_an_attempt_go_forward_only() {
        use InstallPhase::*;
        let current = Some(1);
        assert_eq!(follows(None, None, Planned, 0, 1), Err(OrderError::NoInstall));
        assert_eq!(follows(current, None, Planned, 0, 2), Err(OrderError::OtherAttempt { reported: 2, current: 1 }));
        assert_eq!(follows(current, None, Writing, 5, 1), Ok(()), "the first report may start anywhere");
        assert!(follows(current, None, Booted, 0, 1).is_err());
        // A report of an earlier attempt does not constrain this one.
        assert_eq!(follows(Some(2), Some(&progress(1, Failed, 0)), Planned, 0, 2), Ok(()));
        let writing = progress(1, Writing, 100);
        assert_eq!(follows(current, Some(&writing), Writing, 200, 1), Ok(()));
        assert_eq!(follows(current, Some(&writing), Writing, 100, 1), Ok(()), "a retried POST");
        assert!(matches!(follows(current, Some(&writing), Writing, 50, 1), Err(OrderError::Backwards { .. })));
        assert!(follows(current, Some(&writing), Planned, 0, 1).is_err());
        assert_eq!(follows(current, Some(&writing), Written, 100, 1), Ok(()));
        assert_eq!(follows(current, Some(&writing), Failed, 100, 1), Ok(()));
        assert!(follows(current, Some(&writing), Booted, 100, 1).is_err(), "not before Succeeded");
        let succeeded = progress(1, Succeeded, 100);
        assert_eq!(follows(current, Some(&succeeded), Booted, 100, 1), Ok(()));
        assert!(follows(current, Some(&succeeded), Failed, 100, 1).is_err(), "a success is not taken back");
        for end in [progress(1, Failed, 0), progress(1, Booted, 100)] {
            assert!(follows(current, Some(&end), Planned, 0, 1).is_err(), "{:?} is final", end.phase);
            assert_eq!(follows(current, Some(&end), end.phase, 100.min(end.bytes_written as u64), 1), Ok(()));
        }
        let message = follows(current, Some(&writing), Writing, 50, 1).unwrap_err().to_string();
        assert_eq!(message, "out of order: Writing (50 bytes) cannot follow Writing (100 bytes)");
    }
}
