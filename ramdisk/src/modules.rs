//! Kernel modules: names, the fields of their `.modinfo` section (`depends=`, `firmware=`,
//! `alias=`), `modules.builtin`, the load order of a wanted set with its dependencies, how
//! `/init` loads each ([`load_plan`]) and `modprobe`'s index (`modules.dep`, `modules.alias`).
//! Pure: the files are read by [`crate::kernel`].

use std::collections::{BTreeMap, BTreeSet};

/// The module name of a file: `virtio_net` from `virtio_net.ko` (also `.ko.xz`, `.ko.zst`,
/// `.ko.gz`); `None` for anything else.
pub fn module_name(file: &str) -> Option<&str> {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|suffix| file.strip_suffix(suffix))
}

/// The kernel's spelling of a module name: `-` and `_` are the same, `_` is canonical.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Every value of `key` in a module's `.modinfo` section (NUL-separated `key=value` strings),
/// in order. A file that is not a 64-bit little-endian ELF with such a section is read whole.
pub fn modinfo_values(module: &[u8], key: &str) -> Vec<String> {
    let section = crate::elf::elf64_section(module, ".modinfo").unwrap_or(module);
    section
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(key.as_bytes())?.strip_prefix(b"="))
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .collect()
}

/// The dependencies in a module's `.modinfo` section (`depends=a,b`), normalized; empty when
/// the field is absent or empty.
pub fn module_depends(module: &[u8]) -> Vec<String> {
    modinfo_values(module, "depends")
        .first()
        .map(|value| value.split(',').map(str::trim).filter(|d| !d.is_empty()).map(normalize).collect())
        .unwrap_or_default()
}

/// The firmware files a module may request (its `firmware=` fields: `bnx2x/bnx2x-e2-7.13.21.0.fw`,
/// paths under `/lib/firmware`), in file order, each once.
pub fn module_firmware(module: &[u8]) -> Vec<String> {
    let mut files: Vec<String> = Vec::new();
    for file in modinfo_values(module, "firmware") {
        let file = file.trim().to_owned();
        if !file.is_empty() && !files.contains(&file) {
            files.push(file);
        }
    }
    files
}

/// Whether `/init` loads a module only when a device it drives is present: it has a `pci:`
/// alias. PCI devices are all enumerated before `/init` runs, so their `modalias` can be
/// matched against the aliases then; the devices of other buses (virtio, SCSI, Hyper-V VMBus)
/// appear only once a PCI driver (or `hv_vmbus`) is loaded, so their drivers are loaded always.
pub fn loaded_on_match(aliases: &[String]) -> bool {
    aliases.iter().any(|alias| alias.starts_with("pci:"))
}

/// How `/init` loads the modules that no PCI device's `modalias` selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadPlan {
    /// Loaded whatever the hardware, dependencies first: the wanted modules that are not PCI
    /// drivers ([`loaded_on_match`]) nor companions, and their dependencies.
    pub always: Vec<String>,
    /// Loaded only when one of the PCI drivers named is: wanted modules without any alias (so
    /// nothing could select them) that depend on PCI drivers, like `mlx4_en` on `mlx4_core`
    /// (which also asks the kernel for it, through `/sbin/modprobe`). In load order.
    pub companions: Vec<(String, Vec<String>)>,
}

/// The [`LoadPlan`] of `wanted`, from the modules' `depends` and `aliases` (a module without
/// an entry in `aliases` is not in the image: built in or missing, nothing to load), in
/// `order`.
pub fn load_plan(
    order: &[String],
    wanted: &[String],
    depends: &BTreeMap<String, Vec<String>>,
    aliases: &BTreeMap<String, Vec<String>>,
) -> LoadPlan {
    let pci_driver = |name: &str| aliases.get(name).is_some_and(|a| loaded_on_match(a));
    let mut roots = Vec::new();
    let mut companions = BTreeMap::new();
    for name in wanted.iter().map(|name| normalize(name)) {
        let Some(own) = aliases.get(&name) else { continue };
        if loaded_on_match(own) {
            continue;
        }
        let after: Vec<String> = depends.get(&name).into_iter().flatten().filter(|d| pci_driver(d)).cloned().collect();
        if own.is_empty() && !after.is_empty() {
            companions.insert(name, after);
        } else {
            roots.push(name);
        }
    }
    let mut needed = BTreeSet::new();
    while let Some(name) = roots.pop() {
        if needed.insert(name.clone()) {
            roots.extend(depends.get(&name).into_iter().flatten().cloned());
        }
    }
    LoadPlan {
        always: order.iter().filter(|name| needed.contains(*name)).cloned().collect(),
        companions: order
            .iter()
            .filter_map(|name| companions.remove(name).map(|after| (name.clone(), after)))
            .collect(),
    }
}

