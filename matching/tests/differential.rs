//! Differential test against the eDeploy reference (`hardware` 0.33.0 on PyPI): thousands of
//! seeded random hardware reports and rule sets, and `generate()` models, run through both
//! implementations; verdicts, captured variables, `$$` selectors and expanded entries must be
//! identical.
//!
//! `MACHINIST_DIFF_SEED` overrides the seed, `MACHINIST_DIFF_CASES` the number of match cases
//! (generate cases are two thirds of it). Needs the reference's Python (see
//! `common::reference_python`); skips without it unless `MACHINIST_E2E=require`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::time::Instant;

use common::{
    MODELS, Rng, candidates, profiles, quads_json, reference_python, report, rule_sets, run_driver, seed_from_env,
};
use machinist_crds::Quad;
use machinist_crds::cmdb::GenerateBlock;
use machinist_matching::generate::{BlockError, MAX_ENTRIES, PatternProblem, expand};
use machinist_matching::matcher::{Hardware, Limits, Outcome, match_rules, match_rules_with};
use machinist_matching::profile::select_profile;
use machinist_matching::rule::RuleSet;
use serde_json::{Value, json};

const DEFAULT_SEED: u64 = 0x0002_0130_e0de_9107;
const DEFAULT_CASES: usize = 3000;
/// Cases whose plain (reference-like) search takes more steps are not sent to the reference,
/// which would take seconds each (`MACHINIST_DIFF_STEPS` overrides).
const REFERENCE_STEP_BUDGET: u64 = 20_000;
/// Realistic reports matched against 50 profiles (the reference takes about 0.3 s each).
const REALISTIC_REPORTS: usize = 24;

// ---- random hardware reports ---------------------------------------------------------------

const DISK_SIZES: &[&str] =
    &["8", "20", "100", "240", "480", "1000", "1000", "unknown", "1_000", " 300 ", "'50'", "12.5"];
const MACS: &[&str] =
    &["52:54:00:88:17:3c", "52:54:00:88:17:3d", "28:d2:44:1b:0a:8b", "9c:b6:54:88:2d:b0", "9C:B6:54:88:2D:B1"];
const IPS: &[&str] =
    &["192.168.122.10", "192.168.122.11", "10.0.0.5", "10.1.2.3", "172.16.0.1", "fe80::1", "none", "192.168.122.010"];

fn item(c: &str, t: &str, n: &str, v: &str) -> Quad {
    Quad::new(c, t, n, v)
}

fn random_report(rng: &mut Rng) -> Vec<Quad> {
    let mut items = Vec::new();
    let disks = ["sda", "sdb", "sdc", "vda", "nvme0n1"];
    for d in disks.iter().take(rng.below(5)) {
        items.push(item("disk", d, "size", rng.pick(DISK_SIZES)));
        if rng.chance(70) {
            items.push(item("disk", d, "rotational", rng.pick(&["0", "1"])));
        }
        if rng.chance(60) {
            items.push(item("disk", d, "vendor", rng.pick(&["HP", "ATA", "DELL"])));
        }
        if rng.chance(30) {
            items.push(item("disk", d, "model", rng.pick(&["LOGICAL VOLUME", "ST8000NM0055", "Intel(R) SSD (DC)"])));
        }
    }
    for e in ["eth0", "eth1", "eth2", "eth3"].iter().take(rng.below(4)) {
        items.push(item("network", e, "serial", rng.pick(MACS)));
        if rng.chance(70) {
            items.push(item("network", e, "ipv4", rng.pick(IPS)));
        }
        if rng.chance(50) {
            items.push(item("network", e, "link", rng.pick(&["yes", "no"])));
        }
    }
    if rng.chance(80) {
        items.push(item("system", "product", "vendor", rng.pick(&["HP", "Dell Inc.", "QEMU"])));
        items.push(item("system", "product", "serial", rng.pick(&["CZ3404YWNN", "TAG1", "TAG2"])));
    }
    if rng.chance(50) {
        items.push(item(
            "system",
            "product",
            "name",
            rng.pick(&["ProLiant DL360 Gen9 (755258-B21)", "PowerEdge R630", "Standard PC"]),
        ));
    }
    if rng.chance(60) {
        items.push(item("cpu", "physical", "number", rng.pick(&["1", "2", "4"])));
        items.push(item("cpu", "logical", "number", rng.pick(&["2", "8", "32"])));
    }
    if rng.chance(40) {
        items.push(item("memory", "total", "size", rng.pick(&["4294967296", "68719476736", "137438953472"])));
    }
    // Oddities: values that are themselves calls, quoted, empty, duplicated items.
    if rng.chance(3) {
        items.push(item("disk", "sdz", "size", rng.pick(&["gt(3)", "in(x)", "foo(1)", ""])));
    }
    if rng.chance(10) && !items.is_empty() {
        let dup = rng.pick(&items);
        items.push(dup);
    }
    if rng.chance(30) {
        // hardware-detect's order varies between tools: shuffle a little.
        for _ in 0..3 {
            if items.len() > 1 {
                let (a, b) = (rng.below(items.len()), rng.below(items.len()));
                items.swap(a, b);
            }
        }
    }
    items
}

