//! The NoCloud seed of a machine being installed: the Role's `cloudInit` templates (minijinja)
//! rendered over the machine's variables, the defaults of
//! [`machinist_agent_protocol::seed`] where the Role has none, and machinist's own
//! `vendor-data` (hostname, phone-home). Pure.
//!
//! Templates come from people who can write Roles, and render in the boot services: each render
//! is bounded — [`FUEL`] instructions, [`OUTPUT_LIMIT`] bytes of output (minijinja itself caps
//! a string repetition at 100 MB and a `range` at 100,000 items), undefined variables are
//! errors (a typo fails the install, saying which), nothing is auto-escaped (this is YAML, not
//! HTML).
//!
//! Variables: everything in `status.variables` (the profile's captures such as `disk`, `eth`,
//! `mac`, and the CMDB entry's `ip`, `hostname`, `netmask`, `gateway`, `dns_servers`,
//! `domain`…), plus `machine` (its name), `namespace`, `role`, `role_version` and `attempt`.

use std::collections::BTreeMap;

use machinist_agent_protocol::seed::{self, NoCloud};
use machinist_crds::machine::InstallPlan;
use machinist_crds::role::CloudInit;
use minijinja::{Environment, UndefinedBehavior, Value};

/// Instructions a template may run.
pub const FUEL: u64 = 100_000;
/// Bytes one rendered file may have.
pub const OUTPUT_LIMIT: usize = 1024 * 1024;

/// A template that did not render.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Role {role}'s {field} does not render: {reason}")]
pub struct RenderError {
    /// The Role.
    pub role: String,
    /// The field (`spec.cloudInit.userData`).
    pub field: &'static str,
    /// Why (minijinja's error, with the line; or the output limit).
    pub reason: String,
}

/// What a seed is made from.
#[derive(Clone, Copy, Debug)]
pub struct SeedInputs<'a> {
    /// The Machine's name.
    pub machine: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The install attempt.
    pub attempt: i32,
    /// The plan.
    pub plan: &'a InstallPlan,
    /// `status.variables`.
    pub variables: &'a BTreeMap<String, String>,
    /// The Role's templates, if it has any.
    pub templates: Option<&'a CloudInit>,
    /// The phone-home URL with its token.
    pub phone_home_url: &'a str,
}

/// The seed, or the first template that did not render.
pub fn render(inputs: SeedInputs<'_>) -> Result<NoCloud, RenderError> {
    let context = context(&inputs);
    let role = inputs.plan.role.name.as_str();
    let templates = inputs.templates.cloned().unwrap_or_default();
    let one = |field: &'static str, template: &Option<String>, default: String| -> Result<String, RenderError> {
        match template {
            Some(text) => {
                render_one(text, &context).map_err(|reason| RenderError { role: role.to_owned(), field, reason })
            }
            None => Ok(default),
        }
    };
    let plan = inputs.plan;
    let meta_data = one(
        "spec.cloudInit.metaData",
        &templates.meta_data,
        seed::default_meta_data(inputs.machine, inputs.attempt, plan),
    )?;
    let user_data = one("spec.cloudInit.userData", &templates.user_data, seed::DEFAULT_USER_DATA.to_owned())?;
    let network_config = match (&templates.network_config, &plan.network) {
        (Some(_), _) => Some(one("spec.cloudInit.networkConfig", &templates.network_config, String::new())?),
        (None, Some(network)) => Some(seed::network_config(network)),
        (None, None) => None,
    };
    Ok(NoCloud {
        meta_data,
        user_data,
        vendor_data: seed::vendor_data(inputs.machine, plan, inputs.phone_home_url),
        network_config,
    })
}

fn context(inputs: &SeedInputs<'_>) -> BTreeMap<String, Value> {
    let mut context: BTreeMap<String, Value> =
        inputs.variables.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
    context.insert("machine".into(), Value::from(inputs.machine));
    context.insert("namespace".into(), Value::from(inputs.namespace));
    context.insert("role".into(), Value::from(inputs.plan.role.name.as_str()));
    context.insert("role_version".into(), Value::from(inputs.plan.role.version.clone().unwrap_or_default()));
    context.insert("attempt".into(), Value::from(inputs.attempt));
    context
}

