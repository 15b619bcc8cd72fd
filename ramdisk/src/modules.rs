//! Kernel modules: names, the `depends=` field of their `.modinfo` section, `modules.builtin`,
//! and the load order of a wanted set with its dependencies. Pure: the files are read by
//! [`crate::kernel`].

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

/// The dependencies in a module's `.modinfo` section (`depends=a,b`), normalized; empty when
/// the field is absent or empty.
pub fn module_depends(module: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(start) = module.windows(KEY.len()).position(|w| w == KEY).map(|p| p + KEY.len()) else {
        return Vec::new();
    };
    let value = module.get(start..).unwrap_or_default();
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(value.get(..end).unwrap_or_default())
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(normalize)
        .collect()
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
    fn names_are_normalized() {
        let deps = graph(&[("mdio_devres", &[]), ("ixgbe", &["mdio-devres"])]);
        let resolution = resolve(&names(&["ixgbe", "mdio-devres"]), &BTreeSet::new(), |m| deps.get(m).cloned());
        assert_eq!(resolution.order, ["mdio_devres", "ixgbe"]);
    }
}
