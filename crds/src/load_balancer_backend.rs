//! `LoadBalancerBackend`: what the seeds did by hand in HAProxy, to be kept in line with the
//! Ready machines a selector picks. No controller acts on it yet.

// clippy reads the repeated `type_ = …` of several `printcolumn(…)` as one duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Conditions;

/// `host:port`, `:port` or `[v6]:port`, port 1–65535.
pub const BIND_PATTERN: &str = r"^(\*|[0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)?:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

/// A frontend and the Ready machines to put behind it. Not acted on yet: no controller
/// configures HAProxy.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "machinist.dev",
    version = "v1alpha1",
    kind = "LoadBalancerBackend",
    namespaced,
    status = "LoadBalancerBackendStatus",
    shortname = "lbb",
    category = "machinist",
    derive = "PartialEq",
    doc = "An HAProxy frontend and backend whose servers are to be the Ready machines a selector picks: new machines join, deprovisioned ones drain and leave. Not acted on yet: no controller configures HAProxy or writes the status.",
    printcolumn(
        name = "Frontend",
        type_ = "string",
        json_path = ".spec.frontend.bind",
        description = "Address the frontend listens on"
    ),
    printcolumn(name = "Port", type_ = "integer", json_path = ".spec.port", description = "Port on each member"),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyMembers",
        description = "Members taking traffic"
    ),
    printcolumn(
        name = "Total",
        type_ = "integer",
        json_path = ".status.totalMembers",
        description = "Members selected"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerBackendSpec {
    /// Where clients are to connect and how requests are spread. Not acted on yet.
    pub frontend: Frontend,
    /// Machines (same namespace) to serve this backend once Ready. Not acted on yet.
    pub selector: LabelSelector,
    /// Port the service listens on, on each machine. Not acted on yet.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Health check for HAProxy to run against each member. Not acted on yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// HAProxy statistics page (the seeds' stats on :9090). Not acted on yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// Seconds a leaving member is to drain (no new connections, live ones finish) before
    /// removal. Not acted on yet.
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub drain_seconds: i32,
}

fn default_drain_seconds() -> i32 {
    30
}

/// An HAProxy frontend.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Frontend {
    /// Listen address: `0.0.0.0:80`, `:80`, `[::]:443`.
    #[schemars(pattern(BIND_PATTERN))]
    pub bind: String,
    /// Proxy mode.
    #[serde(default)]
    pub mode: ProxyMode,
    /// Balancing algorithm. Only algorithms that allow servers to be added at run time are
    /// offered, so that members can join without a reload.
    #[serde(default)]
    pub balance: Balance,
}

/// HAProxy proxy mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// HTTP (layer 7).
    #[default]
    Http,
    /// TCP (layer 4).
    Tcp,
}

/// HAProxy balancing algorithm.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Each member in turn, weighted.
    #[default]
    Roundrobin,
    /// The member with the fewest connections.
    Leastconn,
    /// The first member with free slots.
    First,
    /// A random member.
    Random,
}

/// Health check run against each member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'http' || (!has(self.path) && !has(self.expectStatus))").message("path and expectStatus apply to http health checks only"))]
pub struct HealthCheck {
    /// Kind of check.
    #[serde(rename = "type")]
    pub kind: HealthCheckType,
    /// HTTP path requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[^\s]*$"), length(max = 1024))]
    pub path: Option<String>,
    /// HTTP status expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: Option<i32>,
    /// Seconds between checks.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i32,
    /// Consecutive successes before a member is up.
    #[serde(default = "default_rise")]
    #[schemars(range(min = 1, max = 100))]
    pub rise: i32,
    /// Consecutive failures before a member is down.
    #[serde(default = "default_fall")]
    #[schemars(range(min = 1, max = 100))]
    pub fall: i32,
}

fn default_interval() -> i32 {
    2
}
fn default_rise() -> i32 {
    2
}
fn default_fall() -> i32 {
    3
}

/// Kind of health check.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckType {
    /// A TCP connection opens.
    Tcp,
    /// An HTTP request gets the expected status (2xx/3xx by default).
    Http,
}

/// HAProxy statistics page.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Listen address of the page (`:9090`).
    #[schemars(pattern(BIND_PATTERN))]
    pub bind: String,
    /// Path of the page.
    #[serde(default = "default_stats_uri")]
    #[schemars(regex(pattern = r"^/[^\s]*$"), length(max = 1024))]
    pub uri: String,
    /// Seconds between automatic page refreshes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub refresh_seconds: Option<i32>,
}

fn default_stats_uri() -> String {
    "/".to_owned()
}

/// Observed state of a backend. Not written yet: no controller acts on LoadBalancerBackends.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerBackendStatus {
    /// Members and their state in HAProxy. Not written yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["machine"]))]
    pub members: Vec<Member>,
    /// Members taking traffic. Not written yet.
    #[serde(default)]
    pub ready_members: i32,
    /// Members selected (any state). Not written yet.
    #[serde(default)]
    pub total_members: i32,
    /// `Ready` (HAProxy configured and in line), with transition times. Not written yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
    /// The `metadata.generation` this status was computed from. Not written yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One server of the backend.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The Machine.
    pub machine: String,
    /// `ip:port` HAProxy sends traffic to.
    pub address: String,
    /// State in HAProxy.
    pub state: MemberState,
}

/// State of a member in HAProxy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Added, health checks not yet passing.
    Pending,
    /// Taking traffic.
    Ready,
    /// No new connections; live ones finish.
    Draining,
    /// Out of rotation (failing checks or removed by an operator).
    Maintenance,
}
