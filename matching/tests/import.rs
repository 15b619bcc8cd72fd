//! Importing the eDeploy directory of seed 002 (tests/fixtures/edeploy) and using what comes
//! out: valid objects, and the decisions eDeploy would make.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use machinist_crds::manifest::parse_documents;
use machinist_crds::validation::Validator;
use machinist_crds::{Cmdb, HardwareProfile, Quad};
use machinist_matching::cmdb::allocate;
use machinist_matching::generate::expand_cmdb;
use machinist_matching::import::{ImportError, import_edeploy_dir};
use machinist_matching::profile::{CompiledProfile, select_profile};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edeploy")
}

fn vm_report() -> Vec<Quad> {
    vec![
        Quad::new("disk", "vda", "size", "20"),
        Quad::new("system", "product", "vendor", "QEMU"),
        Quad::new("network", "eth0", "serial", "52:54:00:88:17:3c"),
        Quad::new("network", "eth0", "ipv4", "192.168.122.42"),
    ]
}

fn hp_report(tag: &str) -> Vec<Quad> {
    vec![
        Quad::new("system", "product", "vendor", "Hewlett-Packard"),
        Quad::new("system", "product", "serial", tag),
        Quad::new("cpu", "physical", "number", "2"),
        Quad::new("disk", "sda", "size", "300"),
        Quad::new("network", "eth0", "serial", "9c:8e:99:1a:2b:01"),
    ]
}

#[test]
fn the_seed_directory_imports_to_valid_objects() {
    let mut result = import_edeploy_dir(&fixture()).unwrap();
    result.set_namespace("edeploy");
    let names: Vec<_> = result
        .profiles
        .iter()
        .map(|p| (p.metadata.name.clone().unwrap(), p.spec.priority, p.spec.max_machines))
        .collect();
    assert_eq!(names, [("hp".to_owned(), 10, Some(4)), ("vm".to_owned(), 20, None)]);
    assert_eq!(result.profiles[1].spec.rules[1], Quad::new("network", "$eth", "ipv4", "network(192.168.122.0/24)"));
    assert_eq!(result.cmdbs.len(), 2);
    let notes = result.notes.join("\n");
    assert!(notes.contains("vm.configure present, not executed"), "{notes}");
    assert!(notes.contains("set_role(\"mysql\", \"D7-F.1.0.0\")"), "{notes}");
    assert!(notes.contains("hp.cmdb: 1 of 4 entries already used"), "{notes}");

    let yaml = result.to_yaml().unwrap();
    assert!(yaml.starts_with("# Imported from an eDeploy configuration directory"), "{yaml}");
    let documents = parse_documents(&yaml).unwrap();
    assert_eq!(documents.len(), 4);
    let validator = Validator::machinist().unwrap();
    for document in &documents {
        validator.validate(document).unwrap_or_else(|e| panic!("{e:?}\n{yaml}"));
        assert_eq!(document["metadata"]["namespace"], "edeploy");
    }
    let cmdbs: Vec<Cmdb> = documents[..2].iter().map(|d| serde_json::from_value(d.clone()).unwrap()).collect();
    let profiles: Vec<HardwareProfile> =
        documents[2..].iter().map(|d| serde_json::from_value(d.clone()).unwrap()).collect();
    assert_eq!(cmdbs, result.cmdbs);
    assert_eq!(profiles, result.profiles);
}

#[test]
fn the_imported_objects_decide_as_edeploy_does() {
    let result = import_edeploy_dir(&fixture()).unwrap();
    let compiled: Vec<CompiledProfile> = result
        .profiles
        .iter()
        .map(|p| CompiledProfile::new(p.metadata.name.as_deref().unwrap(), &p.spec).unwrap())
        .collect();
    let candidates: Vec<_> = compiled.iter().map(|c| c.candidate(0)).collect();
    let cmdb = |name: &str| {
        let c = result.cmdbs.iter().find(|c| c.metadata.name.as_deref() == Some(name)).unwrap();
        expand_cmdb(&c.spec).unwrap()
    };

    // The seed's VM: hp does not match (rule 0), vm does; first entry: host03.
    let selection = select_profile(&vm_report(), &candidates);
    assert_eq!(selection.profile, Some("vm"));
    assert_eq!((selection.mismatches[0].profile, selection.mismatches[0].rule), ("hp", Some(0)));
    let (allocations, choice) = allocate(&cmdb("vm"), &[], "mac-52-54-00-88-17-3c", &selection.captures).unwrap();
    assert_eq!(choice.variables["hostname"], "host03");
    assert_eq!(choice.variables["ip"], "192.168.122.3");
    assert_eq!(choice.variables["mac"], "52:54:00:88:17:3c");
    assert_eq!(choice.variables["disk"], "vda");
    assert_eq!(allocations.len(), 1);

    // The HP already installed by eDeploy (TAG1) gets its entry back; TAG3 gets hp3; a tag the
    // CMDB does not know gets nothing.
    let hp = cmdb("hp");
    for (tag, expected) in [("TAG1", "hp1"), ("TAG3", "hp3")] {
        let selection = select_profile(&hp_report(tag), &candidates);
        assert_eq!(selection.profile, Some("hp"));
        assert_eq!(selection.captures.selectors["tag"], tag);
        let (_, choice) = allocate(&hp, &[], tag, &selection.captures).unwrap();
        assert_eq!(choice.variables["hostname"], expected);
    }
    let selection = select_profile(&hp_report("CZ0000"), &candidates);
    assert!(allocate(&hp, &[], "new", &selection.captures).is_err());
}

#[test]
fn import_errors_name_the_file_and_position() {
    let dir = std::env::temp_dir().join(format!("machinist-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("state"), "[('vm', '*')]").unwrap();
    std::fs::write(
        dir.join("vm.specs"),
        "[\n  ('disk', '$disk', 'size', 'gt(4)')\n  ('network', '$eth', 'serial', '$mac'),\n]",
    )
    .unwrap();
    let error = import_edeploy_dir(&dir).unwrap_err();
    assert_eq!(error.to_string(), "vm.specs:3:3: expected ',' or ']', found '('");

    std::fs::write(dir.join("vm.specs"), "[('disk', '$disk', 'size', 'gt(4)')]").unwrap();
    std::fs::write(dir.join("vm.cmdb"), "[{'ip': '10.0.0.1'}, {'ip': ['x']}]").unwrap();
    let error = import_edeploy_dir(&dir).unwrap_err();
    assert!(error.to_string().starts_with("vm.cmdb:1:29: entry 1: ip: a list"), "{error}");

    std::fs::remove_file(dir.join("state")).unwrap();
    assert!(matches!(import_edeploy_dir(&dir), Err(ImportError::NoState(_))));
    assert!(matches!(import_edeploy_dir(&dir.join("absent")), Err(ImportError::Read { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}
