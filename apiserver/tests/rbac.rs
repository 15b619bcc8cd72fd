//! ServiceAccount tokens and RBAC, through kube-rs and kubectl: a token Secret gets a token that
//! authenticates as its ServiceAccount, whose requests Roles and bindings allow or refuse with
//! Kubernetes' 403; `kubectl auth can-i` (with `--list`, with `--as`) and `kubectl auth whoami`
//! answer through the reviews.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::TestServer;

fn kubectl() -> PathBuf {
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/kubectl");
    if pinned.is_file() { pinned } else { PathBuf::from("kubectl") }
}

fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).unwrap()
}

async fn create<K>(client: &Client, namespace: Option<&str>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    // Namespaced or not, by the path: kube's typed constructors need the scope at compile time.
    let api: Api<K> = Api::all_with(client.clone(), &K::DynamicType::default());
    match namespace {
        None => api.create(&PostParams::default(), &object(value)).await.unwrap(),
        Some(ns) => {
            let mut value = value;
            value["metadata"]["namespace"] = json!(ns);
            let request = kube::core::Request::new(K::url_path(&K::DynamicType::default(), Some(ns)))
                .create(&PostParams::default(), serde_json::to_vec(&value).unwrap())
                .unwrap();
            client.request(request).await.unwrap()
        }
    }
}

/// Namespaces `tokens` and `machines`; ServiceAccount `boot` in `tokens` with a token Secret;
/// a Role in `tokens` on Secrets; a ClusterRole on ConfigMaps bound in `machines` only.
async fn setup(server: &TestServer) -> String {
    let admin = &server.client;
    for ns in ["tokens", "machines", "elsewhere"] {
        let _: Namespace = create(admin, None, json!({"metadata": {"name": ns}})).await;
    }
    let _: ServiceAccount = create(admin, Some("tokens"), json!({"metadata": {"name": "boot"}})).await;
    let _: Role = create(
        admin,
        Some("tokens"),
        json!({"metadata": {"name": "tokens"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create"]},
        ]}),
    )
    .await;
    let _: ClusterRole = create(
        admin,
        None,
        json!({"metadata": {"name": "logs"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "patch"]},
        ]}),
    )
    .await;
    for (ns, kind, role) in [("tokens", "Role", "tokens"), ("machines", "ClusterRole", "logs")] {
        let _: RoleBinding = create(
            admin,
            Some(ns),
            json!({"metadata": {"name": "boot"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "boot", "namespace": "tokens"}]}),
        )
        .await;
    }
    let secret: Secret = create(
        admin,
        Some("tokens"),
        json!({
            "metadata": {"name": "boot-token", "annotations": {"kubernetes.io/service-account.name": "boot"}},
            "type": "kubernetes.io/service-account-token",
        }),
    )
    .await;
    let token = secret.data.unwrap()["token"].0.clone();
    String::from_utf8(token).unwrap()
}

