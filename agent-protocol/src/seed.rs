//! The cloud-init NoCloud seed of an installed system, from its install plan: `meta-data`
//! (instance id, hostname), `user-data` (hostname and cloud-init's `phone_home` to the boot
//! services, the token in the URL since `phone_home` sends no headers) and, when the plan has a
//! network, `network-config` (version 2). Pure; the agent writes these files into the image's
//! `CIDATA` partition.
//!
//! Every value is written as a double-quoted scalar (JSON's escaping, which YAML reads the same
//! way), so a hostile hostname cannot add keys.

use machinist_crds::hardware_profile::AddressMode;

use crate::install::PlanResponse;

/// The three NoCloud files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoCloud {
    /// `meta-data`.
    pub meta_data: String,
    /// `user-data` (`#cloud-config`).
    pub user_data: String,
    /// `network-config`, when the plan configures the network.
    pub network_config: Option<String>,
}

fn quoted(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The phone-home URL with its token as a query parameter.
pub fn phone_home_url(response: &PlanResponse) -> String {
    format!("{}?token={}", response.phone_home.url, response.phone_home.token)
}

/// The seed of `machine` for `response`.
pub fn nocloud(machine: &str, response: &PlanResponse) -> NoCloud {
    let plan = &response.plan;
    let hostname = plan.hostname.clone().unwrap_or_else(|| machine.to_owned());
    let meta_data = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        quoted(&format!("{machine}-{}", response.attempt)),
        quoted(&hostname)
    );
    let user_data = format!(
        "#cloud-config\nhostname: {}\nphone_home:\n  url: {}\n  post: [instance_id, hostname]\n  tries: 10\n",
        quoted(&hostname),
        quoted(&phone_home_url(response)),
    );
    let network_config = plan.network.as_ref().map(|network| {
        let mut text = format!("version: 2\nethernets:\n  {}:\n", quoted(&network.interface));
        match network.mode {
            AddressMode::Dhcp => text.push_str("    dhcp4: true\n"),
            AddressMode::Static => {
                text.push_str("    dhcp4: false\n");
                if let Some(address) = &network.address {
                    text.push_str(&format!("    addresses: [{}]\n", quoted(address)));
                }
                if let Some(gateway) = &network.gateway {
                    text.push_str(&format!(
                        "    routes:\n      - to: \"0.0.0.0/0\"\n        via: {}\n",
                        quoted(gateway)
                    ));
                }
            }
        }
        if !network.dns.is_empty() {
            let list: Vec<String> = network.dns.iter().map(|d| quoted(d)).collect();
            text.push_str(&format!("    nameservers:\n      addresses: [{}]\n", list.join(", ")));
        }
        text
    });
    NoCloud { meta_data, user_data, network_config }
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
        assert!(seed.user_data.starts_with("#cloud-config\n"), "{}", seed.user_data);
        assert!(
            seed.user_data.contains("url: \"http://10.0.0.1:8080/machines/vm-1/phone-home?token=abc\""),
            "{}",
            seed.user_data
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
        assert!(seed.user_data.contains(r#"hostname: "x\"\nruncmd: [reboot]""#), "{}", seed.user_data);
        assert!(!seed.user_data.lines().any(|l| l.starts_with("runcmd")), "{}", seed.user_data);
    }
}
