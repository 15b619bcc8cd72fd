//! Bad objects are rejected with a message that names the field, and good ones are not.
//! Each case starts from a valid object and breaks one thing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

use machinist_crds::validation::{FieldError, Validator};
use serde_json::{Value, json};

fn machine() -> Value {
    json!({
        "apiVersion": "machinist.dev/v1alpha1",
        "kind": "Machine",
        "metadata": {"name": "api-01", "namespace": "api"},
        "spec": {
            "interfaces": [{"mac": "52:54:00:12:34:56"}],
            "provider": {"libvirt": {"host": "hv1", "pool": "default", "diskGiB": 20,
                                     "memoryMiB": 2048, "vcpus": 2, "network": "default"}},
            "bootMenu": {"roles": ["base", "api"], "default": "api"}
        },
        "status": {"phase": "Registered"}
    })
}

fn hypervisor() -> Value {
    json!({
        "apiVersion": "machinist.dev/v1alpha1",
        "kind": "Hypervisor",
        "metadata": {"name": "hv1", "namespace": "machinist-system", "labels": {"site": "gra"}},
        "spec": {"uri": "qemu+ssh://root@hv1.lan.example.org/system", "memoryOvercommitPercent": 150}
    })
}

fn profile() -> Value {
    json!({
        "apiVersion": "machinist.dev/v1alpha1",
        "kind": "HardwareProfile",
        "metadata": {"name": "vm"},
        "spec": {
            "priority": 20,
            "maxMachines": 4,
            "match": [["disk", "$disk", "size", "gt(4)"], ["network", "$eth", "serial", "$mac"]],
            "install": {"targetDisk": "$disk", "partitions": [{"size": "rest", "filesystem": "ext4", "mountPoint": "/"}]}
        }
    })
}

fn cmdb() -> Value {
    json!({
        "apiVersion": "machinist.dev/v1alpha1",
        "kind": "Cmdb",
        "metadata": {"name": "vm"},
        "spec": {"generate": [{"patterns": {"ip": "192.168.122.3-7", "hostname": "host03-07"}}],
                 "network": {"netmask": "255.255.255.0"}}
    })
}

fn role() -> Value {
    json!({
        "apiVersion": "machinist.dev/v1alpha1",
        "kind": "Role",
        "metadata": {"name": "api"},
        "spec": {
            "version": "1.0.0",
            "install": {"method": "Image", "image": {
                "url": "http://10.0.0.1/api.raw", "format": "raw",
                "sha256": "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"}}
        }
    })
}

fn backend() -> Value {
    json!({
        "apiVersion": "machinist.dev/v1alpha1",
        "kind": "LoadBalancerBackend",
        "metadata": {"name": "web"},
        "spec": {"frontend": {"bind": ":80"}, "selector": {"matchLabels": {"app": "web"}}, "port": 5000,
                 "healthCheck": {"type": "http", "path": "/"}}
    })
}

/// Sets the value at a JSON pointer (creating objects on the way), or removes it for `None`.
fn with(mut object: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let mut target = &mut object;
    for token in parent.split('/').skip(1) {
        target = match target {
            Value::Array(items) => &mut items[token.parse::<usize>().unwrap()],
            other => {
                let map = other.as_object_mut().unwrap();
                map.entry(token.to_owned()).or_insert_with(|| json!({}))
            }
        };
    }
    match (target, value) {
        (Value::Array(items), Some(v)) => items[key.parse::<usize>().unwrap()] = v,
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_owned(), v);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (other, _) => panic!("cannot edit {pointer} in {other}"),
    }
    object
}

fn errors(validator: &Validator, object: &Value) -> Vec<FieldError> {
    match validator.validate(object) {
        Ok(()) => Vec::new(),
        Err(invalid) => invalid.errors,
    }
}

struct Case {
    what: &'static str,
    object: Value,
    field: &'static str,
    message: &'static str,
}

fn case(what: &'static str, object: Value, field: &'static str, message: &'static str) -> Case {
    Case { what, object, field, message }
}