#[tokio::test]
async fn a_service_account_token_is_allowed_what_its_bindings_grant_and_nothing_else() {
    let server = TestServer::start().await;
    let token = setup(&server).await;
    let boot = server.client_with_token(Some(&token)).await;

    // Granted: Secrets of its own namespace, ConfigMaps of `machines`.
    let secrets: Api<Secret> = Api::namespaced(boot.clone(), "tokens");
    assert!(
        secrets
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("boot-token"))
    );
    let logs: Api<ConfigMap> = Api::namespaced(boot.clone(), "machines");
    logs.create(&PostParams::default(), &object(json!({"metadata": {"name": "log"}}))).await.unwrap();
    let patch = json!({"data": {"line": "1"}});
    logs.patch("log", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();

    // Refused, with Kubernetes' message: another namespace, another verb, all namespaces.
    let refused = |result: Result<_, kube::Error>| match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let other: Api<Secret> = Api::namespaced(boot.clone(), "machines");
    let (code, message) = refused(other.get("anything").await.map(drop));
    assert_eq!(code, 403);
    assert_eq!(
        message,
        r#"secrets "anything" is forbidden: User "system:serviceaccount:tokens:boot" cannot get resource "secrets" in API group "" in the namespace "machines""#
    );
    let (code, _) = refused(secrets.delete("boot-token", &DeleteParams::default()).await.map(drop));
    assert_eq!(code, 403);
    let (code, message) = refused(Api::<Secret>::all(boot.clone()).list(&Default::default()).await.map(drop));
    assert_eq!(code, 403);
    assert!(message.ends_with("at the cluster scope"), "{message}");
    let (code, _) =
        refused(Api::<ConfigMap>::namespaced(boot.clone(), "elsewhere").list(&Default::default()).await.map(drop));
    assert_eq!(code, 403);
    // Discovery is every authenticated user's.
    boot.apiserver_version().await.unwrap();

    // A token nobody issued, or a made-up one naming the Secret, is not a user.
    let forged = format!("{}.{}", token.split_once('.').unwrap().0, "0".repeat(64));
    for bad in [forged.as_str(), "nonsense", "a.b"] {
        let client = server.client_with_token(Some(bad)).await;
        let (code, _) = refused(client.apiserver_version().await.map(drop));
        assert_eq!(code, 401, "{bad}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_token_dies_with_its_service_account_and_cannot_be_rewritten() {
    let server = TestServer::start().await;
    let token = setup(&server).await;
    let admin = &server.client;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "tokens");

    // The server's token stays whatever a writer puts in the Secret.
    let mut secret = secrets.get("boot-token").await.unwrap();
    secret.data.as_mut().unwrap().insert("token".into(), k8s_openapi::ByteString(b"chosen".to_vec()));
    let replaced = secrets.replace("boot-token", &PostParams::default(), &secret).await.unwrap();
    assert_eq!(replaced.data.unwrap()["token"].0, token.as_bytes());

    // A token Secret names an existing ServiceAccount.
    let orphan = secrets
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": {"name": "orphan", "annotations": {"kubernetes.io/service-account.name": "nobody"}},
                "type": "kubernetes.io/service-account-token",
            })),
        )
        .await;
    assert!(matches!(orphan, Err(kube::Error::Api(s)) if s.code == 422));

    // Delete the ServiceAccount and make another of that name: the old token is nobody's.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "tokens");
    accounts.delete("boot", &DeleteParams::default()).await.unwrap();
    accounts.create(&PostParams::default(), &object(json!({"metadata": {"name": "boot"}}))).await.unwrap();
    let boot = server.client_with_token(Some(&token)).await;
    match boot.apiserver_version().await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401),
        other => panic!("the old token still works: {other:?}"),
    }
    server.stop().await;
}

fn run_kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(kubectl()).arg("--kubeconfig").arg(kubeconfig).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

