//! The boot services' HTTP server: what a machine fetches once iPXE runs.
//!
//! | Route | What |
//! |---|---|
//! | `GET /ipxe/{mac}` | the machine's iPXE script (see [`script_for`]); `?role=` picks a menu entry |
//! | `GET`/`HEAD /artifacts/{path}` | files under [`HttpConfig::artifact_root`], with Range, ETag and Last-Modified ([`artifacts`]) |
//! | `GET`/`HEAD /ipxe-binaries/{name}` | the iPXE binaries of the TFTP root (`ipxe.efi`…), for UEFI HTTP boot ([`artifacts`]) |
//! | `POST /machines/{name}/report` | a hardware report, `Authorization: Bearer <token>` ([`report`]) |
//! | `POST /machines/{name}/progress` | a progress step → Event + `status.lastBoot` ([`agent`]) |
//! | `POST /machines/{name}/log` | the agent's log → ConfigMap `machinist-log-<name>` ([`agent`]) |
//! | `GET /machines/{name}/plan` | the install plan, with the phone-home credential ([`install`]) |
//! | `POST /machines/{name}/install` | install progress → `status.installProgress` ([`install`]) |
//! | `POST /machines/{name}/phone-home` | the installed system is up, with its own token ([`install`]) |
//! | `GET /healthz` | `ok` |
//!
//! Metrics are served on their own port (see [`crate::metrics`]).
//!
//! Pure decisions ([`script_for`], [`artifacts::resolve`], [`artifacts::parse_range`],
//! and the agent's messages in [`machinist_agent_protocol`]) are plain functions; the handlers only
//! do I/O around them.

pub mod agent;
pub mod artifacts;
pub mod install;
pub mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use machinist_agent_protocol::Endpoint;
use machinist_agent_protocol::cmdline::{Args, Mode};
use machinist_crds::machine::BootTarget;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ipxe::{self, BootImage, MenuEntry, Script};
use crate::machines::{BootRecord, MacAddr, MachineSource, ReportSink};
use crate::timeline::{StepRecord, Timeline};
use machinist_crds::machine::BootStepKind;

/// Default limit of a report body (the contract's).
pub const DEFAULT_REPORT_LIMIT: usize = machinist_agent_protocol::report::DEFAULT_BODY_LIMIT;
/// Default limit of one log upload (the contract's).
pub const DEFAULT_LOG_LIMIT: usize = machinist_agent_protocol::log::DEFAULT_BODY_LIMIT;

/// What to serve a MAC address no Machine has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnknownMac {
    /// A script that stops and lets the firmware try its next boot device (the default).
    #[default]
    Refuse,
    /// Register the machine ([`MachineSource::register`]: a `Registered` Machine and its
    /// token) and serve it the discovery RAM disk with its name and token (auto-registration).
    Register,
}

/// Request counters, exported on `/metrics`.
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// iPXE scripts served (any kind, refusals included).
    pub scripts: AtomicU64,
    /// Machines registered on their first script request.
    pub registered: AtomicU64,
    /// Artifact requests answered with 200 or 206.
    pub artifacts: AtomicU64,
    /// Hardware reports accepted.
    pub reports_accepted: AtomicU64,
    /// Hardware reports refused (401, 413, 400).
    pub reports_refused: AtomicU64,
}

impl HttpCounters {
    fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The kernel and initrd of the RAM disk (discovery and install modes).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RamDisk {
    /// Kernel: a path under the artifact root (served as `{publicUrl}/artifacts/{path}`) or
    /// an absolute `http://`/`https://` URL.
    pub kernel: String,
    /// Initrd, as `kernel`.
    pub initrd: String,
    /// Extra kernel arguments (`console=ttyS0`…); the server adds `machinist.*` ones.
    #[serde(default)]
    pub args: Vec<String>,
}

impl Default for RamDisk {
    /// machinist's discovery image under the artifact root (`ramdisk/vmlinuz`,
    /// `ramdisk/initrd.gz`), its console on the first serial port and the screen.
    fn default() -> Self {
        Self {
            kernel: "ramdisk/vmlinuz".into(),
            initrd: "ramdisk/initrd.gz".into(),
            args: vec!["console=tty0".into(), "console=ttyS0,115200".into()],
        }
    }
}

/// HTTP configuration, as read from the file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on; absent: the HTTP server stays off and nothing is bound.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// URL machines reach this server at (`http://10.0.0.1:8080`); it goes in scripts and on
    /// kernel command lines.
    pub public_url: String,
    /// Directory served under `/artifacts/`; absent: every artifact is 404.
    #[serde(default)]
    pub artifact_root: Option<PathBuf>,
    /// The RAM disk booted for discovery and installation (default: machinist's own, as
    /// `machinist ramdisk build --out <artifactRoot>/ramdisk` writes it — see [`RamDisk::default`]).
    #[serde(default)]
    pub ramdisk: RamDisk,
    /// Largest hardware report body in bytes (default [`DEFAULT_REPORT_LIMIT`]).
    #[serde(default = "default_report_limit")]
    pub report_limit: usize,
    /// Largest log upload in bytes (default [`DEFAULT_LOG_LIMIT`]).
    #[serde(default = "default_log_limit")]
    pub log_limit: usize,
}

