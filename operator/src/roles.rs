//! Role validation, pure: every template parses (minijinja, the engine installs render with)
//! and the install settings hold together.

use machinist_crds::RoleSpec;
use machinist_crds::role::InstallMethod;

/// One problem with a Role.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RoleProblem {
    /// The field, as a path (`spec.cloudInit.userData`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The Role's problems (empty: valid).
pub fn validate(spec: &RoleSpec) -> Vec<RoleProblem> {
    let mut problems = Vec::new();
    let mut templates: Vec<(&str, &str)> = Vec::new();
    if let Some(cloud_init) = &spec.cloud_init {
        for (field, text) in [
            ("spec.cloudInit.userData", &cloud_init.user_data),
            ("spec.cloudInit.metaData", &cloud_init.meta_data),
            ("spec.cloudInit.networkConfig", &cloud_init.network_config),
        ] {
            if let Some(text) = text {
                templates.push((field, text));
            }
        }
    }
    if let Some(post) = &spec.post_install {
        templates.push(("spec.postInstall", post));
    }
    match (spec.install.method, &spec.install.image, &spec.install.debian_installer) {
        (InstallMethod::Image, Some(_), None) => {}
        (InstallMethod::DebianInstaller, None, Some(installer)) => {
            templates.push(("spec.install.debianInstaller.preseed", &installer.preseed));
        }
        (method, _, _) => problems.push(RoleProblem {
            field: "spec.install".into(),
            message: format!("method {method:?} needs exactly its own member set"),
        }),
    }
    let env = minijinja::Environment::new();
    for (field, text) in templates {
        if let Err(error) = env.template_from_str(text) {
            let line = error.line().map(|l| format!(" (line {l})")).unwrap_or_default();
            problems
                .push(RoleProblem { field: field.into(), message: format!("template does not parse{line}: {error}") });
        }
    }
    let mut seen = std::collections::HashSet::new();
    for upgrade in &spec.upgrades {
        if upgrade.from_version == spec.version {
            problems.push(RoleProblem {
                field: "spec.upgrades".into(),
                message: format!("an upgrade from {} to itself", upgrade.from_version),
            });
        }
        if !seen.insert(upgrade.from_version.as_str()) {
            problems.push(RoleProblem {
                field: "spec.upgrades".into(),
                message: format!("two upgrades from {}", upgrade.from_version),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn role(extra: serde_json::Value) -> RoleSpec {
        let mut spec = json!({
            "version": "1.0",
            "install": {"method": "Image", "image": {"url": "http://x/i.raw", "sha256": "a".repeat(64), "format": "raw"}},
        });
        if let (Some(base), Some(more)) = (spec.as_object_mut(), extra.as_object()) {
            base.extend(more.clone());
        }
        serde_json::from_value(spec).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn good_templates_pass() {
        let spec = role(
            json!({"cloudInit": {"userData": "#cloud-config\nhostname: {{ hostname }}\n"}, "postInstall": "{% if ip %}echo {{ ip }}{% endif %}"}),
        );
        assert_eq!(validate(&spec), []);
    }

    #[test]
    fn a_broken_template_names_its_field_and_line() {
        let spec = role(json!({"cloudInit": {"userData": "a\nhostname: {{ hostname \n"}}));
        let problems = validate(&spec);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "spec.cloudInit.userData");
        assert!(problems[0].message.contains("line"), "{}", problems[0].message);
    }

    #[test]
    fn inconsistent_install_settings_and_upgrades_are_problems() {
        let mut spec =
            role(json!({"upgrades": [{"fromVersion": "1.0"}, {"fromVersion": "0.9"}, {"fromVersion": "0.9"}]}));
        spec.install.method = InstallMethod::DebianInstaller;
        let fields: Vec<String> = validate(&spec).into_iter().map(|p| p.message).collect();
        assert_eq!(fields.len(), 3, "{fields:?}");
    }

    #[test]
    fn the_preseed_is_a_template_too() {
        let spec = role(json!({"install": {"method": "DebianInstaller", "debianInstaller": {
            "kernelUrl": "http://d/linux", "initrdUrl": "http://d/initrd.gz", "preseed": "d-i netcfg/hostname string {% hostname"}}}));
        assert_eq!(validate(&spec).first().map(|p| p.field.as_str()), Some("spec.install.debianInstaller.preseed"));
    }
}
