//! The install plan, pure: what an allocated machine installs, resolved from its Role, its
//! HardwareProfile's install layout and its variables (captures such as `$disk` and the CMDB
//! entry's `ip`, `netmask`, `gateway`, `dns_servers`, `hostname`). The operator writes the plan
//! into `status.install`; the boot services hand it to the agent.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use machinist_crds::hardware_profile::{AddressMode, InstallLayout};
use machinist_crds::layout::{LayoutError, check, tree_partitions};
use machinist_crds::machine::{InstallPlan, PlannedLayout, PlannedNetwork};
use machinist_crds::role::ImageFormat;
use machinist_crds::role::InstallMethod;
use machinist_crds::{RoleRef, RoleSpec};

/// Why no plan could be made. Each says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The Role installs with the Debian installer, which is not built yet.
    #[error("Role {0} installs with the Debian installer, which machinist does not run yet; use install.method Image")]
    MethodNotBuilt(String),
    /// The Role has no image.
    #[error("Role {0} has no install.image")]
    NoImage(String),
    /// The Role is not the version the machine asks for.
    #[error("the machine asks for version {wanted} of Role {role}, which is at version {has}")]
    Version {
        /// The Role.
        role: String,
        /// `role.version`.
        wanted: String,
        /// `spec.version` of the Role.
        has: String,
    },
    /// The profile declares no install layout, so no disk to write.
    #[error("HardwareProfile {0} has no install.targetDisk: machinist does not guess which disk to overwrite")]
    NoTargetDisk(String),
    /// A `$variable` the layout names was not captured.
    #[error(
        "{field} is {expression}, but the machine has no variable {variable} (its profile's rules did not capture it)"
    )]
    Unresolved {
        /// The field.
        field: &'static str,
        /// Its value.
        expression: String,
        /// The variable.
        variable: String,
    },
    /// A target disk that is not a plain device path.
    #[error("target disk {0:?} is not a device path such as /dev/sda")]
    NotADevice(String),
    /// An interface name that is not one.
    #[error("network interface {0:?} is not an interface name")]
    BadInterface(String),
    /// Static addressing without the entry's address or netmask.
    #[error("static network needs the CMDB entry's {0}, which the machine does not have")]
    MissingAddress(&'static str),
    /// An address that does not parse.
    #[error("{field} {value:?} is not an IPv4 address{detail}")]
    BadAddress {
        /// The variable.
        field: &'static str,
        /// Its value.
        value: String,
        /// More.
        detail: &'static str,
    },
    /// The image URL is outside the sources the operator allows.
    #[error("image URL {url} is not under an allowed image source ({allowed})")]
    SourceNotAllowed {
        /// The URL.
        url: String,
        /// The allowed prefixes.
        allowed: String,
    },
    /// A `tar` image on partitions it cannot go on.
    #[error("HardwareProfile {profile}'s partitions cannot take Role {role}'s tar image: {why}")]
    Layout {
        /// The profile.
        profile: String,
        /// The Role.
        role: String,
        /// Why.
        why: LayoutError,
    },
    /// The image URL is not a plain http(s) URL.
    #[error("image URL {0:?} must be http:// or https://, without credentials, spaces or fragments")]
    BadUrl(String),
}

/// What the plan is made from.
#[derive(Clone, Copy, Debug)]
pub struct PlanInputs<'a> {
    /// The role to install, as the machine names it.
    pub role_ref: &'a RoleRef,
    /// The Role object's spec.
    pub role: &'a RoleSpec,
    /// The bound profile's name.
    pub profile: &'a str,
    /// Its install layout.
    pub layout: Option<&'a InstallLayout>,
    /// The machine's variables.
    pub variables: &'a BTreeMap<String, String>,
    /// URL prefixes images may come from; empty: any http(s) URL.
    pub allowed_sources: &'a [String],
}