fn default_report_limit() -> usize {
    DEFAULT_REPORT_LIMIT
}

fn default_log_limit() -> usize {
    DEFAULT_LOG_LIMIT
}

/// A configuration that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `publicUrl` is not an `http(s)://` URL without spaces.
    #[error("publicUrl {0:?} must start with http:// or https:// and contain no whitespace, '$' or '#'")]
    PublicUrl(String),
    /// The artifact root cannot be resolved.
    #[error("failed to resolve artifactRoot {path}")]
    ArtifactRoot {
        /// The configured path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The artifact root is not a directory.
    #[error("artifactRoot {0} is not a directory")]
    NotADirectory(PathBuf),
}

/// The validated configuration the server runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Public URL without a trailing `/`.
    pub public_url: String,
    /// Canonical artifact root.
    pub artifact_root: Option<PathBuf>,
    /// The RAM disk.
    pub ramdisk: RamDisk,
    /// What unknown MACs get ([`UnknownMac::Register`] when auto-registration is on).
    pub unknown_mac: UnknownMac,
    /// Report body limit.
    pub report_limit: usize,
    /// Log upload limit.
    pub log_limit: usize,
    /// Where the iPXE binaries are (the TFTP root, once the service installed them there),
    /// served under `/ipxe-binaries/` for UEFI HTTP boot; `None`: not served.
    pub ipxe_binaries: Option<PathBuf>,
}

impl HttpConfig {
    /// Checks the configuration and resolves the artifact root.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let url = self.public_url.trim_end_matches('/');
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !scheme_ok || url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '$' || c == '#') {
            return Err(ConfigError::PublicUrl(self.public_url.clone()));
        }
        let artifact_root = match &self.artifact_root {
            None => None,
            Some(path) => {
                let root = std::fs::canonicalize(path)
                    .map_err(|source| ConfigError::ArtifactRoot { path: path.clone(), source })?;
                if !root.is_dir() {
                    return Err(ConfigError::NotADirectory(path.clone()));
                }
                Some(root)
            }
        };
        Ok(Settings {
            public_url: url.to_owned(),
            artifact_root,
            ramdisk: self.ramdisk.clone(),
            unknown_mac: UnknownMac::Refuse,
            report_limit: self.report_limit,
            log_limit: self.log_limit,
            ipxe_binaries: None,
        })
    }
}

/// What the handlers share.
struct AppState {
    settings: Settings,
    source: Arc<dyn MachineSource>,
    sink: Arc<dyn ReportSink>,
    timeline: Option<Timeline>,
    counters: Arc<HttpCounters>,
    /// The last install report accepted per machine: the order check must not depend on how
    /// fast the status write comes back through the cache.
    installs: std::sync::Mutex<std::collections::HashMap<String, machinist_crds::machine::InstallProgress>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("settings", &self.settings).finish_non_exhaustive()
    }
}

type Shared = State<Arc<AppState>>;

/// The router, with its state, recording no timeline.
pub fn router(settings: Settings, source: Arc<dyn MachineSource>, sink: Arc<dyn ReportSink>) -> Router {
    router_with(settings, source, sink, None, Arc::default())
}

