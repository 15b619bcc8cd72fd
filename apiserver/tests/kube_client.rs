//! kube-rs, unchanged, against the embedded control plane: CRUD and every patch type,
//! subresources, watchers and reflectors, a Controller with a finalizer, garbage collection and
//! namespace deletion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::wait::conditions;
use kube::runtime::{reflector, watcher};
use kube::{Api, Client, ResourceExt};
use machinist_crds::Machine;
use serde_json::json;
use support::{TestServer, wait_for};

fn machine(name: &str, mac: &str) -> Machine {
    serde_json::from_value(json!({
        "apiVersion": "machinist.dev/v1alpha1",
        "kind": "Machine",
        "metadata": {"name": name, "labels": {"app": "api", "rack": name}},
        "spec": {"interfaces": [{"mac": mac}], "provider": {"manual": {}}}
    }))
    .unwrap()
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn crud_and_every_patch_type() {
    let server = TestServer::start().await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let created = maps.create(&PostParams::default(), &config_map("cm1")).await.unwrap();
    assert!(created.uid().is_some() && created.creation_timestamp().is_some());
    let version = created.resource_version().unwrap();

    // Merge, JSON and strategic merge patches.
    maps.patch("cm1", &PatchParams::default(), &Patch::Merge(json!({"data": {"merged": "yes"}}))).await.unwrap();
    let json_patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/data/json", "value": "yes"}])).unwrap();
    maps.patch("cm1", &PatchParams::default(), &Patch::<()>::Json(json_patch)).await.unwrap();
    maps.patch("cm1", &PatchParams::default(), &Patch::Strategic(json!({"data": {"strategic": "yes", "k": null}})))
        .await
        .unwrap();
    let patched = maps.get("cm1").await.unwrap();
    let data = patched.data.unwrap();
    assert_eq!(
        (data.get("merged"), data.get("json"), data.get("strategic"), data.get("k")),
        (Some(&"yes".into()), Some(&"yes".into()), Some(&"yes".into()), None)
    );
    assert!(patched.metadata.resource_version.unwrap().parse::<u64>().unwrap() > version.parse::<u64>().unwrap());

    // Replace with a stale resourceVersion is a conflict.
    let mut stale = created.clone();
    stale.data = Some([("x".to_owned(), "y".to_owned())].into());
    let error = maps.replace("cm1", &PostParams::default(), &stale).await.unwrap_err();
    assert!(matches!(error, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"), "{error:?}");

    // Server-side apply creates, re-applies without a new revision, and owns its fields.
    let machines: Api<Machine> = Api::namespaced(server.client.clone(), "default");
    let apply = PatchParams::apply("test-manager");
    let applied = machines.patch("m1", &apply, &Patch::Apply(machine("m1", "52:54:00:00:00:01"))).await.unwrap();
    let again = machines.patch("m1", &apply, &Patch::Apply(machine("m1", "52:54:00:00:00:01"))).await.unwrap();
    assert_eq!(
        applied.resource_version(),
        again.resource_version(),
        "re-applying the same configuration writes nothing"
    );
    assert!(again.managed_fields().iter().any(|m| m.manager.as_deref() == Some("test-manager")));
    assert_eq!(again.metadata.generation, Some(1));

    // Status subresource: status changes do not bump the generation; spec changes there are ignored.
    let status = json!({"status": {"phase": "Inspecting"}, "spec": {"debug": true}});
    let after_status = machines.patch_status("m1", &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    assert_eq!(
        after_status.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}")).as_deref(),
        Some("Inspecting")
    );
    assert!(!after_status.spec.debug);
    assert_eq!(after_status.metadata.generation, Some(1));
    let after_spec = machines
        .patch(
            "m1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"debug": true}, "status": {"phase": "Ready"}})),
        )
        .await
        .unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert!(after_spec.spec.debug);
    assert_eq!(
        after_spec.status.and_then(|s| s.phase).map(|p| format!("{p:?}")).as_deref(),
        Some("Inspecting"),
        "the main resource ignores status"
    );

    // Lists with selectors and paging.
    for i in 2..=7 {
        machines
            .create(&PostParams::default(), &machine(&format!("m{i}"), &format!("52:54:00:00:00:0{i}")))
            .await
            .unwrap();
    }
    let page = machines.list(&ListParams::default().limit(4)).await.unwrap();
    assert_eq!(page.items.len(), 4);
    let token = page.metadata.continue_.clone().unwrap();
    let rest = machines.list(&ListParams::default().limit(4).continue_token(&token)).await.unwrap();
    assert_eq!(rest.items.len(), 3);
    assert!(rest.metadata.continue_.is_none_or(|c| c.is_empty()));
    let selected = machines.list(&ListParams::default().labels("rack in (m2,m3),app=api")).await.unwrap();
    assert_eq!(selected.items.iter().map(|m| m.name_any()).collect::<Vec<_>>(), ["m2", "m3"]);
    let by_field = machines.list(&ListParams::default().fields("metadata.name=m5")).await.unwrap();
    assert_eq!(by_field.items.len(), 1);
    let by_phase = machines.list(&ListParams::default().fields("status.phase=Inspecting")).await.unwrap();
    assert_eq!(by_phase.items.iter().map(|m| m.name_any()).collect::<Vec<_>>(), ["m1"]);

    // generateName and dryRun.
    let mut generated = config_map("");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = maps.create(&PostParams::default(), &generated).await.unwrap();
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);
    let dry = PostParams { dry_run: true, ..PostParams::default() };
    maps.create(&dry, &config_map("dry")).await.unwrap();
    assert!(maps.get_opt("dry").await.unwrap().is_none());

    // Delete.
    maps.delete("cm1", &DeleteParams::default()).await.unwrap();
    assert!(maps.get_opt("cm1").await.unwrap().is_none());
    server.stop().await;
}

#[tokio::test]
async fn watcher_reflector_and_resumed_watches() {
    let server = TestServer::start().await;
    let machines: Api<Machine> = Api::namespaced(server.client.clone(), "default");
    let (reader, mut writer) = reflector::store::<Machine>();
    let mut events_seen = watcher(machines.clone(), watcher::Config::default()).boxed();
    for i in 1..=3 {
        machines
            .create(&PostParams::default(), &machine(&format!("w{i}"), &format!("52:54:00:00:01:0{i}")))
            .await
            .unwrap();
    }
    // Feed the reflector event by event until it holds the three machines.
    while reader.state().len() < 3 {
        let event =
            tokio::time::timeout(Duration::from_secs(10), events_seen.try_next()).await.unwrap().unwrap().unwrap();
        writer.apply_watcher_event(&event);
    }
    let version = machines.get("w1").await.unwrap().resource_version().unwrap();

    // A watch from a resourceVersion sees what happened after it, and nothing before.
    machines
        .patch("w2", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})))
        .await
        .unwrap();
    machines.delete("w3", &DeleteParams::default()).await.unwrap();
    let mut events = machines.watch(&WatchParams::default().timeout(10), &version).await.unwrap().boxed();
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap().unwrap() {
            WatchEvent::Added(m) => kinds.push(format!("ADDED {}", m.name_any())),
            WatchEvent::Modified(m) => kinds.push(format!("MODIFIED {}", m.name_any())),
            WatchEvent::Deleted(m) => kinds.push(format!("DELETED {}", m.name_any())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED w2", "ADDED w3", "MODIFIED w2", "DELETED w3"]);

    // The reflector follows too.
    while reader.state().len() != 2 {
        let event =
            tokio::time::timeout(Duration::from_secs(10), events_seen.try_next()).await.unwrap().unwrap().unwrap();
        writer.apply_watcher_event(&event);
    }
    assert!(reader.get(&reflector::ObjectRef::new("w3").within("default")).is_none());
    server.stop().await;
}

#[tokio::test]
async fn watches_older_than_the_history_are_gone() {
    let server = TestServer::start_with(|config| config.history = 5).await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let first = maps.create(&PostParams::default(), &config_map("c0")).await.unwrap().resource_version().unwrap();
    for i in 1..10 {
        maps.create(&PostParams::default(), &config_map(&format!("c{i}"))).await.unwrap();
    }
    let mut events = maps.watch(&WatchParams::default().timeout(5), &first).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Error(status)) => assert_eq!((status.code, status.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // kube's watcher relists after a 410 and carries on.
    let listed = maps.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 10);
    server.stop().await;
}

/// A paged list is one snapshot: page 2 is served at page 1's revision, so a watch from the
/// last page's resourceVersion delivers a change made between the pages (before, page 2 came
/// at the current revision and the change was lost to every watcher's cache).
#[tokio::test]
async fn the_pages_of_a_list_are_one_snapshot_and_a_watch_from_it_misses_nothing() {
    let server = TestServer::start().await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    for i in 0..1000 {
        maps.create(&PostParams::default(), &config_map(&format!("cm{i:04}"))).await.unwrap();
    }
    let first = maps.list(&ListParams::default().limit(500)).await.unwrap();
    assert_eq!(first.items.len(), 500);
    let revision = first.metadata.resource_version.clone().unwrap();
    // Between the pages: a change on page 1, a delete and a create on page 2.
    maps.patch("cm0000", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "changed"}}))).await.unwrap();
    maps.delete("cm0700", &DeleteParams::default()).await.unwrap();
    maps.create(&PostParams::default(), &config_map("cm0700a")).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let second = maps.list(&ListParams::default().limit(500).continue_token(&token)).await.unwrap();
    assert_eq!(second.metadata.resource_version.as_deref(), Some(revision.as_str()), "page 2 at page 1's revision");
    let names: Vec<String> = second.items.iter().map(|m| m.name_any()).collect();
    assert_eq!(names.len(), 500);
    assert!(names.contains(&"cm0700".to_owned()) && !names.contains(&"cm0700a".to_owned()), "as at page 1");
    let mut events = maps.watch(&WatchParams::default().timeout(5), &revision).await.unwrap().boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap() {
            Some(WatchEvent::Modified(m)) => seen.push(format!("modified {}", m.name_any())),
            Some(WatchEvent::Deleted(m)) => seen.push(format!("deleted {}", m.name_any())),
            Some(WatchEvent::Added(m)) => seen.push(format!("added {}", m.name_any())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["modified cm0000", "deleted cm0700", "added cm0700a"]);
    server.stop().await;
}