/// The plan, or why there is none.
pub fn plan(inputs: PlanInputs<'_>) -> Result<InstallPlan, PlanError> {
    let role_name = &inputs.role_ref.name;
    if let Some(wanted) = &inputs.role_ref.version
        && wanted != &inputs.role.version
    {
        return Err(PlanError::Version {
            role: role_name.clone(),
            wanted: wanted.clone(),
            has: inputs.role.version.clone(),
        });
    }
    if inputs.role.install.method != InstallMethod::Image {
        return Err(PlanError::MethodNotBuilt(role_name.clone()));
    }
    let image = inputs.role.install.image.clone().ok_or_else(|| PlanError::NoImage(role_name.clone()))?;
    check_source(&image.url, inputs.allowed_sources)?;
    let layout = inputs.layout.ok_or_else(|| PlanError::NoTargetDisk(inputs.profile.to_owned()))?;
    let disk = resolve("install.targetDisk", &layout.target_disk, inputs.variables)?;
    let target_disk = if disk.starts_with("/dev/") { disk } else { format!("/dev/{disk}") };
    let device_ok = target_disk.len() > "/dev/".len()
        && !target_disk.contains("..")
        && target_disk.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b':'));
    if !device_ok {
        return Err(PlanError::NotADevice(target_disk));
    }
    let network = layout.network.as_ref().map(|n| network(&n.interface, n.mode, inputs.variables)).transpose()?;
    let tree_layout = if image.format == ImageFormat::Tar {
        let partitions = tree_partitions(&layout.partitions);
        check(layout.partition_table, &partitions).map_err(|why| PlanError::Layout {
            profile: inputs.profile.to_owned(),
            role: role_name.clone(),
            why,
        })?;
        Some(PlannedLayout { partition_table: layout.partition_table, partitions })
    } else {
        None
    };
    Ok(InstallPlan {
        role: RoleRef { name: role_name.clone(), version: Some(inputs.role.version.clone()) },
        image,
        target_disk,
        hostname: inputs.variables.get("hostname").cloned(),
        network,
        layout: tree_layout,
    })
}

/// `$name` → the variable's value; anything else as it is.
fn resolve(field: &'static str, expression: &str, variables: &BTreeMap<String, String>) -> Result<String, PlanError> {
    match expression.strip_prefix('$') {
        Some(variable) => variables.get(variable).cloned().ok_or_else(|| PlanError::Unresolved {
            field,
            expression: expression.to_owned(),
            variable: variable.to_owned(),
        }),
        None => Ok(expression.to_owned()),
    }
}

fn network(
    interface: &str,
    mode: AddressMode,
    variables: &BTreeMap<String, String>,
) -> Result<PlannedNetwork, PlanError> {
    let interface = resolve("install.network.interface", interface, variables)?;
    let name_ok = !interface.is_empty()
        && interface.len() <= 15
        && interface.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(PlanError::BadInterface(interface));
    }
    let dns = match variables.get("dns_servers") {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| parse_ip("dns_servers", s).map(|ip| ip.to_string()))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let (address, gateway) = match mode {
        AddressMode::Dhcp => (None, None),
        AddressMode::Static => {
            let ip = parse_ip("ip", variables.get("ip").ok_or(PlanError::MissingAddress("ip"))?)?;
            let mask = variables.get("netmask").ok_or(PlanError::MissingAddress("netmask"))?;
            let prefix = prefix_length(mask)?;
            let gateway =
                variables.get("gateway").map(|g| parse_ip("gateway", g).map(|g| g.to_string())).transpose()?;
            (Some(format!("{ip}/{prefix}")), gateway)
        }
    };
    Ok(PlannedNetwork { interface, mode, address, gateway, dns })
}

fn parse_ip(field: &'static str, value: &str) -> Result<Ipv4Addr, PlanError> {
    value.trim().parse().map_err(|_| PlanError::BadAddress { field, value: value.to_owned(), detail: "" })
}

fn prefix_length(mask: &str) -> Result<u32, PlanError> {
    let bits = u32::from(parse_ip("netmask", mask)?);
    let prefix = bits.leading_ones();
    if bits.checked_shl(prefix).unwrap_or(0) != 0 {
        return Err(PlanError::BadAddress {
            field: "netmask",
            value: mask.to_owned(),
            detail: " mask (its ones are not contiguous)",
        });
    }
    Ok(prefix)
}