/// The router, recording boot steps on `timeline` and counting requests in `counters`.
pub fn router_with(
    settings: Settings,
    source: Arc<dyn MachineSource>,
    sink: Arc<dyn ReportSink>,
    timeline: Option<Timeline>,
    counters: Arc<HttpCounters>,
) -> Router {
    let state = Arc::new(AppState { settings, source, sink, timeline, counters, installs: Default::default() });
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ipxe/{mac}", get(script))
        .route("/artifacts/{*path}", get(artifacts::serve))
        .route("/ipxe-binaries/{name}", get(artifacts::ipxe_binary))
        .route(Endpoint::Report.route(), post(report::receive))
        .route(Endpoint::Progress.route(), post(agent::progress))
        .route(Endpoint::Log.route(), post(agent::log))
        .route(Endpoint::Plan.route(), get(install::plan))
        .route(Endpoint::Install.route(), post(install::report))
        .route(Endpoint::PhoneHome.route(), post(install::phone_home))
        .with_state(state)
}

/// The client's address, when the server was started with [`serve`].
fn peer(request_extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    request_extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|info| info.0.ip())
}

/// Serving failures.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address cannot be bound.
    #[error("failed to bind the HTTP server to {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped on an I/O error.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Binds `config.listen`, if configured (`None`: the server is off).
pub async fn bind(listen: Option<SocketAddr>) -> Result<Option<TcpListener>, ServeError> {
    let Some(addr) = listen else { return Ok(None) };
    TcpListener::bind(addr).await.map(Some).map_err(|source| ServeError::Bind { addr, source })
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> Result<(), ServeError> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ServeError::Serve)
}

/// `?role=` on a script URL: the menu entry chosen.
#[derive(Debug, Deserialize)]
struct ScriptQuery {
    role: Option<String>,
}

/// The script a machine gets, from what is known of it.
///
/// | Machine | Script |
/// |---|---|
/// | unknown (not registered, see [`UnknownMac`]) | `Refuse` |
/// | target absent or `Discovery` | RAM disk, `machinist.mode=discovery` |
/// | `Install`, or any target with `?role=` | RAM disk, `machinist.mode=install` (and `machinist.role`) |
/// | `Install` whose current attempt reported success | `exit` |
/// | `Menu` | the `spec.bootMenu` roles, each chaining to `?role=` (Refuse without a `bootMenu`) |
/// | `LocalDisk` | `exit` |
/// | `None` | `Refuse` |
pub fn script_for(settings: &Settings, mac: MacAddr, record: Option<&BootRecord>, role: Option<&str>) -> Script {
    let Some(record) = record else {
        return Script::Refuse { reason: format!("machinist does not know {mac}") };
    };
    let agent = |mode: Mode, role: Option<&str>| Args {
        url: settings.public_url.clone(),
        machine: record.name.clone(),
        token: record.token.clone(),
        mac: mac.to_string(),
        mode,
        on_success: record.on_success,
        debug: record.debug,
        role: role.map(str::to_owned),
    };
    if role.is_some() {
        return ramdisk(settings, &agent(Mode::Install, role));
    }
    match record.boot_target {
        None | Some(BootTarget::Discovery) => ramdisk(settings, &agent(Mode::Discovery, None)),
        // Installed a moment ago: the agent may reboot before the operator turns the target.
        Some(BootTarget::Install) if record.installed => Script::LocalDisk,
        Some(BootTarget::Install) => ramdisk(settings, &agent(Mode::Install, None)),
        Some(BootTarget::LocalDisk) => Script::LocalDisk,
        Some(BootTarget::None) => Script::Refuse { reason: format!("machine {} is not to be booted", record.name) },
        Some(BootTarget::Menu) => match &record.boot_menu {
            None => Script::Refuse { reason: format!("machine {} asks for a menu but has no bootMenu", record.name) },
            Some(menu) => Script::Menu {
                title: format!("machinist: {}", record.name),
                entries: menu
                    .roles
                    .iter()
                    .map(|role| MenuEntry {
                        role: role.clone(),
                        label: format!("Install {role}"),
                        url: format!("{}/ipxe/{mac}?role={role}", settings.public_url),
                    })
                    .collect(),
                default: menu.default.clone(),
                timeout_seconds: u32::try_from(menu.timeout_seconds).unwrap_or(0),
            },
        },
    }
}

/// The RAM disk, its own arguments followed by the agent's.
fn ramdisk(settings: &Settings, agent: &Args) -> Script {
    let mut args = settings.ramdisk.args.clone();
    args.extend(agent.to_words());
    Script::Boot(BootImage {
        kernel: artifact_url(settings, &settings.ramdisk.kernel),
        initrd: artifact_url(settings, &settings.ramdisk.initrd),
        args,
    })
}