/// A continue token whose revision the history no longer reaches gets 410 Expired, as from
/// Kubernetes; the client starts a new list.
#[tokio::test]
async fn a_continue_token_older_than_the_history_is_expired() {
    let server = TestServer::start_with(|config| config.history = 5).await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    for i in 0..10 {
        maps.create(&PostParams::default(), &config_map(&format!("c{i}"))).await.unwrap();
    }
    let first = maps.list(&ListParams::default().limit(4)).await.unwrap();
    for i in 0..6 {
        maps.patch(&format!("c{i}"), &PatchParams::default(), &Patch::Merge(json!({"data": {"n": "1"}})))
            .await
            .unwrap();
    }
    let token = first.metadata.continue_.unwrap();
    match maps.list(&ListParams::default().limit(4).continue_token(&token)).await {
        Err(kube::Error::Api(status)) => assert_eq!((status.code, status.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Expired, got {:?}", other.map(|l| l.items.len())),
    }
    assert_eq!(maps.list(&ListParams::default()).await.unwrap().items.len(), 10);
    server.stop().await;
}

/// The garbage collector deletes what it listed with its uid as precondition: an object made
/// since under the same name is left alone (it used to be deleted by name).
#[tokio::test]
async fn garbage_collection_never_deletes_a_newer_object_of_the_same_name() {
    let server = TestServer::start().await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("reused")).await.unwrap();
    let api = &server.running.api;
    let resource = api.registry().find("", "v1", "configmaps").unwrap();
    let listed =
        api.store.get(&resource.storage, &machinist_apiserver::store::ObjectKey::new("default", "reused")).unwrap();
    maps.delete("reused", &DeleteParams::default()).await.unwrap();
    let newer = maps.create(&PostParams::default(), &config_map("reused")).await.unwrap();
    machinist_apiserver::controllers::delete(api, &resource, &listed);
    assert_eq!(maps.get("reused").await.unwrap().uid(), newer.uid(), "the newer object was deleted");
    // The object it listed is still deleted when it is the one there.
    let current =
        api.store.get(&resource.storage, &machinist_apiserver::store::ObjectKey::new("default", "reused")).unwrap();
    machinist_apiserver::controllers::delete(api, &resource, &current);
    assert!(maps.get_opt("reused").await.unwrap().is_none());
    server.stop().await;
}

#[derive(Debug, thiserror::Error)]
#[error("reconcile failed: {0}")]
struct ReconcileError(#[source] Box<kube::runtime::finalizer::Error<kube::Error>>);

struct Context {
    client: Client,
    cleanups: AtomicUsize,
}

async fn reconcile(object: Arc<Machine>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    let api: Api<Machine> = Api::namespaced(context.client.clone(), &object.namespace().unwrap_or_default());
    finalizer(&api, "machines.machinist.dev/test", object, |event| async {
        match event {
            Finalizer::Apply(machine) => {
                let status = json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "status": {"phase": "Registered"}});
                api.patch_status(&machine.name_any(), &PatchParams::apply("test-controller").force(), &Patch::Apply(status)).await?;
                Ok(Action::await_change())
            }
            Finalizer::Cleanup(_) => {
                context.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| ReconcileError(Box::new(e)))
}

#[tokio::test]
async fn a_controller_with_a_finalizer_runs_against_it() {
    let server = TestServer::start().await;
    let machines: Api<Machine> = Api::namespaced(server.client.clone(), "default");
    let context = Arc::new(Context { client: server.client.clone(), cleanups: AtomicUsize::new(0) });
    let controller = Controller::new(machines.clone(), watcher::Config::default())
        .run(reconcile, |_, _, _| Action::requeue(Duration::from_secs(1)), Arc::clone(&context))
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    machines.create(&PostParams::default(), &machine("c1", "52:54:00:00:02:01")).await.unwrap();
    let reconciled = wait_for(&machines, "c1", |m: Option<&Machine>| {
        m.and_then(|m| m.status.as_ref()).and_then(|s| s.phase).is_some()
    })
    .await
    .unwrap();
    assert_eq!(reconciled.finalizers(), ["machines.machinist.dev/test"]);
    // The status apply is recorded as the controller's, on the status subresource.
    assert!(
        reconciled.managed_fields().iter().any(|m| m.manager.as_deref() == Some("test-controller")
            && m.subresource.as_deref() == Some("status")
            && m.operation.as_deref() == Some("Apply")),
        "{:?}",
        reconciled.managed_fields()
    );

    // Deleting waits for the controller's cleanup, then the object is gone.
    let uid = reconciled.uid().unwrap();
    machines.delete("c1", &DeleteParams::default()).await.unwrap();
    wait_for(&machines, "c1", conditions::is_deleted(&uid)).await;
    assert_eq!(context.cleanups.load(Ordering::SeqCst), 1);
    controller.abort();
    server.stop().await;
}

#[tokio::test]
async fn owners_take_their_dependents_and_namespaces_their_contents() {
    let server = TestServer::start().await;
    let namespaces: Api<Namespace> = Api::all(server.client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "lab"}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    let machines: Api<Machine> = Api::namespaced(server.client.clone(), "lab");
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "lab");
    let owner = machines.create(&PostParams::default(), &machine("owner", "52:54:00:00:03:01")).await.unwrap();
    let mut dependent = config_map("dependent");
    dependent.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "machinist.dev/v1alpha1".into(),
        kind: "Machine".into(),
        name: "owner".into(),
        uid: owner.uid().unwrap(),
        ..Default::default()
    }]);
    let dependent = maps.create(&PostParams::default(), &dependent).await.unwrap();
    maps.create(&PostParams::default(), &config_map("bystander")).await.unwrap();

    machines.delete("owner", &DeleteParams::default()).await.unwrap();
    wait_for(&maps, "dependent", conditions::is_deleted(&dependent.uid().unwrap())).await;
    assert!(maps.get_opt("bystander").await.unwrap().is_some());

    // Foreground: the owner waits for its dependents.
    let owner = machines.create(&PostParams::default(), &machine("owner2", "52:54:00:00:03:02")).await.unwrap();
    let mut second = config_map("dependent2");
    second.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "machinist.dev/v1alpha1".into(),
        kind: "Machine".into(),
        name: "owner2".into(),
        uid: owner.uid().unwrap(),
        ..Default::default()
    }]);
    let second = maps.create(&PostParams::default(), &second).await.unwrap();
    machines.delete("owner2", &DeleteParams::foreground()).await.unwrap();
    wait_for(&machines, "owner2", conditions::is_deleted(&owner.uid().unwrap())).await;
    assert!(maps.get_opt("dependent2").await.unwrap().is_none_or(|d| d.uid() != second.uid()));

    // Deleting the namespace deletes what it holds, then itself.
    let lab = namespaces.get("lab").await.unwrap();
    namespaces.delete("lab", &DeleteParams::default()).await.unwrap();
    let terminating = namespaces.get("lab").await;
    if let Ok(ns) = terminating {
        assert!(ns.metadata.deletion_timestamp.is_some());
    }
    wait_for(&namespaces, "lab", conditions::is_deleted(&lab.uid().unwrap())).await;
    assert!(maps.get_opt("bystander").await.unwrap().is_none());
    server.stop().await;
}