// ---- random rules --------------------------------------------------------------------------

fn number_function(rng: &mut Rng) -> String {
    let n = rng.pick(&["10", "100", "239.5", "500", "1e3"]);
    match rng.below(9) {
        0 => format!("gt({n})"),
        1 => format!("ge({n})"),
        2 => format!("lt({n})"),
        3 => format!("le({n})"),
        4 => format!("range({}, {})", rng.pick(&["5", "20", "100"]), rng.pick(&["50", "480", "1000"])),
        5 => format!("in({}, {})", rng.pick(DISK_SIZES).trim(), rng.pick(&["8", "100", "1000"])),
        6 => format!("not(lt({n}))"),
        7 => format!("and(gt({}), lt({}))", rng.pick(&["5", "50"]), rng.pick(&["500", "2000"])),
        _ => format!("or(lt({}), gt({}))", rng.pick(&["10", "50"]), rng.pick(&["200", "900"])),
    }
}

fn var(rng: &mut Rng, names: &[&str]) -> String {
    let name = rng.pick(names);
    if rng.chance(12) { format!("$${name}") } else { format!("${name}") }
}

fn random_rule(rng: &mut Rng, report: &[Quad]) -> Quad {
    match rng.below(14) {
        // A copy of an existing item, or of one with a variable instead of an element.
        0 | 1 if !report.is_empty() => {
            let mut q = rng.pick(report);
            if q.value.is_empty() || q.value.starts_with('$') || q.value.ends_with(')') {
                q.value = "$v".into();
            }
            match rng.below(4) {
                0 => q.r#type = var(rng, &["d1", "d2", "e1"]),
                1 => q.value = var(rng, &["v", "size"]),
                _ => {}
            }
            q
        }
        2..=4 => {
            let d = var(rng, &["d1", "d2", "d3"]);
            let value = match rng.below(6) {
                0 => rng.pick(DISK_SIZES).trim().to_owned(),
                1 => var(rng, &["size", "s2"]),
                2 => format!("{}={}", var(rng, &["size", "s2"]), number_function(rng)),
                _ => number_function(rng),
            };
            item("disk", &d, "size", &value)
        }
        5 => {
            let d = var(rng, &["d1", "d2", "d3"]);
            match rng.below(3) {
                0 => item("disk", &d, "rotational", rng.pick(&["0", "1"])),
                1 => item(
                    "disk",
                    &d,
                    "vendor",
                    rng.pick(&["HP", "ATA", "in('HP', \"DELL\")", "regexp(^A)", "not(regexp(^H))"]),
                ),
                _ => item("disk", &d, "model", rng.pick(&["LOGICAL VOLUME", "Intel(R) SSD (DC)", "regexp(SSD)"])),
            }
        }
        6 | 7 => {
            let e = var(rng, &["eth", "eth2"]);
            match rng.below(5) {
                0 => item("network", &e, "serial", &var(rng, &["mac", "mac2"])),
                1 => item(
                    "network",
                    &e,
                    "serial",
                    rng.pick(&["$mac=regexp(^52:54)", "$mac=not(regexp(^28:d2:))", "regexp(^(?i)9c:b6)"]),
                ),
                2 => item(
                    "network",
                    &e,
                    "ipv4",
                    rng.pick(&[
                        "network(192.168.122.0/24)",
                        "network(10.0.0.0/8)",
                        "$ip",
                        "$ip=network(10.0.0.0/255.0.0.0)",
                    ]),
                ),
                3 => item("network", &e, "link", "yes"),
                _ => item("network", &e, "ipv4", rng.pick(IPS)),
            }
        }
        8 => match rng.below(3) {
            0 => item("system", "product", "serial", &var(rng, &["tag"])),
            1 => item("system", "product", "vendor", rng.pick(&["HP", "in(HP, QEMU)", "Dell Inc."])),
            _ => item(
                "system",
                "product",
                "name",
                rng.pick(&["ProLiant DL360 Gen9 (755258-B21)", "PowerEdge R630", "regexp(Gen9)"]),
            ),
        },
        9 => item("cpu", rng.pick(&["physical", "logical"]), "number", &number_function(rng)),
        // Functions and variables outside the value.
        10 => {
            item("disk", rng.pick(&["regexp(^sd)", "in(sda, vda)", "not(in(sdb))"]), "size", &var(rng, &["size", "s2"]))
        }
        11 => item(
            &var(rng, &["cls"]),
            rng.pick(&["sda", "eth0", "$t"]),
            rng.pick(&["size", "serial"]),
            &var(rng, &["v", "size"]),
        ),
        12 => item("disk", &var(rng, &["d1", "x"]), &var(rng, &["attr"]), &var(rng, &["val", "x"])),
        _ => item(
            rng.pick(&["disk", "network", "in(disk, network)"]),
            &var(rng, &["d1", "eth"]),
            "size",
            &number_function(rng),
        ),
    }
}

