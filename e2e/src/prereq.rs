//! Prerequisites of end-to-end tests: tools on `PATH`, root, and whether a missing one is a
//! skip or a failure.

use std::ffi::OsStr;

/// Environment variable that decides what a missing prerequisite means.
pub const MODE_VARIABLE: &str = "MACHINIST_E2E";

/// What a missing prerequisite means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Skip the test, saying why (developer machines; the default).
    Auto,
    /// Fail the test (`MACHINIST_E2E=require`, CI).
    Require,
    /// Skip every end-to-end test (`MACHINIST_E2E=skip`).
    Skip,
}

/// A prerequisite that is not there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// A program is not on `PATH`.
    #[error("{program} is not installed (not found on PATH); run scripts/deps")]
    Program {
        /// The program.
        program: String,
    },
    /// The test needs root (network namespaces, taps, port 67).
    #[error("this test needs root (network namespaces)")]
    Root,
    /// `MACHINIST_E2E` has a value it does not know.
    #[error("{MODE_VARIABLE}={0:?} is not one of auto, require, skip")]
    BadMode(String),
}

/// What a test should do about its prerequisites.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Everything is there: run.
    Run,
    /// Skip, and print the reason.
    Skip(String),
    /// Fail with the reason.
    Fail(String),
}

impl Mode {
    /// Reads the mode from a value of `MACHINIST_E2E` (absent or empty: [`Mode::Auto`]).
    pub fn parse(value: Option<&OsStr>) -> Result<Self, Missing> {
        match value.map(|v| v.to_string_lossy().into_owned()).as_deref() {
            None | Some("") | Some("auto") => Ok(Self::Auto),
            Some("require") => Ok(Self::Require),
            Some("skip") => Ok(Self::Skip),
            Some(other) => Err(Missing::BadMode(other.to_owned())),
        }
    }

    /// Reads the mode from the environment.
    pub fn from_env() -> Result<Self, Missing> {
        Self::parse(std::env::var_os(MODE_VARIABLE).as_deref())
    }

    /// Decides, from what is missing, whether the test runs, skips or fails.
    pub fn verdict(self, missing: &[Missing]) -> Verdict {
        match (self, missing) {
            (Self::Skip, _) => Verdict::Skip(format!("{MODE_VARIABLE}=skip")),
            (_, []) => Verdict::Run,
            (Self::Auto, missing) => Verdict::Skip(join(missing)),
            (Self::Require, missing) => Verdict::Fail(format!("{} ({MODE_VARIABLE}=require)", join(missing))),
        }
    }
}

fn join(missing: &[Missing]) -> String {
    missing.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

pub use machinist_lab::host::{find_program, is_root};

/// The programs among `programs` that are not on this process's `PATH`.
pub fn missing_programs(programs: &[&str]) -> Vec<Missing> {
    let path = std::env::var_os("PATH");
    programs
        .iter()
        .filter(|p| find_program(p, path.as_deref()).is_none())
        .map(|p| Missing::Program { program: (*p).to_owned() })
        .collect()
}

/// Checks the programs a test needs against the environment's mode. Returns `true` when the
/// test should run, `false` (after printing why) when it should skip, and an error — which the
/// test returns, failing — when a prerequisite is missing under `MACHINIST_E2E=require`.
pub fn need_programs(test: &str, programs: &[&str]) -> Result<bool, String> {
    decide(test, missing_programs(programs))
}

/// [`need_programs`], and the test must also run as root (namespaces, raw sockets).
pub fn need_root_and_programs(test: &str, programs: &[&str]) -> Result<bool, String> {
    let mut missing = missing_programs(programs);
    if !is_root() {
        missing.push(Missing::Root);
    }
    decide(test, missing)
}

fn decide(test: &str, missing: Vec<Missing>) -> Result<bool, String> {
    let mode = Mode::from_env().map_err(|e| e.to_string())?;
    match mode.verdict(&missing) {
        Verdict::Run => Ok(true),
        Verdict::Skip(reason) => {
            eprintln!("skipping {test}: {reason}");
            Ok(false)
        }
        Verdict::Fail(reason) => Err(format!("{test}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_known_values_and_rejects_others() {
        assert_eq!(Mode::parse(None), Ok(Mode::Auto));
        assert_eq!(Mode::parse(Some(OsStr::new(""))), Ok(Mode::Auto));
        assert_eq!(Mode::parse(Some(OsStr::new("require"))), Ok(Mode::Require));
        assert_eq!(Mode::parse(Some(OsStr::new("skip"))), Ok(Mode::Skip));
        assert_eq!(Mode::parse(Some(OsStr::new("yes"))), Err(Missing::BadMode("yes".into())));
    }

    #[test]
    fn missing_prerequisites_fail_only_when_required() {
        let missing = [Missing::Program { program: "qemu-system-x86_64".into() }];
        assert_eq!(Mode::Auto.verdict(&[]), Verdict::Run);
        assert_eq!(Mode::Require.verdict(&[]), Verdict::Run);
        assert!(matches!(Mode::Auto.verdict(&missing), Verdict::Skip(r) if r.contains("qemu-system-x86_64")));
        assert!(matches!(Mode::Require.verdict(&missing), Verdict::Fail(r) if r.contains("qemu-system-x86_64")));
        assert!(matches!(Mode::Skip.verdict(&missing), Verdict::Skip(_)));
    }
}
