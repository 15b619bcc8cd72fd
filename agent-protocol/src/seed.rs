//! The cloud-init NoCloud seed of an installed system: `meta-data`, `user-data`, `vendor-data`
//! and `network-config`. The boot services send it with the install plan ([`NoCloud`] in
//! [`PlanResponse`]): the Role's templates rendered where it has them, else the defaults made
//! here from the plan — `meta-data` with the instance id and hostname, an empty `#cloud-config`
//! `user-data`, `network-config` (version 2) when the plan has a network. `vendor-data` is
//! always machinist's: the hostname and cloud-init's `phone_home` to the boot services (the
//! token in the URL, since `phone_home` sends no headers), so a Role's own `user-data` never has
//! to carry it (cloud-init merges the two). The agent writes the files into the image's
//! `CIDATA` partition. Pure.
//!
//! Every value the defaults write is a double-quoted scalar (JSON's escaping, which YAML reads
//! the same way), so a hostile hostname cannot add keys.

use machinist_crds::hardware_profile::AddressMode;
use machinist_crds::machine::{InstallPlan, PlannedNetwork};
use serde::{Deserialize, Serialize};

use crate::install::PlanResponse;

/// The NoCloud files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NoCloud {
    /// `meta-data`.
    pub meta_data: String,
    /// `user-data`.
    pub user_data: String,
    /// `vendor-data`: machinist's hostname and phone-home.
    pub vendor_data: String,
    /// `network-config`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_config: Option<String>,
}

fn quoted(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The phone-home URL with its token as a query parameter.
pub fn phone_home_url(url: &str, token: &str) -> String {
    format!("{url}?token={token}")
}

/// The hostname the seed gives: the plan's (the CMDB entry's), else the machine's name.
pub fn hostname(machine: &str, plan: &InstallPlan) -> String {
    plan.hostname.clone().unwrap_or_else(|| machine.to_owned())
}

/// The default `meta-data`: instance id `<machine>-<attempt>` (a reinstall is a new instance
/// to cloud-init) and the hostname.
pub fn default_meta_data(machine: &str, attempt: i32, plan: &InstallPlan) -> String {
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        quoted(&format!("{machine}-{attempt}")),
        quoted(&hostname(machine, plan))
    )
}

/// The default `user-data`: nothing to do.
pub const DEFAULT_USER_DATA: &str = "#cloud-config\n{}\n";

/// machinist's `vendor-data`: the hostname and the phone-home to `phone_home_url`.
pub fn vendor_data(machine: &str, plan: &InstallPlan, phone_home_url: &str) -> String {
    format!(
        "#cloud-config\nhostname: {}\nphone_home:\n  url: {}\n  post: [instance_id, hostname]\n  tries: 10\n",
        quoted(&hostname(machine, plan)),
        quoted(phone_home_url),
    )
}

/// The seed of `machine` for `response` from the defaults alone (no Role templates).
pub fn nocloud(machine: &str, response: &PlanResponse) -> NoCloud {
    let plan = &response.plan;
    NoCloud {
        meta_data: default_meta_data(machine, response.attempt, plan),
        user_data: DEFAULT_USER_DATA.to_owned(),
        vendor_data: vendor_data(machine, plan, &phone_home_url(&response.phone_home.url, &response.phone_home.token)),
        network_config: plan.network.as_ref().map(network_config),
    }
}

/// The default `network-config` (version 2) of a planned network.
pub fn network_config(network: &PlannedNetwork) -> String {
    let mut text = format!("version: 2\nethernets:\n  {}:\n", quoted(&network.interface));
    match network.mode {
        AddressMode::Dhcp => text.push_str("    dhcp4: true\n"),
        AddressMode::Static => {
            text.push_str("    dhcp4: false\n");
            if let Some(address) = &network.address {
                text.push_str(&format!("    addresses: [{}]\n", quoted(address)));
            }
            if let Some(gateway) = &network.gateway {
                text.push_str(&format!("    routes:\n      - to: \"0.0.0.0/0\"\n        via: {}\n", quoted(gateway)));
            }
        }
    }
    if !network.dns.is_empty() {
        let list: Vec<String> = network.dns.iter().map(|d| quoted(d)).collect();
        text.push_str(&format!("    nameservers:\n      addresses: [{}]\n", list.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn response(plan: serde_json::Value) -> PlanResponse {
        serde_json::from_value(json!({
            "attempt": 2,
            "plan": plan,
            "phoneHome": {"url": "http://10.0.0.1:8080/machines/vm-1/phone-home", "token": "abc"},
            "seed": {"metaData": "", "userData": "", "vendorData": ""},
        }))
        .unwrap()
    }

    fn plan(extra: serde_json::Value) -> serde_json::Value {
        let mut plan = json!({
            "role": {"name": "base"},
            "image": {"url": "http://x/i.raw", "sha256": "a".repeat(64), "format": "raw"},
            "targetDisk": "/dev/vda",
        });
        plan.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        plan
    }

    #[test]
    fn the_seed_names_the_machine_and_phones_home() {
        let seed = nocloud("vm-1", &response(plan(json!({"hostname": "host03"}))));
        assert_eq!(seed.meta_data, "instance-id: \"vm-1-2\"\nlocal-hostname: \"host03\"\n");
        assert_eq!(seed.user_data, "#cloud-config\n{}\n", "an empty mapping: cloud-init wants a dict");
        assert!(seed.vendor_data.starts_with("#cloud-config\n"), "{}", seed.vendor_data);
        assert!(
            seed.vendor_data.contains("url: \"http://10.0.0.1:8080/machines/vm-1/phone-home?token=abc\""),
            "{}",
            seed.vendor_data
        );
        assert_eq!(seed.network_config, None);
        let unnamed = nocloud("vm-1", &response(plan(json!({}))));
        assert!(unnamed.meta_data.contains("local-hostname: \"vm-1\""));
    }

    #[test]
    fn static_and_dhcp_networks_are_version_2() {
        let network = json!({"network": {"interface": "eth0", "mode": "static", "address": "10.0.0.4/24",
            "gateway": "10.0.0.1", "dns": ["10.0.0.1", "9.9.9.9"]}});
        let seed = nocloud("vm-1", &response(plan(network)));
        assert_eq!(
            seed.network_config.unwrap(),
            "version: 2\nethernets:\n  \"eth0\":\n    dhcp4: false\n    addresses: [\"10.0.0.4/24\"]\n    routes:\n      - to: \"0.0.0.0/0\"\n        via: \"10.0.0.1\"\n    nameservers:\n      addresses: [\"10.0.0.1\", \"9.9.9.9\"]\n"
        );
        let dhcp = nocloud("vm-1", &response(plan(json!({"network": {"interface": "eth1", "mode": "dhcp"}}))));
        assert_eq!(dhcp.network_config.unwrap(), "version: 2\nethernets:\n  \"eth1\":\n    dhcp4: true\n");
    }

    #[test]
    fn a_hostile_hostname_stays_one_value() {
        let seed = nocloud("vm-1", &response(plan(json!({"hostname": "x\"\nruncmd: [reboot]"}))));
        assert!(seed.vendor_data.contains(r#"hostname: "x\"\nruncmd: [reboot]""#), "{}", seed.vendor_data);
        assert!(!seed.vendor_data.lines().any(|l| l.starts_with("runcmd")), "{}", seed.vendor_data);
    }
}
