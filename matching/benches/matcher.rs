//! Profile matching throughput: 10,000 realistic `hardware-detect` reports (≈100–150 items)
//! against 50 eDeploy profiles, ours and the Python reference's on the same data, in one run.
//!
//! `cargo bench -p machinist-matching` — prints reports/s for both and the ratio. The reference
//! is slow (its backtracking is exponential in the captures of profiles that fail late), so it
//! is timed on the first reports until `MACHINIST_BENCH_PY_SECONDS` (default 60) of matching
//! have elapsed, and its rate extrapolated; JSON decoding is outside its clock. Both sides must
//! choose the same profile with the same variables for every report the reference processed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{
    MODELS, Rng, candidates, profiles, quads_json, reference_python, report, rule_sets, run_driver, seed_from_env,
};
use machinist_crds::Quad;
use machinist_matching::profile::select_profile;
use machinist_matching::rule::RuleSet;
use serde_json::{Value, json};

const REPORTS: usize = 10_000;
/// Passes of our matcher over the reports, before and again after the reference's run.
const RUNS: usize = 5;
const SEED: u64 = 0xbe4c_4a7e;

fn main() {
    let seed = seed_from_env("MACHINIST_BENCH_SEED", SEED);
    let mut rng = Rng::new(seed);
    let reports: Vec<Vec<Quad>> = (0..REPORTS)
        .map(|_| {
            let model = rng.pick(MODELS);
            report(&mut rng, &model)
        })
        .collect();
    let items: usize = reports.iter().map(Vec::len).sum();
    let (min, max) = reports.iter().fold((usize::MAX, 0), |(lo, hi), r| (lo.min(r.len()), hi.max(r.len())));
    let profiles = profiles();
    let rule_sets = rule_sets(&profiles);
    let candidates = candidates(&profiles, &rule_sets);
    println!(
        "profile matching: {REPORTS} reports ({min}–{max} items, {:.0} on average), {} profiles, seed {seed:#x}",
        items as f64 / REPORTS as f64,
        profiles.len()
    );

    // Ours.
    for r in reports.iter().take(200) {
        black_box(select_profile(r, &candidates));
    }
    // Each selection (with the reason every earlier profile was passed over) is built in full;
    // the decision is kept, the reasons dropped, as the operator would after writing them.
    let pass = || {
        let start = Instant::now();
        let decisions: Vec<_> = reports
            .iter()
            .map(|r| {
                let s = select_profile(black_box(r), &candidates);
                black_box(&s.mismatches);
                (s.profile.map(str::to_owned), s.captures.variables)
            })
            .collect();
        (start.elapsed().as_secs_f64(), decisions)
    };
    // Passes before and after the reference's run, so that both sides see the same machine
    // (it may be busy); the median is reported.
    let mut passes = Vec::new();
    let mut decisions = Vec::new();
    for _ in 0..RUNS {
        let (seconds, d) = pass();
        passes.push(seconds);
        decisions = d;
    }
    let ours: Vec<(Option<String>, Value)> = decisions.into_iter().map(|(p, v)| (p, json!(v))).collect();
    let matched = ours.iter().filter(|(p, _)| p.is_some()).count();
    let mut chosen: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (p, _) in &ours {
        *chosen.entry(p.as_deref().unwrap_or("(none)")).or_default() += 1;
    }
    println!("machinist: {matched} of {REPORTS} reports matched a profile; before the reference: {}", rate(&passes));
    println!("  profiles chosen: {} distinct; most: {:?}", chosen.len(), {
        let mut v: Vec<_> = chosen.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.into_iter().take(5).collect::<Vec<_>>()
    });

    if std::env::var_os("MACHINIST_BENCH_DETAIL").is_some() {
        detail(&reports, &profiles, &rule_sets);
    }

    // The reference.
    let python = match reference_python("benchmark") {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(e) => panic!("{e}"),
    };
    let budget = seed_from_env("MACHINIST_BENCH_PY_SECONDS", 60) as f64;
    // Probe its speed, then send about what it can do within the budget.
    let probe = run_reference(&python, &reports[..20], &profiles, budget);
    let probe_rate = probe["processed"].as_f64().unwrap() / probe["seconds"].as_f64().unwrap().max(1e-9);
    let send = ((probe_rate * budget * 1.5) as usize).clamp(20, REPORTS);
    let answer = run_reference(&python, &reports[..send], &profiles, budget);
    let processed = answer["processed"].as_u64().unwrap() as usize;
    let py_seconds = answer["seconds"].as_f64().unwrap();
    let py_rate = processed as f64 / py_seconds;
    let results = answer["results"].as_array().unwrap();
    let mut disagree = 0;
    for ((profile, variables), reference) in ours.iter().zip(results) {
        if !reference.is_null() && json!([profile, variables]) != *reference {
            disagree += 1;
            if disagree <= 3 {
                println!("  DISAGREEMENT: ours {profile:?} {variables} reference {reference}");
            }
        }
    }
    let scope = if processed < REPORTS {
        format!("first {processed} reports in {py_seconds:.1} s (time budget {budget} s), extrapolated")
    } else {
        format!("{processed} reports in {py_seconds:.1} s")
    };
    for _ in 0..RUNS {
        passes.push(pass().0);
    }
    let ours_rate = REPORTS as f64 / median(&passes);
    println!("machinist (all passes): {}", rate(&passes));
    println!("reference (hardware 0.33.0): {scope} = {py_rate:.2} reports/s");
    println!("ratio: {:.0}x (goal: 100x)", ours_rate / py_rate);
    let timeouts = answer["timeouts"].as_u64().unwrap_or(0);
    println!(
        "decisions compared on {} reports: {disagree} disagreements ({timeouts} reports over the reference's 10 s limit)",
        processed as u64 - timeouts
    );
    assert_eq!(disagree, 0, "machinist and the reference chose differently");
}