/// A delete that races a writer is retried inside the server, as Kubernetes does: only the
/// caller's own preconditions give a 409. (A controller writing status while a user deletes
/// must not fail the delete; CI once saw exactly that.)
#[tokio::test]
async fn deletes_racing_writers_succeed_and_preconditions_still_conflict() {
    let server = TestServer::start().await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let names: Vec<String> = (0..20).map(|i| format!("raced-{i}")).collect();
    for name in &names {
        let mut map = config_map(name);
        map.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        maps.create(&PostParams::default(), &map).await.unwrap();
    }
    // Writers rewrite every object as fast as they can while the deletes go on; each write is
    // a replace under the resourceVersion it read, so every write bumps the revision.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = names
        .iter()
        .cloned()
        .map(|name| {
            let (maps, stop, writes) = (maps.clone(), Arc::clone(&stop), Arc::clone(&writes));
            tokio::spawn(async move {
                for round in 0..2_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let patch = json!({"data": {"round": round.to_string()}});
                    if maps.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.is_ok() {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for name in &names {
        for _ in 0..5 {
            maps.delete(name, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("delete {name}: {e}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(writes.load(Ordering::Relaxed) > 0, "the writers wrote while the deletes ran");
    for name in &names {
        assert!(maps.get(name).await.unwrap().metadata.deletion_timestamp.is_some(), "{name} is marked");
    }

    // A stale resourceVersion precondition is the caller's own: that one conflicts.
    let current = maps.get("raced-0").await.unwrap();
    let stale = DeleteParams {
        preconditions: Some(kube::api::Preconditions { resource_version: Some("1".into()), uid: current.uid() }),
        ..DeleteParams::default()
    };
    let kube::Error::Api(status) = maps.delete("raced-0", &stale).await.unwrap_err() else {
        panic!("not an API error")
    };
    assert_eq!(status.code, 409, "{status:?}");
}

/// The home holds every Secret, the admin token and the CA key: the directory is 0700 and every
/// file in it 0600, also when an older home was looser (it is tightened on start).
#[tokio::test]
async fn the_home_and_everything_in_it_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(home.join("state.db"), b"").unwrap();
    std::fs::set_permissions(home.join("state.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = TestServer::start_with(|config| config.home = home.clone()).await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("written")).await.unwrap();
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o700);
    let files: Vec<_> = std::fs::read_dir(&home).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.iter().any(|f| f.ends_with("state.db-wal")), "{files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    server.stop().await;
}

/// Events expire once the event TTL (Kubernetes' `--event-ttl`, 1 h by default; 1 s here) has
/// passed since they were last written.
#[tokio::test]
async fn events_expire_after_their_ttl() {
    use k8s_openapi::api::core::v1::Event;
    let server = TestServer::start_with(|config| config.limits.event_ttl = Duration::from_secs(1)).await;
    let events: Api<Event> = Api::namespaced(server.client.clone(), "default");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "short-lived"},
        "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": "default"},
        "reason": "Test", "message": "m", "type": "Normal", "count": 1
    }))
    .unwrap();
    let created = events.create(&PostParams::default(), &event).await.unwrap();
    let uid = created.uid().unwrap();
    let deleted = kube::runtime::wait::await_condition(events.clone(), "short-lived", conditions::is_deleted(&uid));
    let gone = tokio::time::timeout(Duration::from_secs(20), deleted).await;
    assert!(gone.is_ok_and(|r| r.is_ok()), "the Event outlived its TTL");
    server.stop().await;
}

/// The watch history is bounded in bytes too: large objects push the oldest changes out (a
/// watch from before them gets 410 Expired), however few they are; recent ones stay.
#[tokio::test]
async fn the_watch_history_is_bounded_in_bytes() {
    let server = TestServer::start_with(|config| config.history_bytes = 64 * 1024).await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let big = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"blob": "x".repeat(4096)}})).unwrap()
    };
    let first = maps.create(&PostParams::default(), &big("b00")).await.unwrap().resource_version().unwrap();
    let mut versions = Vec::new();
    for i in 1..40 {
        versions.push(
            maps.create(&PostParams::default(), &big(&format!("b{i:02}"))).await.unwrap().resource_version().unwrap(),
        );
    }
    // 40 changes of ~4 KiB: far under the 10,000-change bound, over 64 KiB.
    let mut events = maps.watch(&WatchParams::default().timeout(5), &first).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Error(status)) => assert_eq!((status.code, status.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Expired, got {other:?}"),
    }
    let recent = &versions[versions.len() - 3];
    let mut events = maps.watch(&WatchParams::default().timeout(5), recent).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Added(m)) => assert_eq!(m.name_any(), "b38"),
        other => panic!("expected the change after {recent}, got {other:?}"),
    }
    server.stop().await;
}