/// A report with several alike disks and NICs, and rules that tie attributes of one disk or
/// NIC together through a variable: the shape that makes the reference backtrack.
fn structured_case(rng: &mut Rng) -> (Vec<Quad>, Vec<Quad>) {
    let mut report = Vec::new();
    let disks = rng.range(2, 7) as usize;
    for d in 0..disks {
        let name = format!("sd{}", (b'a' + d as u8) as char);
        report.push(item("disk", &name, "size", rng.pick(&["100", "500", "1000"])));
        report.push(item("disk", &name, "rotational", rng.pick(&["0", "1"])));
        if rng.chance(70) {
            report.push(item("disk", &name, "vendor", rng.pick(&["HP", "ATA"])));
        }
    }
    for e in 0..rng.range(1, 4) {
        let eth = format!("eth{e}");
        report.push(item("network", &eth, "serial", &format!("52:54:00:00:00:{e:02x}")));
        report.push(item("network", &eth, "ipv4", rng.pick(&["10.0.0.5", "192.168.122.7", "10.3.2.1"])));
        report.push(item("network", &eth, "link", rng.pick(&["yes", "no"])));
    }
    if rng.chance(50) {
        report.push(item("system", "product", "serial", rng.pick(&["TAG1", "TAG2"])));
    }
    let mut rules = Vec::new();
    for i in 1..=rng.range(1, 3) {
        let d = if rng.chance(15) { format!("$$d{i}") } else { format!("$d{i}") };
        let size = match rng.below(4) {
            0 => "gt(200)".to_owned(),
            1 => format!("$size{i}=ge(500)"),
            2 => format!("$size{i}"),
            _ => rng.pick(&["100", "500", "1000"]).to_owned(),
        };
        rules.push(item("disk", &d, "size", &size));
        if rng.chance(70) {
            rules.push(item("disk", &d, "rotational", rng.pick(&["0", "1"])));
        }
        if rng.chance(40) {
            rules.push(item("disk", &d, "vendor", rng.pick(&["HP", "ATA", "in(HP, ATA)"])));
        }
    }
    if rng.chance(60) {
        let eth = if rng.chance(20) { "$$eth" } else { "$eth" };
        rules.push(item("network", eth, "serial", rng.pick(&["$mac", "$$mac", "$mac=regexp(^52:54)"])));
        rules.push(item(
            "network",
            eth,
            "ipv4",
            rng.pick(&["network(10.0.0.0/8)", "network(192.168.122.0/24)", "$ip"]),
        ));
        if rng.chance(50) {
            rules.push(item("network", eth, "link", "yes"));
        }
    }
    if rng.chance(20) {
        rules.push(item("system", "product", "serial", "$$tag"));
    }
    if rng.chance(50) {
        // Constraints after captures make the reference go back.
        for _ in 0..2 {
            let (a, b) = (rng.below(rules.len()), rng.below(rules.len()));
            rules.swap(a, b);
        }
    }
    (report, rules)
}