// kubectl runs as a blocking child process: a worker thread stays free to serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_can_i_and_whoami_answer_for_each_identity() {
    if !kubectl().is_file()
        && !machinist_e2e::prereq::need_programs("kubectl_auth_can_i_and_whoami_answer_for_each_identity", &["kubectl"])
            .unwrap_or_else(|e| panic!("{e}"))
    {
        return;
    }
    let server = TestServer::start().await;
    let token = setup(&server).await;
    let kubeconfig = server.kubeconfig();
    let as_boot = ["--as", "system:serviceaccount:tokens:boot"];
    let with_token = ["--token", token.as_str()];

    for identity in [&as_boot[..], &with_token[..]] {
        let can = |args: &[&str]| {
            let mut all = vec!["auth", "can-i"];
            all.extend_from_slice(args);
            all.extend_from_slice(identity);
            run_kubectl(&kubeconfig, &all)
        };
        assert_eq!(can(&["list", "secrets", "-n", "tokens"]), (true, "yes\n".to_owned()));
        assert_eq!(can(&["get", "secrets", "-n", "machines"]), (false, "no\n".to_owned()));
        assert_eq!(can(&["delete", "secrets", "-n", "tokens"]), (false, "no\n".to_owned()));
        assert_eq!(can(&["create", "configmaps", "-n", "machines"]), (true, "yes\n".to_owned()));
        assert_eq!(can(&["get", "/version"]), (true, "yes\n".to_owned()));

        let mut list = vec!["auth", "can-i", "--list", "-n", "tokens"];
        list.extend_from_slice(identity);
        let (ok, table) = run_kubectl(&kubeconfig, &list);
        assert!(ok, "{table}");
        let secrets_row = table.lines().find(|l| l.starts_with("secrets ")).unwrap_or_else(|| panic!("{table}"));
        assert!(secrets_row.contains("[get list watch create]"), "{table}");
        assert!(!table.lines().any(|l| l.starts_with("configmaps ")), "{table}");
        assert!(table.lines().any(|l| l.contains("/version")), "{table}");

        let mut whoami = vec!["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"];
        whoami.extend_from_slice(identity);
        assert_eq!(run_kubectl(&kubeconfig, &whoami), (true, "system:serviceaccount:tokens:boot".to_owned()));
    }
    // The admin may do anything; a ServiceAccount may not impersonate.
    assert_eq!(run_kubectl(&kubeconfig, &["auth", "can-i", "*", "*"]), (true, "yes\n".to_owned()));
    let (ok, text) =
        run_kubectl(&kubeconfig, &["get", "secrets", "-n", "tokens", "--token", &token, "--as", "machinist-admin"]);
    assert!(!ok && text.contains("cannot impersonate resource \"users\""), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_service_account_can_grant_only_what_it_holds() {
    let server = TestServer::start().await;
    let token = setup(&server).await;
    let admin = &server.client;
    let _: Role = create(admin, Some("tokens"), json!({"metadata": {"name": "rbac-writer"}, "rules": [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "patch"]},
    ]}))
    .await;
    let _: RoleBinding = create(
        admin,
        Some("tokens"),
        json!({"metadata": {"name": "boot-rbac"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rbac-writer"},
        "subjects": [{"kind": "ServiceAccount", "name": "boot"}]}),
    )
    .await;
    let boot = server.client_with_token(Some(&token)).await;
    let roles: Api<Role> = Api::namespaced(boot.clone(), "tokens");
    let role = |name: &str, verbs: serde_json::Value| -> Role {
        object(
            json!({"metadata": {"name": name}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": verbs}]}),
        )
    };
    // What it holds, it may hand on.
    roles.create(&PostParams::default(), &role("readers", json!(["get", "list"]))).await.unwrap();
    // More than it holds: refused, naming what is missing.
    match roles.create(&PostParams::default(), &role("deleters", json!(["get", "delete"]))).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403);
            assert!(
                status.message.contains("attempting to grant RBAC permissions not currently held"),
                "{}",
                status.message
            );
            assert!(status.message.contains(r#"Verbs:["delete"]"#), "{}", status.message);
        }
        other => panic!("escalation allowed: {other:?}"),
    }
    // Binding a role it does not hold the rules of (cluster-admin) is escalation too.
    let bindings: Api<RoleBinding> = Api::namespaced(boot.clone(), "tokens");
    let escalate = bindings
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "root"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "boot"}]})),
        )
        .await;
    assert!(matches!(escalate, Err(kube::Error::Api(s)) if s.code == 403));
    // A patch cannot be checked before it is applied: it needs the escalate verb.
    let patch = json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    let patched = roles.patch("readers", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await;
    assert!(matches!(patched, Err(kube::Error::Api(s)) if s.code == 403));
    assert_eq!(
        Api::<Role>::namespaced(admin.clone(), "tokens").get("readers").await.unwrap().rules.unwrap()[0].verbs,
        ["get", "list"]
    );
    server.stop().await;
}

/// One identity cannot take every watch: past `max_watches_per_user` it gets 429 while
/// another identity still gets its watch. Seen with curl (kube's client retries a 429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_bounded_per_identity() {
    use std::io::BufRead;
    let server = TestServer::start_with(|config| config.limits.max_watches_per_user = 1).await;
    let token = setup(&server).await;
    let home = server.kubeconfig().parent().unwrap().to_path_buf();
    let admin_token = std::fs::read_to_string(home.join("token")).unwrap().trim().to_owned();
    let url = format!("https://{}/api/v1/namespaces/tokens/secrets?watch=1", server.running.address);
    let curl = |token: &str, extra: &[&str]| {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--no-buffer", "--cacert"])
            .arg(home.join("ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(extra)
            .arg(&url);
        command
    };
    let mut open = curl(&admin_token, &["--max-time", "60"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(open.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("\"ADDED\""), "{first}");
    let code = |token: String| {
        let mut command = curl(&token, &["--max-time", "2", "-o", "/dev/null", "-w", "%{http_code}"]);
        tokio::task::spawn_blocking(move || String::from_utf8(command.output().unwrap().stdout).unwrap())
    };
    assert_eq!(code(admin_token.clone()).await.unwrap(), "429", "the admin's second watch");
    assert_eq!(code(token).await.unwrap(), "200", "another identity's first watch");
    open.kill().unwrap();
    open.wait().unwrap();
    server.stop().await;
}