fn artifact_url(settings: &Settings, path: &str) -> String {
    if path.starts_with("http://") || path.starts_with("https://") {
        path.to_owned()
    } else {
        format!("{}/artifacts/{}", settings.public_url, path.trim_start_matches('/'))
    }
}

/// A role name from a query: a DNS label, as Role objects are named.
fn valid_role(role: &str) -> bool {
    let bytes = role.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn script(
    State(state): Shared,
    Path(mac): Path<String>,
    Query(query): Query<ScriptQuery>,
    extensions: axum::http::Extensions,
) -> Response {
    let mac: MacAddr = match mac.parse() {
        Ok(mac) => mac,
        Err(error) => return text(StatusCode::BAD_REQUEST, format!("{error}\n")),
    };
    if let Some(role) = &query.role
        && !valid_role(role)
    {
        return text(StatusCode::BAD_REQUEST, format!("role {role:?} is not a valid role name\n"));
    }
    let mut record = state.source.lookup(mac);
    if record.is_none() && state.settings.unknown_mac == UnknownMac::Register {
        match state.source.register(mac).await {
            Ok(registered) => {
                state.counters.bump(&state.counters.registered);
                tracing::info!(%mac, machine = %registered.name, "registered an unknown machine");
                record = Some(registered);
            }
            Err(error) => tracing::warn!(%mac, %error, "failed to register an unknown machine"),
        }
    }
    // The machine's token Secret may not be in the cache yet (created a moment ago by the DHCP
    // path's registration or the token keeper): without it the agent could not report.
    if let Some(known) = record.as_mut().filter(|r| r.token.is_empty())
        && let Some(token) = state.source.token(&known.name).await
    {
        known.token = token;
    }
    // An install this server saw succeed counts even before the cache shows it.
    if let Some(known) = record.as_mut().filter(|r| !r.installed) {
        known.installed = install::succeeded_here(&state, &known.name);
    }
    let script = script_for(&state.settings, mac, record.as_ref(), query.role.as_deref());
    state.counters.bump(&state.counters.scripts);
    match ipxe::render(&script) {
        Ok(body) => {
            tracing::info!(%mac, machine = record.as_ref().map(|r| r.name.as_str()), "served iPXE script");
            if let (Some(timeline), Some(record)) = (&state.timeline, &record) {
                if let Some(ip) = peer(&extensions) {
                    timeline.note_address(ip, &record.name);
                }
                timeline.record(StepRecord::now(&record.name, BootStepKind::Script, script.kind()));
            }
            text(StatusCode::OK, body)
        }
        Err(error) => {
            tracing::error!(%mac, %error, "failed to render iPXE script");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("failed to render the iPXE script: {error}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use machinist_crds::machine::{BootMenu, OnSuccess};

    use super::*;

    fn settings(unknown_mac: UnknownMac) -> Settings {
        Settings {
            public_url: "http://10.0.0.1:8080".into(),
            artifact_root: None,
            ramdisk: RamDisk {
                kernel: "vmlinuz".into(),
                initrd: "https://cdn/initrd".into(),
                args: vec!["console=ttyS0".into()],
            },
            unknown_mac,
            report_limit: DEFAULT_REPORT_LIMIT,
            log_limit: DEFAULT_LOG_LIMIT,
            ipxe_binaries: None,
        }
    }

    fn record(target: Option<BootTarget>) -> BootRecord {
        BootRecord {
            name: "m1".into(),
            boot_target: target,
            boot_menu: Some(BootMenu {
                roles: vec!["base".into(), "api".into()],
                default: "api".into(),
                timeout_seconds: 30,
            }),
            token: "tok".into(),
            on_success: OnSuccess::Halt,
            debug: false,
            installed: false,
        }
    }

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);

    #[test]
    fn discovery_carries_url_machine_and_token() {
        let s = settings(UnknownMac::Refuse);
        let Script::Boot(image) = script_for(&s, MAC, Some(&record(None)), None) else { panic!("not a boot script") };
        assert_eq!(image.kernel, "http://10.0.0.1:8080/artifacts/vmlinuz");
        assert_eq!(image.initrd, "https://cdn/initrd");
        assert_eq!(
            image.args,
            [
                "console=ttyS0",
                "machinist.url=http://10.0.0.1:8080",
                "machinist.machine=m1",
                "machinist.token=tok",
                "machinist.mac=52:54:00:00:00:01",
                "machinist.mode=discovery",
                "machinist.onSuccess=halt"
            ]
        );
        assert_eq!(script_for(&s, MAC, Some(&record(Some(BootTarget::Discovery))), None), Script::Boot(image));
    }

    #[test]
    fn targets_choose_the_script() {
        let s = settings(UnknownMac::Refuse);
        let Script::Boot(install) = script_for(&s, MAC, Some(&record(Some(BootTarget::Install))), None) else {
            panic!("not a boot script")
        };
        assert!(install.args.contains(&"machinist.mode=install".to_owned()));
        let installed = BootRecord { installed: true, ..record(Some(BootTarget::Install)) };
        assert_eq!(script_for(&s, MAC, Some(&installed), None), Script::LocalDisk, "no second install");
        assert_eq!(script_for(&s, MAC, Some(&record(Some(BootTarget::LocalDisk))), None), Script::LocalDisk);
        assert!(matches!(script_for(&s, MAC, Some(&record(Some(BootTarget::None))), None), Script::Refuse { .. }));
        let Script::Menu { entries, default, timeout_seconds, .. } =
            script_for(&s, MAC, Some(&record(Some(BootTarget::Menu))), None)
        else {
            panic!("not a menu")
        };
        assert_eq!((default.as_str(), timeout_seconds), ("api", 30));
        assert_eq!(entries[0].url, "http://10.0.0.1:8080/ipxe/52:54:00:00:00:01?role=base");
        let no_menu = BootRecord { boot_menu: None, ..record(Some(BootTarget::Menu)) };
        assert!(matches!(script_for(&s, MAC, Some(&no_menu), None), Script::Refuse { .. }));
        let Script::Boot(chosen) = script_for(&s, MAC, Some(&record(Some(BootTarget::Menu))), Some("base")) else {
            panic!("not a boot script")
        };
        assert!(chosen.args.ends_with(&["machinist.onSuccess=halt".to_owned(), "machinist.role=base".to_owned()]));
        let debugging = BootRecord { debug: true, ..record(None) };
        let Script::Boot(debug) = script_for(&s, MAC, Some(&debugging), None) else { panic!("not a boot script") };
        assert_eq!(debug.args.last().map(String::as_str), Some("machinist.debug=1"));
    }

    #[test]
    fn unknown_macs_are_refused() {
        assert!(matches!(script_for(&settings(UnknownMac::Refuse), MAC, None, None), Script::Refuse { .. }));
    }

    #[test]
    fn configuration_is_checked() {
        let config = |url: &str, root: Option<PathBuf>| HttpConfig {
            listen: None,
            public_url: url.into(),
            artifact_root: root,
            ramdisk: RamDisk { kernel: "k".into(), initrd: "i".into(), args: vec![] },
            report_limit: 10,
            log_limit: 10,
        };
        assert_eq!(config("http://h:1/", None).validate().unwrap().public_url, "http://h:1");
        for bad in ["h:1", "ftp://h", "http://h/a b", "http://h/${x}"] {
            assert!(matches!(config(bad, None).validate(), Err(ConfigError::PublicUrl(_))), "{bad}");
        }
        let missing = config("http://h", Some("/nonexistent/machinist".into())).validate();
        assert!(matches!(missing, Err(ConfigError::ArtifactRoot { .. })));
        let parsed: HttpConfig =
            serde_json::from_str(r#"{"publicUrl": "http://h", "ramdisk": {"kernel": "k", "initrd": "i"}}"#).unwrap();
        assert_eq!(
            (parsed.listen, parsed.report_limit, parsed.log_limit),
            (None, DEFAULT_REPORT_LIMIT, DEFAULT_LOG_LIMIT)
        );
        // Without a ramdisk section: machinist's own discovery image.
        let defaulted: HttpConfig = serde_json::from_str(r#"{"publicUrl": "http://h"}"#).unwrap();
        assert_eq!(defaulted.ramdisk.initrd, "ramdisk/initrd.gz");
    }

    #[test]
    fn roles_in_queries_are_labels() {
        assert!(valid_role("api") && valid_role("base-2"));
        for bad in ["", "-a", "a-", "A", "a b", "a&x=1", &"a".repeat(64)] {
            assert!(!valid_role(bad), "{bad:?}");
        }
    }
}
