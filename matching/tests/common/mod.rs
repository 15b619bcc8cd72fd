//! Shared by the differential test and the benchmark: the reference's interpreter and driver, a
//! seeded random generator, and realistic `hardware-detect` reports and eDeploy profiles.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use machinist_crds::Quad;
use machinist_e2e::prereq::{Missing, Mode, Verdict};
use machinist_matching::profile::Candidate;
use machinist_matching::rule::RuleSet;
use serde_json::{Value, json};

/// SplitMix64: small, seeded, reproducible everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// A seed from `var` (decimal or 0x-hex), else `default`.
pub fn seed_from_env(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(text) => {
            let t = text.trim();
            let parsed = match t.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => t.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{var}={text:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// The repository root (`matching/..`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The reference's interpreter: `MACHINIST_PYTHON`, else `<repo>/.venv/bin/python`; `Ok(None)`
/// (after printing why) when it or the `hardware` module is missing and the run may skip;
/// `Err` when `MACHINIST_E2E=require`.
pub fn reference_python(test: &str) -> Result<Option<PathBuf>, String> {
    let python =
        std::env::var_os("MACHINIST_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let mode = Mode::from_env().map_err(|e| e.to_string())?;
    let usable = Command::new(&python)
        .args(["-c", "import hardware.matcher, hardware.generate"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = if usable {
        vec![]
    } else {
        vec![Missing::Program {
            program: format!(
                "the eDeploy reference (python {} with hardware==0.33.0; set MACHINIST_PYTHON to use another)",
                python.display()
            ),
        }]
    };
    match mode.verdict(&missing) {
        Verdict::Run => Ok(Some(python)),
        Verdict::Skip(reason) => {
            println!("skipping: {test}: {reason}");
            Ok(None)
        }
        Verdict::Fail(reason) => Err(format!("{test}: {reason}")),
    }
}

/// Runs `tests/reference/driver.py` once on `request`.
pub fn run_driver(python: &Path, request: &Value) -> Value {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/driver.py");
    let mut child = Command::new(python)
        .arg(&driver)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the reference driver");
    let input = serde_json::to_vec(request).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("run the reference driver");
    writer.join().unwrap().expect("feed the reference driver");
    assert!(output.status.success(), "reference driver failed: {}", output.status);
    serde_json::from_slice(&output.stdout).expect("reference driver answer is JSON")
}

pub fn quads_json(quads: &[Quad]) -> Value {
    Value::Array(quads.iter().map(|q| json!([q.class, q.r#type, q.name, q.value])).collect())
}

/// A kind of machine, and what its reports vary in.
#[derive(Clone, Debug)]
pub struct Model {
    pub vendor: &'static str,
    pub product: &'static str,
    pub cpu: &'static str,
    pub sockets: &'static [u64],
    pub cores: u64,
    pub memory_gib: &'static [u64],
    pub bank_gib: u64,
    pub disks: &'static [usize],
    pub disk_gb: &'static [u64],
    pub disk_vendor: &'static str,
    pub disk_model: &'static str,
    pub nics: &'static [usize],
    pub nic_driver: &'static str,
    pub net: &'static str,
}

pub const MODELS: &[Model] = &[
    Model {
        vendor: "HP",
        product: "ProLiant DL360 Gen9 (755258-B21)",
        cpu: "Intel(R) Xeon(R) CPU E5-2630 v3 @ 2.40GHz",
        sockets: &[1, 2],
        cores: 8,
        memory_gib: &[64, 128, 256],
        bank_gib: 16,
        disks: &[2, 4, 6],
        disk_gb: &[300, 600, 1200],
        disk_vendor: "HP",
        disk_model: "LOGICAL VOLUME",
        nics: &[2, 4],
        nic_driver: "tg3",
        net: "10.1",
    },
    Model {
        vendor: "HP",
        product: "ProLiant BL460c Gen8 (641016-B21)",
        cpu: "Intel(R) Xeon(R) CPU E5-2650 0 @ 2.00GHz",
        sockets: &[2],
        cores: 8,
        memory_gib: &[64, 128],
        bank_gib: 16,
        disks: &[2],
        disk_gb: &[300],
        disk_vendor: "HP",
        disk_model: "LOGICAL VOLUME",
        nics: &[2],
        nic_driver: "be2net",
        net: "10.29",
    },
    Model {
        vendor: "Dell Inc.",
        product: "PowerEdge R630",
        cpu: "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
        sockets: &[2],
        cores: 14,
        memory_gib: &[128, 256, 384],
        bank_gib: 32,
        disks: &[2, 4, 8],
        disk_gb: &[480, 960, 1920],
        disk_vendor: "DELL",
        disk_model: "PERC H730 Mini",
        nics: &[2, 4],
        nic_driver: "ixgbe",
        net: "10.2",
    },
    Model {
        vendor: "Dell Inc.",
        product: "PowerEdge R740xd",
        cpu: "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz",
        sockets: &[2],
        cores: 16,
        memory_gib: &[192, 384],
        bank_gib: 32,
        disks: &[4, 8, 12],
        disk_gb: &[4000, 8000],
        disk_vendor: "ATA",
        disk_model: "ST8000NM0055",
        nics: &[2, 4],
        nic_driver: "i40e",
        net: "10.3",
    },
    Model {
        vendor: "Supermicro",
        product: "SYS-1029P-WTR",
        cpu: "Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz",
        sockets: &[1, 2],
        cores: 10,
        memory_gib: &[96, 192],
        bank_gib: 16,
        disks: &[1, 2, 4],
        disk_gb: &[240, 960],
        disk_vendor: "ATA",
        disk_model: "SAMSUNG MZ7LM960",
        nics: &[2],
        nic_driver: "igb",
        net: "10.4",
    },
    Model {
        vendor: "Lenovo",
        product: "ThinkSystem SR650 -[7X06CTO1WW]-",
        cpu: "Intel(R) Xeon(R) Gold 5118 CPU @ 2.30GHz",
        sockets: &[2],
        cores: 12,
        memory_gib: &[192, 384],
        bank_gib: 32,
        disks: &[2, 6],
        disk_gb: &[900, 1800],
        disk_vendor: "LENOVO",
        disk_model: "RAID 930-8i",
        nics: &[2, 4],
        nic_driver: "bnxt_en",
        net: "10.5",
    },
    Model {
        vendor: "Cisco Systems Inc",
        product: "UCSC-C220-M4S",
        cpu: "Intel(R) Xeon(R) CPU E5-2620 v4 @ 2.10GHz",
        sockets: &[2],
        cores: 8,
        memory_gib: &[64, 128],
        bank_gib: 16,
        disks: &[2, 4],
        disk_gb: &[600, 1200],
        disk_vendor: "LSI",
        disk_model: "UCSC-MRAID12G",
        nics: &[2, 4],
        nic_driver: "enic",
        net: "10.6",
    },
    Model {
        vendor: "QEMU",
        product: "Standard PC (i440FX + PIIX, 1996)",
        cpu: "Intel Core Processor (Haswell, no TSX)",
        sockets: &[1, 2, 4],
        cores: 1,
        memory_gib: &[4, 8, 16],
        bank_gib: 4,
        disks: &[1, 2],
        disk_gb: &[20, 40, 100],
        disk_vendor: "0x1af4",
        disk_model: "",
        nics: &[1, 2],
        nic_driver: "virtio_net",
        net: "192.168.122",
    },
];

fn q(c: &str, t: &str, n: &str, v: impl ToString) -> Quad {
    Quad::new(c, t, n, v.to_string())
}

fn mac(rng: &mut Rng, prefix: &str) -> String {
    format!("{prefix}:{:02x}:{:02x}:{:02x}", rng.below(256), rng.below(256), rng.below(256))
}

/// One report of `hardware-detect`'s shape (≈100–150 items for a server).
pub fn report(rng: &mut Rng, model: &Model) -> Vec<Quad> {
    let mut items = Vec::with_capacity(160);
    let serial = format!("{}{:06X}", &model.vendor[..2].to_uppercase(), rng.below(1 << 24));
    let sockets = rng.pick(model.sockets);
    let memory = rng.pick(model.memory_gib);
    let disks = rng.pick(model.disks);
    let nics = rng.pick(model.nics);
    let disk_gb = rng.pick(model.disk_gb);
    let virtual_machine = model.vendor == "QEMU";
    let disk_prefix = if virtual_machine { "vd" } else { "sd" };

    for (i, letter) in ('a'..='z').take(disks).enumerate() {
        let name = format!("{disk_prefix}{letter}");
        // Mostly identical disks; the last one sometimes smaller (a boot SSD).
        let size = if i + 1 == disks && disks > 2 && rng.chance(30) { 240 } else { disk_gb };
        items.push(q("disk", &name, "size", size));
        items.push(q("disk", &name, "vendor", model.disk_vendor));
        if !model.disk_model.is_empty() {
            items.push(q("disk", &name, "model", model.disk_model));
        }
        items.push(q("disk", &name, "rev", rng.pick(&["4.68", "1.02", "4.52"])));
        items.push(q("disk", &name, "optimal_io_size", 0));
        items.push(q("disk", &name, "physical_block_size", 512));
        items.push(q("disk", &name, "rotational", u8::from(size > 2000 || rng.chance(30))));
        items.push(q("disk", &name, "Write Cache Enable", u8::from(rng.chance(50))));
        items.push(q("disk", &name, "Read Cache Disable", 0));
    }
    items.push(q("disk", "logical", "count", disks));
    items.push(q("system", "product", "serial", &serial));
    items.push(q("system", "product", "name", model.product));
    items.push(q("system", "product", "vendor", model.vendor));
    items.push(q(
        "system",
        "product",
        "uuid",
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            rng.next_u64() as u32,
            rng.below(1 << 16),
            rng.below(1 << 12),
            rng.below(1 << 12),
            rng.next_u64() & 0xffff_ffff_ffff
        ),
    ));
    items.push(q("firmware", "bios", "version", rng.pick(&["I31", "P89", "2.4.3", "1.10.2"])));
    items.push(q("firmware", "bios", "date", rng.pick(&["09/18/2013", "03/05/2019", "11/12/2020"])));
    items.push(q("firmware", "bios", "vendor", model.vendor));
    let banks = (memory / model.bank_gib).max(1);
    let bytes = model.bank_gib << 30;
    for b in 0..banks.min(12) {
        let bank = format!("bank:{}:{}", b / 6, b % 6);
        items.push(q("memory", &bank, "size", bytes));
        items.push(q("memory", &bank, "clock", 2_400_000_000u64));
        items.push(q("memory", &bank, "description", "DIMM DDR4 Synchronous 2400 MHz (0.4 ns)"));
        items.push(q("memory", &bank, "vendor", rng.pick(&["HP", "Samsung", "Micron", "Hynix"])));
        items.push(q("memory", &bank, "slot", format!("PROC {} DIMM {}", b / 6 + 1, b % 6 + 1)));
    }
    items.push(q("memory", "total", "size", memory << 30));
    items.push(q("memory", "banks", "count", banks));
    let mac_prefix =
        if virtual_machine { "52:54:00" } else { rng.pick(&["9c:b6:54", "a0:36:9f", "24:6e:96", "00:25:90"]) };
    let host = rng.range(2, 250);
    for i in 0..nics {
        let eth = format!("eth{i}");
        items.push(q("network", &eth, "serial", mac(rng, mac_prefix)));
        items.push(q("network", &eth, "businfo", format!("pci@0000:0{}:00.{}", 3 + i / 2, i % 2)));
        items.push(q("network", &eth, "driver", model.nic_driver));
        items.push(q("network", &eth, "link", if i == 0 || rng.chance(50) { "yes" } else { "no" }));
        if i == 0 || rng.chance(30) {
            let (ip, netmask, cidr, network) = if model.net.matches('.').count() == 2 {
                (format!("{}.{}", model.net, host), "255.255.255.0", "24", format!("{}.0", model.net))
            } else {
                (format!("{}.{}.{}", model.net, i, host), "255.255.0.0", "16", format!("{}.0.0", model.net))
            };
            items.push(q("network", &eth, "ipv4", ip));
            items.push(q("network", &eth, "ipv4-netmask", netmask));
            items.push(q("network", &eth, "ipv4-cidr", cidr));
            items.push(q("network", &eth, "ipv4-network", network));
        }
        items.push(q("network", &eth, "size", rng.pick(&["1000000000", "10000000000"])));
        items.push(q("network", &eth, "duplex", "full"));
        items.push(q("network", &eth, "autonegotiation", "on"));
        items.push(q("network", &eth, "latency", 0));
    }
    items.push(q("cpu", "physical", "number", sockets));
    for s in 0..sockets {
        let p = format!("physical_{s}");
        items.push(q("cpu", &p, "vendor", "Intel Corp."));
        items.push(q("cpu", &p, "product", model.cpu));
        items.push(q("cpu", &p, "frequency", 2_400_000_000u64));
        items.push(q("cpu", &p, "clock", 100_000_000u64));
        items.push(q("cpu", &p, "cores", model.cores));
        items.push(q("cpu", &p, "enabled_cores", model.cores));
        items.push(q("cpu", &p, "threads", model.cores * 2));
    }
    items.push(q("cpu", "logical", "number", sockets * model.cores * 2));
    items.push(q("system", "ipmi", "channel", if virtual_machine { 0 } else { 2 }));
    items.push(q("system", "kernel", "version", "4.19.0-18-amd64"));
    items.push(q("system", "kernel", "arch", "x86_64"));
    items.push(q("system", "kernel", "cmdline", "BOOT_IMAGE=/vmlinuz SERV=10.0.0.1 DEBUG=0"));
    items
}

/// 50 eDeploy profiles over the models, in priority order (most specific first), written as a
/// careful eDeploy user writes them: cheap checks without captures first (vendor, product,
/// counts, the first disk, memory), then the disks and NICs the installation needs, captured.
/// (Rules that capture several variables and then fail make the reference's backtracking
/// explode — minutes per report — which users learned to avoid.)
/// The rules of each profile, parsed.
pub fn rule_sets(profiles: &[(String, Vec<Quad>)]) -> Vec<RuleSet> {
    profiles.iter().map(|(_, rules)| RuleSet::parse(rules).unwrap()).collect()
}

/// The profiles as selection candidates, in their order, unlimited and empty.
pub fn candidates<'a>(profiles: &'a [(String, Vec<Quad>)], rule_sets: &'a [RuleSet]) -> Vec<Candidate<'a>> {
    profiles
        .iter()
        .zip(rule_sets)
        .enumerate()
        .map(|(i, ((name, _), rules))| Candidate { name, priority: i as i32, max_machines: None, bound: 0, rules })
        .collect()
}

pub fn profiles() -> Vec<(String, Vec<Quad>)> {
    let mut out = Vec::new();
    let disks = |n: usize, gt: u64| -> Vec<Quad> {
        (1..=n).map(|i| q("disk", &format!("$disk{i}"), "size", format!("gt({gt})"))).collect()
    };
    for (m, model) in MODELS.iter().enumerate() {
        // Checks that capture nothing and consume no item a later rule needs (each rule
        // consumes the item it matches).
        let guards = |count: usize, extra: Vec<Quad>| -> Vec<Quad> {
            let mut rules = vec![
                q("system", "product", "vendor", model.vendor),
                q("system", "product", "name", model.product),
                q("disk", "logical", "count", format!("ge({count})")),
            ];
            rules.extend(extra);
            rules
        };
        let net = |rules: &mut Vec<Quad>| {
            rules.push(q("network", "$eth", "ipv4", format!("network({})", cidr(model.net))));
            rules.push(q("network", "$eth", "serial", "$mac"));
        };
        let big = *model.disk_gb.iter().max().unwrap_or(&100);
        let most = *model.disks.iter().max().unwrap_or(&1);
        let max_mem = *model.memory_gib.iter().max().unwrap_or(&1);
        // 1: storage node: the most memory, all its big disks but the boot one.
        let mut r = guards(most, vec![q("memory", "total", "size", format!("ge({})", max_mem << 30))]);
        r.extend(disks(most.saturating_sub(1).max(1), big - 1));
        net(&mut r);
        out.push((format!("m{m}-storage"), r));
        // 2: compute: two sockets, much memory, one system disk; selected by serial ($$).
        let mut r = guards(
            1,
            vec![
                q("cpu", "physical", "number", "ge(2)"),
                q("memory", "total", "size", format!("ge({})", (max_mem / 2) << 30)),
            ],
        );
        r.extend(disks(1, 100));
        r.push(q("system", "product", "serial", "$$serial"));
        net(&mut r);
        out.push((format!("m{m}-compute"), r));
        // 3: a rotational data disk next to another disk.
        let mut r =
            guards(2, vec![q("disk", "$disk1", "rotational", "1"), q("disk", "$disk1", "size", "$size1=gt(200)")]);
        r.push(q("disk", "$disk2", "size", "$size2=gt(200)"));
        net(&mut r);
        out.push((format!("m{m}-hdd"), r));
        // 4: two NICs: one with link on the provisioning network, another of the model's driver.
        let mut r = guards(2, vec![q("network", "eth1", "businfo", "regexp(^pci@)")]);
        r.extend(disks(2, 100));
        r.extend([
            q("network", "$eth", "link", "yes"),
            q("network", "$eth", "ipv4", format!("network({})", cidr(model.net))),
            q("network", "$eth", "serial", "$mac"),
            q("network", "$eth2", "serial", "$mac2=regexp(^[0-9a-f:]{17}$)"),
            q("network", "$eth2", "driver", model.nic_driver),
        ]);
        out.push((format!("m{m}-dualnic"), r));
        // 5: anything of the model.
        let mut r = guards(1, vec![q("cpu", "physical", "number", "ge(1)")]);
        r.extend(disks(1, 10));
        net(&mut r);
        out.push((format!("m{m}-generic"), r));
        // 6: exact CPU and ranges of cores and memory.
        let r = guards(
            1,
            vec![
                q("cpu", "physical_0", "product", model.cpu),
                q("cpu", "logical", "number", format!("range({}, {})", model.cores * 2, model.cores * 8)),
                q("memory", "total", "size", format!("range({}, {})", 8u64 << 30, 512u64 << 30)),
                q("disk", "$disk", "size", "ge(20)"),
                q("disk", "$disk", "vendor", "in('HP', 'DELL', 'ATA', 'LENOVO', 'LSI', '0x1af4')"),
            ],
        );
        out.push((format!("m{m}-exact"), r));
    }
    // Two catch-alls: any machine with a disk and an addressed NIC; then anything.
    out.push((
        "any-server".to_owned(),
        vec![
            q("disk", "$disk", "size", "gt(4)"),
            q("network", "$eth", "ipv4", "regexp(^(10|192)\\.)"),
            q("network", "$eth", "serial", "$mac"),
        ],
    ));
    out.push(("discovery".to_owned(), vec![q("network", "$eth", "serial", "$mac")]));
    assert_eq!(out.len(), 50, "the benchmark wants 50 profiles");
    out
}

fn cidr(net: &str) -> String {
    if net.matches('.').count() == 2 { format!("{net}.0/24") } else { format!("{net}.0.0/16") }
}