#[test]
fn the_valid_bases_are_valid() {
    let validator = Validator::machinist().unwrap();
    for object in [machine(), profile(), cmdb(), role(), backend(), hypervisor()] {
        assert_eq!(errors(&validator, &object), vec![], "{}", object["kind"]);
    }
    // The operator generates a libvirt machine's MAC.
    let no_interfaces = with(machine(), "/spec/interfaces", Some(json!([])));
    assert_eq!(errors(&validator, &no_interfaces), vec![]);
}

#[test]
fn bad_objects_are_rejected_naming_the_field() {
    let validator = Validator::machinist().unwrap();
    let cases = vec![
        case(
            "bad MAC",
            with(machine(), "/spec/interfaces/0/mac", Some(json!("52:54:00:12:34"))),
            "spec.interfaces[0].mac",
            "does not match",
        ),
        case(
            "duplicate MAC, other case",
            with(
                machine(),
                "/spec/interfaces",
                Some(json!([{"mac": "52:54:00:aa:bb:cc"}, {"mac": "52:54:00:AA:BB:CC"}])),
            ),
            "spec.interfaces",
            "MAC addresses must be unique",
        ),
        case(
            "two providers",
            with(machine(), "/spec/provider/manual", Some(json!({}))),
            "spec.provider",
            "exactly one of provider.libvirt, provider.bmc or provider.manual",
        ),
        case("no provider", with(machine(), "/spec/provider", Some(json!({}))), "spec.provider", "exactly one of"),
        case(
            "no interfaces, not libvirt",
            with(with(machine(), "/spec/interfaces", Some(json!([]))), "/spec/provider", Some(json!({"manual": {}}))),
            "spec",
            "interfaces must list at least one interface",
        ),
        case(
            "unknown phase",
            with(machine(), "/status/phase", Some(json!("Exploded"))),
            "status.phase",
            "unsupported value \"Exploded\": supported values: \"Registered\", \"Inspecting\"",
        ),
        case(
            "unknown onSuccess",
            with(machine(), "/spec/onSuccess", Some(json!("explode"))),
            "spec.onSuccess",
            "supported values: \"reboot\", \"kexec\", \"halt\", \"console\"",
        ),
        case(
            "invalid DNS name for the pinned profile",
            with(machine(), "/spec/profile", Some(json!("Big_Servers"))),
            "spec.profile",
            "does not match",
        ),
        case(
            "invalid DNS name for the object",
            with(machine(), "/metadata/name", Some(json!("API_01"))),
            "metadata.name",
            "DNS-1123 subdomain",
        ),
        case(
            "both libvirt host and hostSelector",
            with(machine(), "/spec/provider/libvirt/hostSelector", Some(json!({"site": "gra"}))),
            "spec.provider.libvirt",
            "exactly one of host or hostSelector",
        ),
        case(
            "zero-sized disk",
            with(machine(), "/spec/provider/libvirt/diskGiB", Some(json!(0))),
            "spec.provider.libvirt.diskGiB",
            "less than the minimum of 1",
        ),
        case(
            "vcpus of the wrong type",
            with(machine(), "/spec/provider/libvirt/vcpus", Some(json!("two"))),
            "spec.provider.libvirt.vcpus",
            "is not of type \"integer\"",
        ),
        case(
            "redfish BMC without URL",
            with(
                machine(),
                "/spec/provider",
                Some(json!({"bmc": {"driver": "redfish", "address": "10.0.0.5",
                  "credentialsSecretRef": {"name": "bmc"}}})),
            ),
            "spec.provider.bmc",
            "a redfish address is an http(s) URL",
        ),
        case(
            "boot menu default not offered",
            with(machine(), "/spec/bootMenu/default", Some(json!("ui"))),
            "spec.bootMenu",
            "bootMenu.default must be one of bootMenu.roles",
        ),
        case("field typo", with(machine(), "/spec/onlin", Some(json!(true))), "spec.onlin", "unknown field"),
        case(
            "rule with three elements",
            with(profile(), "/spec/match/0", Some(json!(["disk", "$disk", "size"]))),
            "spec.match[0]",
            "has less than 4 items",
        ),
        case(
            "rule element not a string",
            with(profile(), "/spec/match/1/3", Some(json!(2))),
            "spec.match[1][3]",
            "is not of type \"string\"",
        ),
        case(
            "negative maxMachines",
            with(profile(), "/spec/maxMachines", Some(json!(-1))),
            "spec.maxMachines",
            "less than the minimum of 0",
        ),
        case(
            "missing priority",
            with(profile(), "/spec/priority", None),
            "spec",
            "\"priority\" is a required property",
        ),
        case(
            "target disk neither path nor variable",
            with(profile(), "/spec/install/targetDisk", Some(json!("sda"))),
            "spec.install.targetDisk",
            "targetDisk must be a /dev/ path or a $variable",
        ),
        case(
            "bad partition size",
            with(profile(), "/spec/install/partitions/0/size", Some(json!("20G"))),
            "spec.install.partitions[0].size",
            "does not match",
        ),
        case("CMDB without entries", with(cmdb(), "/spec/generate", None), "spec", "a Cmdb needs entries or generate"),
        case(
            "CMDB variable with a dash",
            with(cmdb(), "/spec/generate/0/patterns/host-name", Some(json!("h1-3"))),
            "spec.generate[0].patterns",
            "variable names are letters, digits and underscores",
        ),
        case(
            "bad netmask",
            with(cmdb(), "/spec/network/netmask", Some(json!("255.255.255.256"))),
            "spec.network.netmask",
            "does not match",
        ),
        case(
            "install method without its member",
            with(role(), "/spec/install/method", Some(json!("DebianInstaller"))),
            "spec.install",
            "DebianInstaller needs install.debianInstaller",
        ),
        case(
            "bad sha256",
            with(role(), "/spec/install/image/sha256", Some(json!("abc"))),
            "spec.install.image.sha256",
            "does not match",
        ),
        case("role without version", with(role(), "/spec/version", None), "spec", "\"version\" is a required property"),
        case(
            "port out of range",
            with(backend(), "/spec/port", Some(json!(70000))),
            "spec.port",
            "greater than the maximum of 65535",
        ),
        case(
            "bind without port",
            with(backend(), "/spec/frontend/bind", Some(json!("0.0.0.0"))),
            "spec.frontend.bind",
            "does not match",
        ),
        case(
            "path on a tcp health check",
            with(backend(), "/spec/healthCheck/type", Some(json!("tcp"))),
            "spec.healthCheck",
            "path and expectStatus apply to http health checks only",
        ),
        case(
            "backend without selector",
            with(backend(), "/spec/selector", None),
            "spec",
            "\"selector\" is a required property",
        ),
        case(
            "wrong apiVersion",
            with(backend(), "/apiVersion", Some(json!("machinist.dev/v1"))),
            "apiVersion",
            "must be \"machinist.dev/v1alpha1\"",
        ),
        case(
            "libvirt host given as a URI",
            with(machine(), "/spec/provider/libvirt/host", Some(json!("qemu:///system"))),
            "spec.provider.libvirt.host",
            "does not match",
        ),
        case(
            "hypervisor URI of another driver",
            with(hypervisor(), "/spec/uri", Some(json!("xen:///system"))),
            "spec.uri",
            "uri must be a qemu or test libvirt URI",
        ),
        case(
            "memory overcommit below 100%",
            with(hypervisor(), "/spec/memoryOvercommitPercent", Some(json!(50))),
            "spec.memoryOvercommitPercent",
            "minimum",
        ),
        case(
            "relative console log directory",
            with(hypervisor(), "/spec/consoleLogDir", Some(json!("logs"))),
            "spec.consoleLogDir",
            "consoleLogDir must be an absolute path",
        ),
        case(
            "unknown kind",
            with(backend(), "/kind", Some(json!("VirtualMachine"))),
            "kind",
            "unknown kind \"VirtualMachine\"",
        ),
    ];
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for case in &cases {
        let found = errors(&validator, &case.object);
        if !found.iter().any(|e| e.field == case.field && e.message.contains(case.message)) {
            failures.push(format!(
                "{}: expected `{}: …{}…`, got {:?}",
                case.what,
                case.field,
                case.message,
                found.iter().map(ToString::to_string).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