fn check_source(url: &str, allowed: &[String]) -> Result<(), PlanError> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let authority = rest.map(|r| r.split('/').next().unwrap_or_default());
    let plain = authority.is_some_and(|a| !a.is_empty() && !a.contains('@'))
        && !url.contains('#')
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !plain {
        return Err(PlanError::BadUrl(url.to_owned()));
    }
    // A prefix must end where a path segment does, or `http://host/images` would allow
    // `http://host/images-evil/…`.
    let under = |prefix: &String| {
        url.strip_prefix(prefix.as_str())
            .is_some_and(|rest| prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
    };
    if allowed.is_empty() || allowed.iter().any(under) {
        Ok(())
    } else {
        Err(PlanError::SourceNotAllowed { url: url.to_owned(), allowed: allowed.join(", ") })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn role(install: serde_json::Value) -> RoleSpec {
        serde_json::from_value(json!({"version": "1.0", "install": install})).unwrap()
    }

    fn image_role() -> RoleSpec {
        role(json!({"method": "Image", "image": {
            "url": "http://10.0.0.1:8080/artifacts/images/base.raw.gz",
            "sha256": "a".repeat(64), "format": "raw", "compression": "gzip"}}))
    }

    fn layout(value: serde_json::Value) -> InstallLayout {
        serde_json::from_value(value).unwrap()
    }

    fn variables() -> BTreeMap<String, String> {
        [
            ("disk", "vda"),
            ("eth", "eth0"),
            ("ip", "10.0.0.4"),
            ("netmask", "255.255.255.0"),
            ("gateway", "10.0.0.1"),
            ("dns_servers", "10.0.0.1, 9.9.9.9"),
            ("hostname", "host04"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn inputs<'a>(
        role_ref: &'a RoleRef,
        role: &'a RoleSpec,
        layout: Option<&'a InstallLayout>,
        variables: &'a BTreeMap<String, String>,
    ) -> PlanInputs<'a> {
        PlanInputs { role_ref, role, profile: "vm", layout, variables, allowed_sources: &[] }
    }

    #[test]
    fn a_plan_resolves_the_disk_and_the_static_network() {
        let role_ref = RoleRef { name: "base".into(), version: None };
        let spec = image_role();
        let layout = layout(json!({"targetDisk": "$disk", "network": {"interface": "$eth", "mode": "static"}}));
        let variables = variables();
        let plan = plan(inputs(&role_ref, &spec, Some(&layout), &variables)).unwrap();
        assert_eq!(plan.target_disk, "/dev/vda");
        assert_eq!(plan.role, RoleRef { name: "base".into(), version: Some("1.0".into()) });
        assert_eq!(plan.hostname.as_deref(), Some("host04"));
        let network = plan.network.unwrap();
        assert_eq!(network.interface, "eth0");
        assert_eq!(network.address.as_deref(), Some("10.0.0.4/24"));
        assert_eq!(network.gateway.as_deref(), Some("10.0.0.1"));
        assert_eq!(network.dns, ["10.0.0.1", "9.9.9.9"]);

        let dhcp = layout_with("/dev/sdb", "dhcp");
        let plan = super::plan(inputs(&role_ref, &spec, Some(&dhcp), &variables)).unwrap();
        assert_eq!(plan.target_disk, "/dev/sdb");
        assert_eq!(plan.network.map(|n| (n.address, n.gateway)), Some((None, None)));
    }

    #[test]
    fn a_tar_image_gets_the_profile_partitions_or_one_root() {
        let role_ref = RoleRef { name: "tree".into(), version: None };
        let tar = role(json!({"method": "Image", "image": {
            "url": "http://10.0.0.1:8080/artifacts/images/tree.tar.gz",
            "sha256": "a".repeat(64), "format": "tar", "compression": "gzip"}}));
        let variables = variables();
        let edeploy = layout(json!({"targetDisk": "$disk", "partitionTable": "msdos",
            "partitions": [{"size": "8MiB", "filesystem": "vfat", "label": "CIDATA"},
                           {"size": "rest", "filesystem": "ext4", "mountPoint": "/"}]}));
        let planned = plan(inputs(&role_ref, &tar, Some(&edeploy), &variables)).unwrap().layout.unwrap();
        assert_eq!(planned.partition_table, machinist_crds::hardware_profile::PartitionTable::Msdos);
        assert_eq!(planned.partitions, edeploy.partitions);
        let bare = layout(json!({"targetDisk": "/dev/sda"}));
        let root = plan(inputs(&role_ref, &tar, Some(&bare), &variables)).unwrap().layout.unwrap();
        assert_eq!(root.partitions.iter().map(|p| p.mount_point.as_deref()).collect::<Vec<_>>(), [Some("/")]);
        let xfs = layout(json!({"targetDisk": "/dev/sda",
            "partitions": [{"size": "rest", "filesystem": "xfs", "mountPoint": "/"}]}));
        let error = plan(inputs(&role_ref, &tar, Some(&xfs), &variables)).unwrap_err();
        assert!(error.to_string().contains("xfs file systems are not made"), "{error}");
        // A raw image carries its own partitions: none in its plan.
        assert_eq!(plan(inputs(&role_ref, &image_role(), Some(&edeploy), &variables)).unwrap().layout, None);
    }

    fn layout_with(disk: &str, mode: &str) -> InstallLayout {
        layout(json!({"targetDisk": disk, "network": {"interface": "eth1", "mode": mode}}))
    }

    #[test]
    fn what_cannot_be_planned_says_why() {
        let role_ref = RoleRef { name: "base".into(), version: None };
        let spec = image_role();
        let vars = variables();
        let err = |layout: Option<&InstallLayout>, vars: &BTreeMap<String, String>| {
            plan(inputs(&role_ref, &spec, layout, vars)).unwrap_err()
        };
        assert_eq!(err(None, &vars), PlanError::NoTargetDisk("vm".into()));
        let captured = layout(json!({"targetDisk": "$data"}));
        assert!(err(Some(&captured), &vars).to_string().contains("no variable data"));
        let mut hostile = vars.clone();
        hostile.insert("disk".into(), "../etc/passwd".into());
        let by_var = layout(json!({"targetDisk": "$disk"}));
        assert_eq!(err(Some(&by_var), &hostile), PlanError::NotADevice("/dev/../etc/passwd".into()));
        let mut no_mask = vars.clone();
        no_mask.remove("netmask");
        assert_eq!(err(Some(&layout_with("/dev/sda", "static")), &no_mask), PlanError::MissingAddress("netmask"));
        let mut holes = vars.clone();
        holes.insert("netmask".into(), "255.0.255.0".into());
        assert!(err(Some(&layout_with("/dev/sda", "static")), &holes).to_string().contains("not contiguous"));

        let pinned = RoleRef { name: "base".into(), version: Some("2.0".into()) };
        let by_disk = layout_with("/dev/sda", "dhcp");
        assert!(matches!(plan(inputs(&pinned, &spec, Some(&by_disk), &vars)), Err(PlanError::Version { .. })));
        let installer = role(json!({"method": "DebianInstaller", "debianInstaller": {
            "kernelUrl": "http://x/linux", "initrdUrl": "http://x/initrd.gz", "preseed": "d-i"}}));
        assert_eq!(
            plan(inputs(&role_ref, &installer, Some(&by_disk), &vars)),
            Err(PlanError::MethodNotBuilt("base".into()))
        );
    }

    #[test]
    fn images_come_only_from_allowed_sources() {
        let allowed = vec!["http://10.0.0.1:8080/artifacts/images".to_owned()];
        assert_eq!(check_source("http://10.0.0.1:8080/artifacts/images/base.raw", &allowed), Ok(()));
        assert!(matches!(
            check_source("http://10.0.0.1:8080/artifacts/images-evil/x.raw", &allowed),
            Err(PlanError::SourceNotAllowed { .. })
        ));
        assert!(matches!(check_source("http://elsewhere/x.raw", &allowed), Err(PlanError::SourceNotAllowed { .. })));
        assert_eq!(check_source("https://mirror.example/x.raw", &[]), Ok(()), "no list: any http(s) URL");
        for bad in
            ["ftp://x/y", "file:///etc/shadow", "http://user:pw@x/y", "http:///y", "http://x/y#z", "http://x/a b"]
        {
            assert!(matches!(check_source(bad, &[]), Err(PlanError::BadUrl(_))), "{bad}");
        }
    }
}
