"""Drives the official Python Kubernetes client against the embedded control plane.

Usage: client.py KUBECONFIG. Prints one JSON object with what it observed; the Rust test
(apiserver/tests/python_client.rs) asserts on it.
"""
import json
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "machinist.dev", "v1alpha1", "machines"


def machine(name, mac, labels):
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Machine",
        "metadata": {"name": name, "labels": labels},
        "spec": {"interfaces": [{"mac": mac}], "provider": {"manual": {}}},
    }


def main():
    config.load_kube_config(config_file=sys.argv[1])
    core = client.CoreV1Api()
    custom = client.CustomObjectsApi()
    out = {}

    out["namespaces"] = sorted(ns.metadata.name for ns in core.list_namespace().items)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
    core.create_namespaced_config_map("py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"a": "1"}))
    out["configmap"] = core.read_namespaced_config_map("cm", "py").data

    # Watch machines in the background while they are created and changed.
    events = []
    start = custom.list_namespaced_custom_object(GROUP, VERSION, "py", PLURAL)["metadata"]["resourceVersion"]

    def watch_machines():
        w = watch.Watch()
        for event in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, "py", PLURAL,
                              resource_version=start, timeout_seconds=10):
            events.append((event["type"], event["object"]["metadata"]["name"]))
            if len(events) == 4:
                w.stop()

    watcher = threading.Thread(target=watch_machines)
    watcher.start()
    custom.create_namespaced_custom_object(GROUP, VERSION, "py", PLURAL, machine("a", "52:54:00:00:0a:01", {"tier": "web"}))
    custom.create_namespaced_custom_object(GROUP, VERSION, "py", PLURAL, machine("b", "52:54:00:00:0a:02", {"tier": "db"}))
    custom.patch_namespaced_custom_object(GROUP, VERSION, "py", PLURAL, "a", {"spec": {"debug": True}})
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, "py", PLURAL, "b", {"status": {"phase": "Inspecting"}})
    watcher.join(timeout=20)
    out["events"] = events

    out["selected"] = [m["metadata"]["name"] for m in custom.list_namespaced_custom_object(
        GROUP, VERSION, "py", PLURAL, label_selector="tier in (db)")["items"]]
    a = custom.get_namespaced_custom_object(GROUP, VERSION, "py", PLURAL, "a")
    out["a"] = {"debug": a["spec"]["debug"], "generation": a["metadata"]["generation"], "online": a["spec"].get("online")}
    b = custom.get_namespaced_custom_object_status(GROUP, VERSION, "py", PLURAL, "b")
    out["b_phase"] = b["status"]["phase"]

    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, "py", PLURAL, machine("a", "52:54:00:00:0a:01", {}))
    except ApiException as error:
        out["duplicate"] = {"status": error.status, "reason": json.loads(error.body)["reason"]}

    custom.delete_namespaced_custom_object(GROUP, VERSION, "py", PLURAL, "a")
    out["after_delete"] = sorted(m["metadata"]["name"] for m in custom.list_namespaced_custom_object(GROUP, VERSION, "py", PLURAL)["items"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