fn median(passes: &[f64]) -> f64 {
    let mut sorted = passes.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// `N reports/s (median of P passes, min–max)`.
fn rate(passes: &[f64]) -> String {
    let (fast, slow) = passes.iter().fold((f64::MAX, 0f64), |(f, s), p| (f.min(*p), s.max(*p)));
    format!(
        "{:.0} reports/s, {:.1} µs a report (median of {} passes over the {REPORTS} reports, {:.0}–{:.0} reports/s)",
        REPORTS as f64 / median(passes),
        median(passes) / REPORTS as f64 * 1e6,
        passes.len(),
        REPORTS as f64 / slow,
        REPORTS as f64 / fast
    )
}

/// Time spent per profile, every profile tried on every report (`MACHINIST_BENCH_DETAIL=1`).
fn detail(reports: &[Vec<Quad>], profiles: &[(String, Vec<Quad>)], rule_sets: &[RuleSet]) {
    use machinist_matching::matcher::{Hardware, match_rules};
    let mut spent: Vec<(f64, &str)> = Vec::new();
    for ((name, _), rules) in profiles.iter().zip(rule_sets) {
        let start = Instant::now();
        for r in reports.iter().take(2000) {
            black_box(match_rules(rules, &Hardware::new(r)));
        }
        spent.push((start.elapsed().as_secs_f64() / 2000.0 * 1e6, name));
    }
    spent.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (us, name) in spent.iter().take(12) {
        println!("  {name}: {us:.1} µs per report");
    }
}

fn run_reference(
    python: &std::path::Path,
    reports: &[Vec<Quad>],
    profiles: &[(String, Vec<Quad>)],
    budget: f64,
) -> Value {
    let request = json!({"bench": {
        "reports": reports.iter().map(|r| quads_json(r)).collect::<Vec<_>>(),
        "profiles": profiles.iter().map(|(n, rules)| json!([n, quads_json(rules)])).collect::<Vec<_>>(),
        "time_budget": budget,
    }});
    run_driver(python, &request)["bench"].clone()
}