fn our_match_json(outcome: &Outcome<'_>) -> Value {
    match outcome {
        Outcome::Matched(c) => json!({"matched": true, "variables": c.variables, "selectors": c.selectors}),
        Outcome::Mismatch(_) => json!({"matched": false, "variables": {}, "selectors": {}}),
    }
}

// ---- random generate() models --------------------------------------------------------------

fn random_range(rng: &mut Rng, max_span: u64) -> String {
    let a = rng.range(0, 60);
    let b = if rng.chance(20) { a.saturating_sub(rng.range(0, 5)) } else { a + rng.range(0, max_span) };
    let pad = rng.chance(25);
    let fa = if pad { format!("{a:03}") } else { a.to_string() };
    let mut text = format!("{fa}-{b}");
    if rng.chance(15) {
        text = format!("{text}:{}-{}", b + 5, b + 5 + rng.range(0, 3));
    }
    text
}

fn random_octet(rng: &mut Rng) -> String {
    match rng.below(12) {
        0..=5 => rng.range(0, 255).to_string(),
        6..=8 => random_range(rng, 6),
        9 => rng.pick(&["5-", "1-3:7", "::", "", "1-2-3", "10:20"]).to_string(),
        10 => "-5".into(),
        _ => format!("{}-{}", rng.range(250, 255), rng.range(0, 3)),
    }
}

fn random_pattern(rng: &mut Rng) -> String {
    match rng.below(11) {
        0..=2 => {
            let mut o: Vec<String> = (0..4).map(|_| random_octet(rng)).collect();
            if rng.chance(70) {
                o[3] = random_range(rng, 20);
            }
            o.join(".")
        }
        3..=5 => format!(
            "{}{}{}",
            rng.pick(&["host", "node-", "r", "", "ceph"]),
            random_range(rng, 12),
            rng.pick(&["", ".example.org", "-ipmi", "x3-4"])
        ),
        6 => rng
            .pick(&[
                "2024-01-15",
                "D7-H.1.0.0",
                "v1-2-3",
                "a1-2b3-4",
                "host1-3\n",
                "x\n1-3",
                "10.0.0.1:2",
                "10.0.0-1.1-2\n",
            ])
            .to_string(),
        7 => rng.pick(&["192.168.1.1", "255.255.255.0", "hp-grid", "", "10:20", "1.2.3.-5"]).to_string(),
        8 => format!("10.{}.{}.{}", random_range(rng, 2), random_range(rng, 2), random_range(rng, 3)),
        9 => format!("{}-{}", rng.range(0, 9), rng.range(0, 9)),
        _ => format!("1.2-3.3.{}", rng.pick(&["-5", "1-2:-5", "1-4:5-"])),
    }
}

fn random_block(rng: &mut Rng) -> GenerateBlock {
    let mut block = GenerateBlock::default();
    let keys = ["ip", "hostname", "tag", "gw", "rack", "serial", "netmask"];
    for _ in 0..rng.range(1, 4) {
        let key = rng.pick(&keys).to_string();
        if block.patterns.contains_key(&key) || block.lists.contains_key(&key) {
            continue;
        }
        if rng.chance(20) {
            let list = (0..rng.below(6)).map(|i| format!("{}{i}", rng.pick(&["TAG", "rack", "x"]))).collect();
            block.lists.insert(key, list);
        } else {
            block.patterns.insert(key, random_pattern(rng));
        }
    }
    block
}

fn model_json(block: &GenerateBlock) -> Value {
    let mut model = serde_json::Map::new();
    for (k, v) in &block.patterns {
        model.insert(k.clone(), json!(v));
    }
    for (k, v) in &block.lists {
        model.insert(k.clone(), json!(v));
    }
    json!({ "model": model })
}

