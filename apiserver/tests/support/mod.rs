//! A control plane started for one test, in its own directory, on a free loopback port.

#![allow(dead_code)] // each test file uses its own subset
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::BodyExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use machinist_apiserver::{Running, start};

pub struct TestServer {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub client: Client,
}

/// A free loopback port, with the machinist CRDs installed at start (as `machinist up` does).
pub fn config(dir: &std::path::Path) -> machinist_apiserver::Config {
    machinist_apiserver::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        crds: machinist_crds::all_crds(),
        ..machinist_apiserver::Config::new(dir)
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut machinist_apiserver::Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        adjust(&mut config);
        let running = start(config).await.unwrap();
        let client = client_for(&running.kubeconfig).await;
        Self { running, dir, client }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.running.kubeconfig.clone()
    }

    /// A client with another token (or none).
    pub async fn client_with_token(&self, token: Option<&str>) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.running.kubeconfig).unwrap();
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        config.auth_info.token = token.map(|t| t.to_owned().into());
        Client::try_from(config).unwrap()
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

pub async fn client_for(kubeconfig: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// Sends a raw request; returns the status code and the body as JSON (or a string).
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let request =
        http::Request::builder().method(method).uri(path).header("content-type", content_type).body(body).unwrap();
    let response = client.send(request.map(kube::client::Body::from)).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// Waits, bounded, for a condition on one object, driven by a watch (no polling).
pub async fn wait_for<K>(api: &kube::Api<K>, name: &str, condition: impl kube::runtime::wait::Condition<K>) -> Option<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    tokio::time::timeout(Duration::from_secs(30), kube::runtime::wait::await_condition(api.clone(), name, condition))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {name}"))
        .unwrap()
}