/// `modules.dep` as `modprobe` reads it: one line per module of `order`, its path relative to
/// the module directory, a colon, then the paths of all its dependencies, direct and
/// indirect, the one to load last first (`kernel/…/ata_piix.ko: kernel/…/libata.ko
/// kernel/…/scsi_mod.ko kernel/…/scsi_common.ko`). `paths` maps names to relative paths;
/// dependencies without a path (built in, missing) are left out.
pub fn render_modules_dep(
    order: &[String],
    depends: &BTreeMap<String, Vec<String>>,
    paths: &BTreeMap<String, String>,
) -> String {
    let position: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, name)| (name.as_str(), i)).collect();
    let mut text = String::new();
    for name in order {
        let Some(path) = paths.get(name) else { continue };
        let mut closure = BTreeSet::new();
        let mut pending: Vec<&String> = depends.get(name).into_iter().flatten().collect();
        while let Some(dependency) = pending.pop() {
            if paths.contains_key(dependency) && closure.insert(dependency.as_str()) {
                pending.extend(depends.get(dependency).into_iter().flatten());
            }
        }
        // Load order is `order`'s; modprobe loads the list from its end.
        let mut closure: Vec<&str> = closure.into_iter().collect();
        closure.sort_by_key(|dependency| std::cmp::Reverse(position.get(dependency).copied().unwrap_or(0)));
        text.push_str(path);
        text.push(':');
        for dependency in closure {
            if let Some(dependency_path) = paths.get(dependency) {
                text.push(' ');
                text.push_str(dependency_path);
            }
        }
        text.push('\n');
    }
    text
}

/// `modules.alias` as `modprobe` reads it: `alias PATTERN module` for every alias of every
/// module of `order`, in order.
pub fn render_modules_alias(order: &[String], aliases: &BTreeMap<String, Vec<String>>) -> String {
    let mut text = String::new();
    for name in order {
        for alias in aliases.get(name).into_iter().flatten() {
            if !alias.is_empty() && !alias.contains(char::is_whitespace) {
                text.push_str(&format!("alias {alias} {name}\n"));
            }
        }
    }
    text
}

/// The modules built into the kernel, from `modules.builtin` (`kernel/net/packet/af_packet.ko`
/// per line), normalized.
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| l.trim().rsplit('/').next()).filter_map(module_name).map(normalize).collect()
}

/// What became of a wanted set of modules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Modules to load, dependencies before their dependents.
    pub order: Vec<String>,
    /// Wanted modules or dependencies built into the kernel (nothing to load), sorted.
    pub builtin: Vec<String>,
    /// Wanted modules or dependencies neither built in nor in the package, sorted.
    pub missing: Vec<String>,
    /// What went wrong without stopping the build: missing modules, dependency cycles.
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Visiting,
    Done,
}

/// Orders `wanted` and their dependencies for loading. `depends(name)` gives a module's
/// dependencies, `None` when there is no such module file. Built-in modules are left out, as
/// are missing ones (with a warning: a module that needs them will fail to load, which the
/// init tolerates); a dependency cycle is broken where it closes, with a warning. The order is
/// depth-first in the order of `wanted` and of each module's `depends=`, so it is stable.
pub fn resolve<F>(wanted: &[String], builtin: &BTreeSet<String>, mut depends: F) -> Resolution
where
    F: FnMut(&str) -> Option<Vec<String>>,
{
    let mut resolution = Resolution::default();
    let mut marks: BTreeMap<String, Mark> = BTreeMap::new();
    let mut builtin_seen = BTreeSet::new();
    let mut missing = BTreeSet::new();
    let mut path: Vec<String> = Vec::new();
    for name in wanted {
        visit(
            &normalize(name),
            builtin,
            &mut depends,
            &mut marks,
            &mut path,
            &mut resolution,
            &mut builtin_seen,
            &mut missing,
        );
    }
    resolution.builtin = builtin_seen.into_iter().collect();
    resolution.missing = missing.into_iter().collect();
    resolution
}