/// Storage work is bounded (`Limits::max_concurrent_work`): with one place, many writers at
/// once all get their turn (queued, not refused or deadlocked) and each write lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_work_bound_wait_their_turn() {
    let server = TestServer::start_with(|config| config.limits.max_concurrent_work = 1).await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let writers = (0..32).map(|i| {
        let maps = maps.clone();
        async move {
            let name = format!("q{i:02}");
            maps.create(&PostParams::default(), &config_map(&name)).await?;
            let patch = json!({"data": {"written": name}});
            maps.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await
        }
    });
    let written = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(writers)).await.unwrap();
    for (i, result) in written.into_iter().enumerate() {
        let map = result.unwrap_or_else(|e| panic!("writer {i} failed: {e}"));
        assert_eq!(map.data.unwrap()["written"], format!("q{i:02}"));
    }
    assert_eq!(maps.list(&ListParams::default()).await.unwrap().items.len(), 32);
    server.stop().await;
}

/// Watches open at once are bounded (`Limits::max_watches`): one more is answered 429 Too Many
/// Requests, and once a watch ends its place is free again. Seen with curl: kube's client
/// retries a 429 by itself, as it should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_watches_are_bounded() {
    use std::io::BufRead;
    let server = TestServer::start_with(|config| config.limits.max_watches = 2).await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    maps.create(&PostParams::default(), &config_map("w")).await.unwrap();
    let home = server.kubeconfig().parent().unwrap().to_path_buf();
    let token = std::fs::read_to_string(home.join("token")).unwrap();
    let url = format!("https://{}/api/v1/namespaces/default/configmaps?watch=1", server.running.address);
    let curl = |extra: &[&str]| {
        let mut command = std::process::Command::new("curl");
        command
            .args(["-sS", "--no-buffer", "--cacert"])
            .arg(home.join("ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
            .args(extra)
            .arg(&url);
        command
    };
    // Two watches, each streaming (its initial ADDED line arrived): both hold a place.
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut child = curl(&["--max-time", "60"]).stdout(std::process::Stdio::piped()).spawn().expect("curl");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
        assert!(first.contains("\"ADDED\""), "{first}");
        open.push(child);
    }
    let status = |output: std::process::Output| String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let refused = tokio::task::spawn_blocking({
        let mut command = curl(&["--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"]);
        move || command.output().unwrap()
    });
    assert_eq!(status(refused.await.unwrap()), "429");
    // A watch whose client goes away frees its place: the server notices the closed connection,
    // so a new watch is accepted within a bounded number of attempts.
    let mut gone = open.remove(0);
    gone.kill().unwrap();
    gone.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut command = curl(&["--max-time", "2", "-o", "/dev/null", "-w", "%{http_code}"]);
        let code = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
        let code = status(code);
        // 200 then cut by --max-time (curl exits 28, having printed the code).
        if code == "200" {
            break;
        }
        assert_eq!(code, "429");
        assert!(std::time::Instant::now() < deadline, "the ended watch never freed its place");
    }
    for mut child in open {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    server.stop().await;
}