/// A writer that refuses to grow past [`OUTPUT_LIMIT`].
struct Bounded {
    bytes: Vec<u8>,
    over: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > OUTPUT_LIMIT {
            self.over = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn render_one(text: &str, context: &BTreeMap<String, Value>) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let template = env.template_from_str(text).map_err(describe)?;
    let mut out = Bounded { bytes: Vec::new(), over: false };
    let written = template.render_captured_to(context, &mut out).map(drop);
    if out.over {
        return Err(format!("its output is over {OUTPUT_LIMIT} bytes"));
    }
    written.map_err(describe)?;
    String::from_utf8(out.bytes).map_err(|e| e.to_string())
}

fn describe(error: minijinja::Error) -> String {
    let line = error.line().map(|l| format!(" (line {l})")).unwrap_or_default();
    let detail = error.detail().map(|d| format!(": {d}")).unwrap_or_default();
    format!("{}{detail}{line}", error.kind())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn plan() -> InstallPlan {
        serde_json::from_value(json!({
            "role": {"name": "web", "version": "2"},
            "image": {"url": "http://x/i.raw", "sha256": "a".repeat(64), "format": "raw"},
            "targetDisk": "/dev/vda",
            "hostname": "host03",
            "network": {"interface": "eth0", "mode": "dhcp"},
        }))
        .unwrap()
    }

    fn variables() -> BTreeMap<String, String> {
        [("hostname", "host03"), ("ip", "10.0.0.3"), ("domain", "lab.example")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn render_with(templates: serde_json::Value) -> Result<NoCloud, RenderError> {
        let templates: CloudInit = serde_json::from_value(templates).unwrap();
        let plan = plan();
        let variables = variables();
        render(SeedInputs {
            machine: "vm-1",
            namespace: "edeploy",
            attempt: 1,
            plan: &plan,
            variables: &variables,
            templates: Some(&templates),
            phone_home_url: "http://boot/machines/vm-1/phone-home?token=t",
        })
    }

    #[test]
    fn templates_render_over_the_machine_and_defaults_fill_the_rest() {
        let seed = render_with(json!({"userData": "#cloud-config\nfqdn: {{ hostname }}.{{ domain }}\n# {{ role }} {{ role_version }} {{ machine }} {{ attempt }}\n"})).unwrap();
        assert_eq!(seed.user_data, "#cloud-config\nfqdn: host03.lab.example\n# web 2 vm-1 1\n");
        assert_eq!(seed.meta_data, "instance-id: \"vm-1-1\"\nlocal-hostname: \"host03\"\n", "the default");
        assert_eq!(seed.network_config.as_deref(), Some("version: 2\nethernets:\n  \"eth0\":\n    dhcp4: true\n"));
        assert!(seed.vendor_data.contains("phone-home?token=t"), "{}", seed.vendor_data);
        let own = render_with(json!({"networkConfig": "version: 2\nethernets: {}\n"})).unwrap();
        assert_eq!(own.network_config.as_deref(), Some("version: 2\nethernets: {}\n"));
        // No HTML escaping in YAML.
        let quoted = render_with(json!({"userData": "{{ '<a & b>' }}"})).unwrap();
        assert_eq!(quoted.user_data, "<a & b>");
    }

    #[test]
    fn hostile_or_broken_templates_fail_saying_why() {
        let error = render_with(json!({"userData": "{{ hostnme }}"})).unwrap_err();
        assert_eq!((error.role.as_str(), error.field), ("web", "spec.cloudInit.userData"));
        assert!(error.reason.contains("undefined"), "{error}");
        let looping = render_with(
            json!({"metaData": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"}),
        )
        .unwrap_err();
        assert!(looping.reason.contains("fuel"), "{looping}");
        let huge = render_with(json!({"userData": "{{ 'x' * 2000000 }}"})).unwrap_err();
        assert!(huge.reason.contains("output is over"), "{huge}");
        let many =
            render_with(json!({"userData": "{% for i in range(3000) %}{{ 'y' * 1000 }}{% endfor %}"})).unwrap_err();
        assert!(many.reason.contains("output is over") || many.reason.contains("fuel"), "{many}");
        let broken = render_with(json!({"networkConfig": "{% if %}"})).unwrap_err();
        assert_eq!(broken.field, "spec.cloudInit.networkConfig");
        assert!(broken.reason.contains("line 1"), "{broken}");
    }
}