#[allow(clippy::too_many_arguments)] // the walk's state, kept out of a struct for readability
fn visit<F>(
    name: &str,
    builtin: &BTreeSet<String>,
    depends: &mut F,
    marks: &mut BTreeMap<String, Mark>,
    path: &mut Vec<String>,
    resolution: &mut Resolution,
    builtin_seen: &mut BTreeSet<String>,
    missing: &mut BTreeSet<String>,
) where
    F: FnMut(&str) -> Option<Vec<String>>,
{
    if builtin.contains(name) {
        builtin_seen.insert(name.to_owned());
        return;
    }
    match marks.get(name) {
        Some(Mark::Done) => return,
        Some(Mark::Visiting) => {
            let start = path.iter().position(|p| p == name).unwrap_or(0);
            let cycle: Vec<&str> = path.get(start..).unwrap_or_default().iter().map(String::as_str).collect();
            resolution.warnings.push(format!("dependency cycle {} -> {name}: broken there", cycle.join(" -> ")));
            return;
        }
        None => {}
    }
    let Some(dependencies) = depends(name) else {
        if missing.insert(name.to_owned()) {
            let needed_by = path.last().map(|p| format!(" (needed by {p})")).unwrap_or_default();
            resolution.warnings.push(format!("module {name}{needed_by} is neither built in nor in the kernel package"));
        }
        marks.insert(name.to_owned(), Mark::Done);
        return;
    };
    marks.insert(name.to_owned(), Mark::Visiting);
    path.push(name.to_owned());
    for dependency in dependencies {
        visit(&normalize(&dependency), builtin, depends, marks, path, resolution, builtin_seen, missing);
    }
    path.pop();
    marks.insert(name.to_owned(), Mark::Done);
    resolution.order.push(name.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges.iter().map(|(m, deps)| ((*m).to_owned(), names(deps))).collect()
    }

    #[test]
    fn modinfo_dependencies_are_read_and_normalized() {
        let module = b"\x7fELF...\0license=GPL\0depends=virtio_ring,virtio,net-failover\0retpoline=Y\0";
        assert_eq!(module_depends(module), ["virtio_ring", "virtio", "net_failover"]);
        assert!(module_depends(b"\0depends=\0intree=Y\0").is_empty());
        assert!(module_depends(b"no modinfo").is_empty());
        assert_eq!(module_name("virtio_net.ko.xz"), Some("virtio_net"));
        assert_eq!(module_name("modules.order"), None);
    }

    #[test]
    fn modinfo_firmware_fields_are_all_read() {
        let module = b"\x7fELF\0firmware=tigon/tg3.bin\0license=GPL\0firmware=tigon/tg3_tso.bin\0\
                       firmware= tigon/tg3.bin\0depends=libphy\0firmware=\0";
        assert_eq!(module_firmware(module), ["tigon/tg3.bin", "tigon/tg3_tso.bin"]);
        assert_eq!(module_depends(module), ["libphy"]);
        assert!(module_firmware(b"\0depends=\0").is_empty());
        assert_eq!(modinfo_values(b"\0alias=a\0alias=b", "alias"), ["a", "b"]);
    }

    #[test]
    fn builtin_list_is_parsed() {
        let builtin = parse_builtin("kernel/net/packet/af_packet.ko\nkernel/drivers/virtio/virtio-mmio.ko\n\n");
        assert_eq!(builtin, ["af_packet", "virtio_mmio"].iter().map(|s| (*s).to_owned()).collect());
    }

    #[test]
    fn dependencies_load_first_each_once() {
        let deps = graph(&[
            ("virtio_net", &["net_failover", "virtio", "virtio_ring"]),
            ("net_failover", &["failover"]),
            ("failover", &[]),
            ("virtio", &["virtio_ring"]),
            ("virtio_ring", &[]),
            ("virtio_blk", &["virtio", "virtio_ring"]),
        ]);
        let resolution = resolve(&names(&["virtio_net", "virtio_blk"]), &BTreeSet::new(), |m| deps.get(m).cloned());
        assert_eq!(resolution.order, ["failover", "net_failover", "virtio_ring", "virtio", "virtio_net", "virtio_blk"]);
        assert!(resolution.warnings.is_empty() && resolution.missing.is_empty());
    }

    #[test]
    fn builtin_modules_are_not_loaded() {
        let deps = graph(&[("sd_mod", &["scsi_mod", "t10_pi"]), ("scsi_mod", &[])]);
        let builtin = parse_builtin("kernel/block/t10-pi.ko\nkernel/net/packet/af_packet.ko\n");
        let resolution = resolve(&names(&["af_packet", "sd_mod"]), &builtin, |m| deps.get(m).cloned());
        assert_eq!(resolution.order, ["scsi_mod", "sd_mod"]);
        assert_eq!(resolution.builtin, ["af_packet", "t10_pi"]);
    }

    #[test]
    fn missing_modules_are_warnings_not_errors() {
        let deps = graph(&[("igb", &["dca", "i2c_algo_bit"]), ("dca", &[])]);
        let resolution = resolve(&names(&["no_such_driver", "igb"]), &BTreeSet::new(), |m| deps.get(m).cloned());
        assert_eq!(resolution.order, ["dca", "igb"]);
        assert_eq!(resolution.missing, ["i2c_algo_bit", "no_such_driver"]);
        assert_eq!(resolution.warnings.len(), 2);
        assert!(resolution.warnings.iter().any(|w| w.contains("i2c_algo_bit (needed by igb)")));
    }

    #[test]
    fn cycles_are_broken_with_a_warning() {
        let deps = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("self", &["self"])]);
        let resolution = resolve(&names(&["a", "self"]), &BTreeSet::new(), |m| deps.get(m).cloned());
        assert_eq!(resolution.order, ["c", "b", "a", "self"]);
        assert_eq!(resolution.warnings.len(), 2, "{:?}", resolution.warnings);
        assert!(resolution.warnings.iter().any(|w| w.contains("a -> b -> c -> a")));
    }

    #[test]
    fn pci_drivers_load_on_match_companions_after_them_and_the_rest_always() {
        assert!(loaded_on_match(&names(&["pci:v00008086d000010D3sv*sd*bc*sc*i*"])));
        assert!(loaded_on_match(&names(&["mpt2sas", "pci:v00001000d00000064sv*sd*bc*sc*i*"])));
        assert!(!loaded_on_match(&names(&["virtio:d00000001v*"])));
        assert!(!loaded_on_match(&names(&["scsi:t-0x00*", "block-major-8-*"])));
        assert!(!loaded_on_match(&[]));

        let deps = graph(&[
            ("scsi_common", &[]),
            ("scsi_mod", &["scsi_common"]),
            ("libata", &["scsi_mod"]),
            ("ata_piix", &["libata", "scsi_mod"]),
            ("t10_pi", &[]),
            ("sd_mod", &["scsi_mod", "t10_pi"]),
            ("virtio", &[]),
            ("virtio_net", &["virtio"]),
            ("mlx4_core", &[]),
            ("mlx4_en", &["mlx4_core"]),
            ("lonely", &[]),
        ]);
        let aliases = graph(&[
            ("scsi_common", &[]),
            ("scsi_mod", &[]),
            ("libata", &[]),
            ("ata_piix", &["pci:v00008086d00007010sv*sd*bc*sc*i*"]),
            ("t10_pi", &[]),
            ("sd_mod", &["scsi:t-0x00*"]),
            ("virtio", &[]),
            ("virtio_net", &["virtio:d00000001v*"]),
            ("mlx4_core", &["pci:v000015B3d00001003sv*sd*bc*sc*i*"]),
            ("mlx4_en", &[]),
            ("lonely", &[]),
        ]);
        let order = names(&[
            "scsi_common",
            "scsi_mod",
            "libata",
            "ata_piix",
            "t10_pi",
            "sd_mod",
            "virtio",
            "virtio_net",
            "mlx4_core",
            "mlx4_en",
            "lonely",
        ]);
        let wanted = names(&["mlx4_en", "ata_piix", "virtio-net", "sd_mod", "lonely", "built_in_or_missing"]);
        let plan = load_plan(&order, &wanted, &deps, &aliases);
        assert_eq!(plan.always, ["scsi_common", "scsi_mod", "t10_pi", "sd_mod", "virtio", "virtio_net", "lonely"]);
        assert_eq!(plan.companions, [("mlx4_en".to_owned(), names(&["mlx4_core"]))]);
    }

    #[test]
    fn modules_dep_lists_every_dependency_last_loaded_first() {
        let deps = graph(&[
            ("scsi_common", &[]),
            ("scsi_mod", &["scsi_common"]),
            ("libata", &["scsi_mod"]),
            ("ata_piix", &["libata", "scsi_mod", "built_in_one"]),
        ]);
        let order = names(&["scsi_common", "scsi_mod", "libata", "ata_piix"]);
        let paths: BTreeMap<String, String> =
            order.iter().map(|name| (name.clone(), format!("kernel/{}.ko", name.replace('_', "-")))).collect();
        assert_eq!(
            render_modules_dep(&order, &deps, &paths),
            "kernel/scsi-common.ko:\nkernel/scsi-mod.ko: kernel/scsi-common.ko\n\
             kernel/libata.ko: kernel/scsi-mod.ko kernel/scsi-common.ko\n\
             kernel/ata-piix.ko: kernel/libata.ko kernel/scsi-mod.ko kernel/scsi-common.ko\n"
        );
        let aliases = graph(&[("ata_piix", &["pci:v00008086d00007010sv*sd*bc*sc*i*", "bad alias"]), ("libata", &[])]);
        assert_eq!(render_modules_alias(&order, &aliases), "alias pci:v00008086d00007010sv*sd*bc*sc*i* ata_piix\n");
    }

    #[test]
    fn names_are_normalized() {
        let deps = graph(&[("mdio_devres", &[]), ("ixgbe", &["mdio-devres"])]);
        let resolution = resolve(&names(&["ixgbe", "mdio-devres"]), &BTreeSet::new(), |m| deps.get(m).cloned());
        assert_eq!(resolution.order, ["mdio_devres", "ixgbe"]);
    }
}
