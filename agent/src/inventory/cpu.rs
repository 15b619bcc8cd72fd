//! Processors, from `/proc/cpuinfo`.

use std::collections::BTreeSet;

/// CPU flags worth a typed answer: virtualisation and the vector/crypto extensions that
/// workloads ask for.
pub const FLAGS_OF_INTEREST: [&str; 7] = ["vmx", "svm", "aes", "avx", "avx2", "avx512f", "sha_ni"];

/// What `/proc/cpuinfo` says about the processors (taken from the first one listed, except
/// the counts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cpu {
    /// `vendor_id` (`GenuineIntel`, `AuthenticAMD`).
    pub vendor: Option<String>,
    /// `model name`.
    pub model_name: Option<String>,
    /// `cpu family`.
    pub family: Option<String>,
    /// `model`.
    pub model: Option<String>,
    /// `stepping`.
    pub stepping: Option<String>,
    /// `cpu MHz` of the first processor: a momentary value, so not reported as an item.
    pub mhz: Option<f64>,
    /// All flags (`flags`, or `Features` on ARM), in kernel order.
    pub flags: Vec<String>,
    /// Physical packages: distinct `physical id`s (1 when the kernel lists none).
    pub sockets: u32,
    /// Physical cores, all sockets together: distinct (`physical id`, `core id`) pairs.
    pub cores: u32,
    /// Logical CPUs: `processor` entries.
    pub threads: u32,
    /// `/sys/devices/system/cpu/smt/control` (`on`, `off`, `notsupported`).
    pub smt: Option<String>,
}

impl Cpu {
    /// Cores per socket, as lscpu reports it.
    pub fn cores_per_socket(&self) -> u32 {
        self.cores / self.sockets.max(1)
    }

    /// Hardware threads per core, as lscpu reports it.
    pub fn threads_per_core(&self) -> u32 {
        (self.threads / self.cores.max(1)).max(1)
    }

    /// The [`FLAGS_OF_INTEREST`] this CPU has.
    pub fn features(&self) -> Vec<&'static str> {
        FLAGS_OF_INTEREST.into_iter().filter(|f| self.flags.iter().any(|g| g == f)).collect()
    }
}

/// Parses `/proc/cpuinfo`.
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut cpu = Cpu::default();
    let mut packages = BTreeSet::new();
    let mut cores = BTreeSet::new();
    // (physical id, core id) of the processor being read; a block ends at a blank line.
    let mut current: (Option<String>, Option<String>) = (None, None);
    let mut in_processor = false;
    let mut flush = |current: &mut (Option<String>, Option<String>), in_processor: &mut bool| {
        if std::mem::take(in_processor) {
            let (package, core) = std::mem::take(current);
            let package = package.unwrap_or_default();
            packages.insert(package.clone());
            cores.insert((package, core));
        }
    };
    let mut threads = 0u32;
    let mut untopologised = 0u32;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if line.trim().is_empty() {
                flush(&mut current, &mut in_processor);
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let first = threads <= 1;
        match key {
            "processor" => {
                flush(&mut current, &mut in_processor);
                in_processor = true;
                threads = threads.saturating_add(1);
            }
            "physical id" => current.0 = Some(value.to_owned()),
            "core id" => current.1 = Some(value.to_owned()),
            "vendor_id" if first => cpu.vendor = non_empty(value),
            "model name" if first => cpu.model_name = non_empty(value),
            "cpu family" if first => cpu.family = non_empty(value),
            "model" if first => cpu.model = non_empty(value),
            "stepping" if first => cpu.stepping = non_empty(value),
            "cpu MHz" if first => cpu.mhz = value.parse().ok(),
            "flags" | "Features" if first => cpu.flags = value.split_whitespace().map(str::to_owned).collect(),
            _ => {}
        }
    }
    flush(&mut current, &mut in_processor);
    // Without `core id` (ARM, some hypervisors) every processor counts as a core.
    for (_, core) in &cores {
        if core.is_none() {
            untopologised += 1;
        }
    }
    cpu.threads = threads;
    cpu.sockets = u32::try_from(packages.len()).unwrap_or(u32::MAX).max(u32::from(threads > 0));
    cpu.cores = if untopologised > 0 { threads } else { u32::try_from(cores.len()).unwrap_or(u32::MAX) };
    cpu
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn processor(n: u32, package: u32, core: u32) -> String {
        format!(
            "processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n\
             model name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz\nstepping\t: 4\ncpu MHz\t\t: 2100.000\n\
             physical id\t: {package}\nsiblings\t: 32\ncore id\t\t: {core}\ncpu cores\t: 16\n\
             flags\t\t: fpu vmx aes avx avx2 avx512f\n\n"
        )
    }

    #[test]
    fn two_sockets_with_hyperthreading() {
        let mut text = String::new();
        let mut n = 0;
        for thread in 0..2 {
            for package in 0..2 {
                for core in 0..16 {
                    let _ = thread;
                    text.push_str(&processor(n, package, core));
                    n += 1;
                }
            }
        }
        let cpu = parse_cpuinfo(&text);
        assert_eq!((cpu.sockets, cpu.cores, cpu.threads), (2, 32, 64));
        assert_eq!((cpu.cores_per_socket(), cpu.threads_per_core()), (16, 2));
        assert_eq!(cpu.model_name.as_deref(), Some("Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz"));
        assert_eq!(cpu.family.as_deref(), Some("6"));
        assert_eq!(cpu.model.as_deref(), Some("85"));
        assert_eq!(cpu.mhz, Some(2100.0));
        assert_eq!(cpu.features(), vec!["vmx", "aes", "avx", "avx2", "avx512f"]);
    }

    #[test]
    fn arm_without_topology_counts_processors() {
        let text = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd aes\n\n\
                    processor\t: 1\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd aes\n\nHardware\t: BCM2835\n";
        let cpu = parse_cpuinfo(text);
        assert_eq!((cpu.sockets, cpu.cores, cpu.threads), (1, 2, 2));
        assert_eq!(cpu.features(), vec!["aes"]);
        assert_eq!(cpu.model_name, None);
    }

    #[test]
    fn garbage_gives_an_empty_cpu() {
        let cpu = parse_cpuinfo("no colon here\n\u{0}\u{fffd}: x\n");
        assert_eq!((cpu.sockets, cpu.cores, cpu.threads), (0, 0, 0));
        assert_eq!(cpu.threads_per_core(), 1);
    }
}