// ---- the test ------------------------------------------------------------------------------

#[derive(Default, Debug)]
struct Tally {
    sent: usize,
    matched: usize,
    unmatched: usize,
    needed_backtracking: usize,
    failed_after_backtracking: usize,
    selectors: usize,
    reference_raised: usize,
    reference_timeouts: usize,
    too_costly_for_reference: usize,
    rejected_rules: usize,
    stale_dollar_keys: usize,
}

#[test]
fn matcher_and_generate_agree_with_the_reference() {
    let Some(python) = reference_python("differential test").unwrap_or_else(|e| panic!("{e}")) else {
        return;
    };
    let seed = seed_from_env("MACHINIST_DIFF_SEED", DEFAULT_SEED);
    let cases = seed_from_env("MACHINIST_DIFF_CASES", DEFAULT_CASES as u64) as usize;
    let step_budget = seed_from_env("MACHINIST_DIFF_STEPS", REFERENCE_STEP_BUDGET);
    println!("differential test: seed {seed:#x} (MACHINIST_DIFF_SEED), {cases} match cases (MACHINIST_DIFF_CASES)");
    let started = Instant::now();
    let mut rng = Rng::new(seed);

    // Match cases.
    let mut tally = Tally::default();
    let mut sent: Vec<(Vec<Quad>, Vec<Quad>, Value)> = Vec::new();
    for _ in 0..cases {
        let (report, rules) = if rng.chance(40) {
            structured_case(&mut rng)
        } else {
            let report = random_report(&mut rng);
            let rules: Vec<Quad> = (0..rng.range(1, 6)).map(|_| random_rule(&mut rng, &report)).collect();
            (report, rules)
        };
        let Ok(parsed) = RuleSet::parse(&rules) else {
            tally.rejected_rules += 1;
            continue;
        };
        let hardware = Hardware::new(&report);
        let ours = match_rules(&parsed, &hardware);
        let plain = match_rules_with(
            &parsed,
            &hardware,
            Limits { max_steps: step_budget, shortcuts: false, ..Limits::default() },
        );
        let plain_finished = !matches!(&plain, Outcome::Mismatch(m) if m.rule.is_none());
        if plain_finished {
            assert_eq!(ours, plain, "shortcuts changed the outcome for rules {rules:?} on {report:?}");
        } else {
            tally.too_costly_for_reference += 1;
            continue;
        }
        let greedy = match_rules_with(&parsed, &hardware, Limits { max_level: 1, ..Limits::default() });
        match (&ours, &greedy) {
            (Outcome::Matched(_), Outcome::Mismatch(_)) => tally.needed_backtracking += 1,
            (Outcome::Mismatch(m), _) if m.reason.contains("tried") => tally.failed_after_backtracking += 1,
            _ => {}
        }
        sent.push((report, rules, our_match_json(&ours)));
    }
    let request = json!({
        "match": sent.iter().map(|(report, rules, _)| json!({"lines": quads_json(report), "specs": quads_json(rules)})).collect::<Vec<_>>(),
    });
    let answer = run_driver(&python, &request);
    let answers = answer["match"].as_array().expect("match answers");
    assert_eq!(answers.len(), sent.len());
    let mut disagreements = Vec::new();
    for ((report, rules, ours), reference) in sent.iter().zip(answers) {
        if reference.get("error").is_some() {
            tally.reference_raised += 1;
            continue;
        }
        if reference.get("timeout").is_some() {
            tally.reference_timeouts += 1;
            continue;
        }
        tally.sent += 1;
        if reference["stale"].as_array().is_some_and(|s| !s.is_empty()) {
            tally.stale_dollar_keys += 1;
        }
        let expected = json!({"matched": reference["matched"], "variables": reference["variables"], "selectors": reference["selectors"]});
        if *ours != expected {
            disagreements.push(format!(
                "rules {}\nitems {}\nreference {expected}\nours      {ours}",
                quads_json(rules),
                quads_json(report)
            ));
        } else if ours["matched"] == json!(true) {
            tally.matched += 1;
            if ours["selectors"].as_object().is_some_and(|s| !s.is_empty()) {
                tally.selectors += 1;
            }
        } else {
            tally.unmatched += 1;
        }
    }
    println!("match: {tally:?}");

    // Generate cases.
    let generate_cases = cases * 2 / 3;
    let mut blocks = Vec::new();
    let mut capped = 0;
    let mut our_errors = 0;
    for _ in 0..generate_cases {
        let block = random_block(&mut rng);
        match expand(&block) {
            Err(BlockError::TooMany { .. }) => capped += 1,
            Err(BlockError::Pattern { problem: PatternProblem::NumberTooLarge(_), .. }) => capped += 1,
            result => {
                our_errors += usize::from(result.is_err());
                blocks.push((block, result));
            }
        }
    }
    let request = json!({ "generate": blocks.iter().map(|(b, _)| model_json(b)).collect::<Vec<_>>() });
    let answer = run_driver(&python, &request);
    let answers = answer["generate"].as_array().expect("generate answers");
    assert_eq!(answers.len(), blocks.len());
    let mut entries_compared = 0;
    for ((block, ours), reference) in blocks.iter().zip(answers) {
        let agree = match (ours, reference.get("entries"), reference.get("error")) {
            (Ok(entries), Some(expected), None) => {
                entries_compared += entries.len();
                serde_json::to_value(entries).unwrap() == *expected
            }
            (Err(BlockError::Pattern { problem: PatternProblem::NoRangeStart(_), .. }), None, Some(e)) => {
                e.as_str().is_some_and(|e| e.starts_with("IndexError"))
            }
            _ => false,
        };
        if !agree {
            let ours = match ours {
                Ok(e) => serde_json::to_value(e).unwrap(),
                Err(e) => json!(e.to_string()),
            };
            disagreements.push(format!("generate {}\nreference {reference}\nours      {ours}", model_json(block)));
        }
    }
    println!(
        "generate: {} models compared ({entries_compared} entries, {our_errors} raising in both), {capped} over the {MAX_ENTRIES}-entry cap not sent",
        blocks.len()
    );
    // Realistic reports (hardware-detect's shape, 100–250 items) against the benchmark's 50
    // profiles: the profile chosen and its variables.
    let reports: Vec<Vec<Quad>> = (0..REALISTIC_REPORTS).map(|i| report(&mut rng, &MODELS[i % MODELS.len()])).collect();
    let profiles = profiles();
    let rule_sets = rule_sets(&profiles);
    let candidates = candidates(&profiles, &rule_sets);
    let request = json!({"bench": {
        "reports": reports.iter().map(|r| quads_json(r)).collect::<Vec<_>>(),
        "profiles": profiles.iter().map(|(n, rules)| json!([n, quads_json(rules)])).collect::<Vec<_>>(),
    }});
    let answer = run_driver(&python, &request);
    let results = answer["bench"]["results"].as_array().expect("bench answers");
    assert_eq!(results.len(), reports.len());
    for (items, reference) in reports.iter().zip(results) {
        if reference.is_null() {
            tally.reference_timeouts += 1;
            continue;
        }
        let selection = select_profile(items, &candidates);
        let ours = json!([selection.profile, selection.captures.variables]);
        if ours != *reference {
            disagreements
                .push(format!("realistic report {}\nreference {reference}\nours      {ours}", quads_json(items)));
        }
    }
    println!(
        "realistic: {} reports against {} profiles ({} over the reference's time limit)",
        reports.len(),
        profiles.len(),
        tally.reference_timeouts
    );
    println!("differential test took {:.1?}", started.elapsed());

    let total = disagreements.len();
    for d in disagreements.iter().take(5) {
        println!("DISAGREEMENT (seed {seed:#x}):\n{d}\n");
    }
    assert_eq!(total, 0, "{total} disagreements with the reference (seed {seed:#x}); first ones printed above");
    // The generator must exercise what it is for.
    assert!(tally.sent >= cases / 2, "too few match cases compared: {tally:?}");
    assert!(
        tally.needed_backtracking > 0 && tally.selectors > 0 && tally.matched > 0 && tally.unmatched > 0,
        "{tally:?}"
    );
}
