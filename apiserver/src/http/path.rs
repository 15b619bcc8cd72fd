//! What a request path names: `/api/v1/namespaces/ns/secrets/s1`, `/apis/g/v/widgets/w/status`.

/// A request aimed at a resource, parsed from its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// API group, empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    /// Object name, if the path names one.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `finalize`), if any.
    pub subresource: Option<String>,
}

/// A path the server understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/api`: core API versions.
    CoreVersions,
    /// `/apis`: API groups.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`: resources of a group version.
    Resources {
        /// Group.
        group: String,
        /// Version.
        version: String,
    },
    /// Anything below a group version.
    Resource(Target),
}

/// Parses a path. `is_namespaced(group, version, resource)` tells whether a segment after
/// `namespaces/{ns}/` names a namespaced resource (else it is a subresource of the namespace).
pub fn parse(path: &str, is_namespaced: impl Fn(&str, &str, &str) -> bool) -> Option<Route> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    if segments.iter().any(|s| s.is_empty() || *s == "." || *s == "..") && segments.len() > 1 {
        return None;
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return Some(Route::CoreVersions),
        ["apis"] => return Some(Route::Groups),
        ["apis", group] => return Some(Route::Group((*group).to_owned())),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let target = |namespace: Option<&str>, resource: &str, name: Option<&str>, sub: Option<&str>| {
        Some(Route::Resource(Target {
            group: group.to_owned(),
            version: version.to_owned(),
            namespace: namespace.map(str::to_owned),
            resource: resource.to_owned(),
            name: name.map(str::to_owned),
            subresource: sub.map(str::to_owned),
        }))
    };
    match rest {
        [] => Some(Route::Resources { group: group.to_owned(), version: version.to_owned() }),
        ["namespaces", ns, resource, tail @ ..] if is_namespaced(group, version, resource) => match tail {
            [] => target(Some(ns), resource, None, None),
            [name] => target(Some(ns), resource, Some(name), None),
            [name, sub] => target(Some(ns), resource, Some(name), Some(sub)),
            _ => None,
        },
        [resource] => target(None, resource, None, None),
        [resource, name] => target(None, resource, Some(name), None),
        [resource, name, sub] => target(None, resource, Some(name), Some(sub)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaced(_: &str, _: &str, resource: &str) -> bool {
        matches!(resource, "secrets" | "widgets")
    }

    fn target(path: &str) -> Target {
        match parse(path, namespaced) {
            Some(Route::Resource(target)) => target,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_core_and_group_paths() {
        let t = target("/api/v1/namespaces/ns1/secrets/s1");
        assert_eq!(
            (t.group.as_str(), t.namespace.as_deref(), t.resource.as_str(), t.name.as_deref()),
            ("", Some("ns1"), "secrets", Some("s1"))
        );
        let t = target("/apis/example.com/v1alpha1/namespaces/ns1/widgets/w1/status");
        assert_eq!(t.subresource.as_deref(), Some("status"));
        assert_eq!(t.group, "example.com");
        let t = target("/apis/example.com/v1alpha1/widgets");
        assert_eq!((t.namespace, t.name), (None, None));
    }

    #[test]
    fn namespace_objects_and_their_subresources() {
        let t = target("/api/v1/namespaces/ns1");
        assert_eq!((t.resource.as_str(), t.name.as_deref()), ("namespaces", Some("ns1")));
        let t = target("/api/v1/namespaces/ns1/finalize");
        assert_eq!(
            (t.resource.as_str(), t.name.as_deref(), t.subresource.as_deref()),
            ("namespaces", Some("ns1"), Some("finalize"))
        );
    }

    #[test]
    fn discovery_and_nonsense() {
        assert_eq!(parse("/api", namespaced), Some(Route::CoreVersions));
        assert_eq!(parse("/apis", namespaced), Some(Route::Groups));
        assert_eq!(parse("/apis/example.com", namespaced), Some(Route::Group("example.com".into())));
        assert_eq!(parse("/api/v1", namespaced), Some(Route::Resources { group: String::new(), version: "v1".into() }));
        assert_eq!(parse("/metrics/x", namespaced), None);
        assert_eq!(parse("/api/v1/namespaces/a/secrets/b/c/d", namespaced), None);
        assert_eq!(parse("/api/v1/namespaces/../secrets", namespaced), None);
    }
}
