//! The contract between machinist's RAM-disk agent and the boot services: how the agent is told
//! what to do, and every message it sends back. The agent serialises these types; the boot
//! services parse the same ones. Nothing here does I/O.
//!
//! | Direction | Where | What | Module |
//! |---|---|---|---|
//! | boot services → agent | the kernel command line of the iPXE script | `machinist.url=… machinist.machine=… machinist.token=… machinist.mac=… machinist.mode=… machinist.onSuccess=… [machinist.debug=1] [machinist.role=…]` | [`cmdline`] |
//! | agent → boot services | `POST /machines/{name}/report`, JSON | the hardware report: `{"items": [[class, type, name, value], …]}` | [`report`] |
//! | agent → boot services | `POST /machines/{name}/progress`, JSON | a step: `{"step": "…", "message": "…", "level": "info"\|"warning"\|"error"}` | [`progress`] |
//! | agent → boot services | `POST /machines/{name}/log`, UTF-8 text | the agent's log, on failure | [`log`] |
//! | agent ← boot services | `GET /machines/{name}/plan`, JSON | the install plan, its attempt, the phone-home credential | [`install`] |
//! | agent → boot services | `POST /machines/{name}/install`, JSON | install progress: `{"attempt": 1, "phase": "Writing", "bytesWritten": …, "totalBytes": …}` | [`install`] |
//! | installed system → boot services | `POST /machines/{name}/phone-home` | "I am up", with the phone-home token (not the agent's) | [`install`] |
//!
//! Every request carries `Authorization: Bearer <machinist.token>` (the phone-home its own
//! token). The boot services answer 204 when they took the message (200 with the plan); 401 for a missing or wrong token; 413 for a body over the limit;
//! 400 saying what is wrong with the body; 409 for an install report out of order or about
//! another attempt; 503 when they could not record it (try again).
//! [`Endpoint`] names the paths and content types.
//!
//! What the agent writes into the installed system for cloud-init, [`seed::nocloud`], is here
//! too: it is made from the plan the boot services serve.
//!
//! What the boot services make of a report — [`summary::summarize`], the typed digest written
//! beside the items in `status.hardware` — is here too, because it reads the items' spelling
//! (such as lshw's link speeds, [`speed`]) that the agent writes.
//!
//! The crate links only the API's types (`machinist-crds` without its validation and YAML
//! features) and serde, so the RAM disk stays small.

pub mod cmdline;
pub mod install;
pub mod log;
pub mod progress;
pub mod report;
pub mod seed;
pub mod speed;
pub mod summary;

/// The boot services' endpoints the agent (and the installed system) talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The hardware report ([`report`]).
    Report,
    /// A progress step ([`progress`]).
    Progress,
    /// The agent's log ([`log`]).
    Log,
    /// The install plan, fetched with GET ([`install`]).
    Plan,
    /// Install progress ([`install`]).
    Install,
    /// The installed system's phone-home ([`install`]).
    PhoneHome,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 6] =
        [Endpoint::Report, Endpoint::Progress, Endpoint::Log, Endpoint::Plan, Endpoint::Install, Endpoint::PhoneHome];

    /// The route, with `{name}` for the Machine's name (axum's and OpenAPI's template syntax).
    pub const fn route(self) -> &'static str {
        match self {
            Endpoint::Report => "/machines/{name}/report",
            Endpoint::Progress => "/machines/{name}/progress",
            Endpoint::Log => "/machines/{name}/log",
            Endpoint::Plan => "/machines/{name}/plan",
            Endpoint::Install => "/machines/{name}/install",
            Endpoint::PhoneHome => "/machines/{name}/phone-home",
        }
    }

    /// The path for Machine `machine`.
    pub fn path(self, machine: &str) -> String {
        self.route().replace("{name}", machine)
    }

    /// The body's `Content-Type`.
    pub const fn content_type(self) -> &'static str {
        match self {
            Endpoint::Report | Endpoint::Progress | Endpoint::Plan | Endpoint::Install | Endpoint::PhoneHome => {
                "application/json"
            }
            Endpoint::Log => "text/plain; charset=utf-8",
        }
    }

    /// What the body is, for people (error messages, logs).
    pub const fn what(self) -> &'static str {
        match self {
            Endpoint::Report => "hardware report",
            Endpoint::Progress => "progress",
            Endpoint::Log => "log",
            Endpoint::Plan => "install plan",
            Endpoint::Install => "install report",
            Endpoint::PhoneHome => "phone-home",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fill_in_the_machine() {
        assert_eq!(Endpoint::Report.path("vm-1"), "/machines/vm-1/report");
        assert_eq!(Endpoint::Log.path("m"), "/machines/m/log");
        for endpoint in Endpoint::ALL {
            assert!(endpoint.route().starts_with("/machines/{name}/"), "{endpoint:?}");
        }
    }
}