fn owned_config_map(name: &str, owner: &ConfigMap) -> ConfigMap {
    let mut map = config_map(name);
    map.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.name_any(),
        uid: owner.uid().unwrap(),
        ..Default::default()
    }]);
    map
}

/// Writes `count` unrelated ConfigMaps in-process (quicker than one HTTPS request each).
async fn write_unrelated_config_maps(server: &TestServer, count: usize) {
    use machinist_apiserver::semantics::request::{FieldValidation, Request};
    let api = Arc::clone(&server.running.api);
    tokio::task::spawn_blocking(move || {
        let resource = api.registry().find("", "v1", "configmaps").unwrap();
        let request = Request {
            resource,
            version: "v1".into(),
            namespace: Some("default".into()),
            name: None,
            subresource: None,
            dry_run: false,
            field_manager: "test".into(),
            field_validation: FieldValidation::Strict,
        };
        for i in 0..count {
            let object =
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("unrelated-{i}")}});
            api.create(&request, object).unwrap();
        }
    })
    .await
    .unwrap();
}

/// The garbage collector's work follows what changed: deleting an owner among many unrelated
/// objects examines the owner and its dependents, not every object (it used to list every
/// object on each change that deleted something, and every 5 s).
#[tokio::test]
async fn deleting_an_owner_among_many_objects_examines_only_what_changed() {
    let server = TestServer::start().await;
    write_unrelated_config_maps(&server, 1_000).await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let owner = maps.create(&PostParams::default(), &config_map("owner")).await.unwrap();
    let mut dependents = Vec::new();
    for i in 0..3 {
        dependents.push(
            maps.create(&PostParams::default(), &owned_config_map(&format!("dependent-{i}"), &owner)).await.unwrap(),
        );
    }
    let before = server.running.controllers.examined();
    maps.delete("owner", &DeleteParams::default()).await.unwrap();
    for dependent in &dependents {
        wait_for(&maps, &dependent.name_any(), conditions::is_deleted(&dependent.uid().unwrap())).await;
    }
    let examined = server.running.controllers.examined() - before;
    assert!(examined < 50, "deleting one owner examined {examined} objects");
    assert_eq!(maps.list(&ListParams::default().limit(1)).await.unwrap().metadata.remaining_item_count, Some(999));
    server.stop().await;
}

/// What the controllers know is rebuilt from the store at start: an owner removed while the
/// server was not running (so no change announced it) still takes its dependent.
#[tokio::test]
async fn garbage_collection_resumes_from_the_store_after_a_restart() {
    use machinist_apiserver::store::{ObjectKey, Precondition, ResourceKey, Store};
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let server = TestServer::start_with(|config| config.home = home.clone()).await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let owner = maps.create(&PostParams::default(), &config_map("owner")).await.unwrap();
    let dependent = maps.create(&PostParams::default(), &owned_config_map("dependent", &owner)).await.unwrap();
    maps.create(&PostParams::default(), &config_map("bystander")).await.unwrap();
    server.stop().await;
    {
        let store = Store::open(&home.join("state.db"), 10).unwrap();
        store
            .delete(&ResourceKey::new("", "configmaps"), &ObjectKey::new("default", "owner"), Precondition::Exists)
            .unwrap();
    }
    let server = TestServer::start_with(|config| config.home = home.clone()).await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    wait_for(&maps, "dependent", conditions::is_deleted(&dependent.uid().unwrap())).await;
    assert!(maps.get_opt("bystander").await.unwrap().is_some());
    server.stop().await;
}
