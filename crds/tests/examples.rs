//! Every example deserializes into the Rust types, validates against the generated schema and
//! CEL rules, and round-trips without loss; the seeds' scenarios are all there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic

mod support;

use machinist_crds::validation::Validator;
use machinist_crds::{Cmdb, HardwareProfile, Hypervisor, LoadBalancerBackend, Machine, Role};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use support::{example_objects, is_machinist, losses};

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(object: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| format!("does not deserialize: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("does not serialize: {e}"))?;
    let lost = losses(object, &back, "");
    if !lost.is_empty() {
        return Err(format!("round trip lost {lost:?}"));
    }
    let again: T = serde_json::from_value(back).map_err(|e| format!("serialized form does not deserialize: {e}"))?;
    if again != typed {
        return Err("second round trip changed the object".into());
    }
    Ok(())
}

#[test]
fn every_example_validates_and_round_trips() {
    let validator = Validator::machinist().expect("schemas build");
    let objects = example_objects();
    assert!(objects.len() >= 20, "expected the seeds' scenarios, found {} objects", objects.len());
    let mut failures = Vec::new();
    for (file, object) in objects.iter().filter(|(_, o)| is_machinist(o)) {
        let name = format!("{} {}/{}", file.display(), object["kind"], object["metadata"]["name"]);
        if let Err(invalid) = validator.validate(object) {
            failures.push(format!("{name}: {invalid}"));
        }
        let result = match object["kind"].as_str() {
            Some("Machine") => round_trip::<Machine>(object),
            Some("HardwareProfile") => round_trip::<HardwareProfile>(object),
            Some("Cmdb") => round_trip::<Cmdb>(object),
            Some("Role") => round_trip::<Role>(object),
            Some("LoadBalancerBackend") => round_trip::<LoadBalancerBackend>(object),
            Some("Hypervisor") => round_trip::<Hypervisor>(object),
            other => Err(format!("unexpected kind {other:?}")),
        };
        if let Err(error) = result {
            failures.push(format!("{name}: {error}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn find<'a>(objects: &'a [(std::path::PathBuf, Value)], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|(_, o)| o)
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in examples/"))
}

#[test]
fn the_seeds_scenarios_are_covered() {
    let objects = example_objects();

    // Seed 001: the five environments, and a menu defaulting to api after ten minutes.
    for role in ["base", "ui", "ui-test", "api", "api-test"] {
        let role = find(&objects, "Role", role);
        assert_eq!(role["spec"]["install"]["method"], "DebianInstaller");
    }
    let api_01 = find(&objects, "Machine", "api-01");
    assert_eq!(api_01["spec"]["bootMenu"]["default"], "api");
    assert_eq!(api_01["spec"]["bootMenu"]["timeoutSeconds"], 600);

    // Seed 002: hp limited to 4, vm unlimited and tried after hp, with the seed's vm.specs.
    let hp = find(&objects, "HardwareProfile", "hp");
    let vm = find(&objects, "HardwareProfile", "vm");
    assert_eq!(hp["spec"]["maxMachines"], 4);
    assert!(vm["spec"].get("maxMachines").is_none());
    assert!(hp["spec"]["priority"].as_i64() < vm["spec"]["priority"].as_i64());
    assert_eq!(
        vm["spec"]["match"],
        serde_json::json!([
            ["disk", "$disk", "size", "gt(4)"],
            ["network", "$eth", "ipv4", "network(192.168.122.0/24)"],
            ["network", "$eth", "serial", "$mac"]
        ])
    );
    let cmdb = find(&objects, "Cmdb", "vm");
    assert_eq!(cmdb["spec"]["generate"][0]["patterns"]["ip"], "192.168.122.3-7");
    assert_eq!(cmdb["spec"]["generate"][0]["patterns"]["hostname"], "host03-07");

    // Seeds 000 and 004: an api backend, and web servers on 5000 with stats on 9090.
    let api = find(&objects, "LoadBalancerBackend", "api");
    assert_eq!(api["spec"]["selector"]["matchLabels"]["app"], "api");
    let web = find(&objects, "LoadBalancerBackend", "web");
    assert_eq!(web["spec"]["port"], 5000);
    assert_eq!(web["spec"]["stats"]["bind"], ":9090");
    assert_eq!(web["spec"]["frontend"]["balance"], "roundrobin");

    // Machines of every provider.
    let providers: Vec<&str> = objects
        .iter()
        .filter(|(_, o)| o["kind"] == "Machine")
        .filter_map(|(_, o)| o["spec"]["provider"].as_object()?.keys().next().map(String::as_str))
        .collect();
    for provider in ["libvirt", "bmc", "manual"] {
        assert!(providers.contains(&provider), "no Machine with provider {provider}");
    }
}
