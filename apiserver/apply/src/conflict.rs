//! Apply conflicts and the apiserver's wording for them.
//!
//! From k8s.io/apimachinery `pkg/util/managedfields/internal/conflict.go`: one
//! `FieldManagerConflict` cause per conflicting field (`message: conflict with "mgr"`,
//! `field: .spec.replicas`), and the status message
//! `Apply failed with 1 conflict: conflict with "mgr": .spec.replicas`, or for several:
//! `Apply failed with 2 conflicts: conflicts with "a":\n- .x\n- .y\nconflicts with "b" using v1:\n- .z`.

use std::fmt;

use serde_json::{Value, json};

use crate::fieldpath::{Path, go_quote};
use crate::managers::{ManagerId, Operation};

/// A field of the applied configuration that another manager owns with another value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// Its operation.
    pub operation: Operation,
    /// Its API version (empty for `Apply` managers: not part of their identity).
    pub api_version: String,
    /// Its subresource, if any.
    pub subresource: Option<String>,
    /// The conflicting field.
    pub path: Path,
}

impl Conflict {
    pub(crate) fn new(id: &ManagerId, path: Path) -> Self {
        Conflict {
            manager: id.name.clone(),
            operation: id.operation,
            api_version: id.api_version.clone(),
            subresource: (!id.subresource.is_empty()).then(|| id.subresource.clone()),
            path,
        }
    }

    fn id(&self) -> ManagerId {
        ManagerId::new(&self.manager, self.operation, &self.api_version, self.subresource.as_deref().unwrap_or(""))
    }

    /// The manager as the apiserver prints it: `"kubectl-client-side-apply" using v1` for an
    /// `Update` manager, `"ctl"` for an applier, with ` with subresource "status"` after the
    /// name when there is one.
    pub fn manager_description(&self) -> String {
        let mut s = go_quote(&self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {}", go_quote(sub)));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    /// The field, as `.spec.replicas`.
    pub fn field(&self) -> String {
        self.path.to_string()
    }

    /// The `FieldManagerConflict` cause: `{"type", "message", "field"}`.
    pub fn cause(&self) -> Value {
        json!({
            "type": "FieldManagerConflict",
            "message": format!("conflict with {}", self.manager_description()),
            "field": self.field(),
        })
    }
}

/// The conflicts of a rejected apply, ordered by manager (identifier), then as the
/// apiserver iterates a field set (at each level the fields that end there first, then those
/// below, each sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    pub(crate) fn sorted(mut conflicts: Vec<Conflict>) -> Self {
        // Stable: each manager's fields stay in field-set iteration order.
        conflicts.sort_by_key(|c| c.id().identifier());
        Conflicts(conflicts)
    }

    /// The status message, exactly as the apiserver words it.
    pub fn message(&self) -> String {
        match self.0.as_slice() {
            [one] => {
                format!("Apply failed with 1 conflict: conflict with {}: {}", one.manager_description(), one.field())
            }
            all => {
                let mut lines: Vec<String> = Vec::new();
                let mut current: Option<String> = None;
                for c in all {
                    let id = c.id().identifier();
                    if current.as_ref() != Some(&id) {
                        lines.push(format!("conflicts with {}:", c.manager_description()));
                        current = Some(id);
                    }
                    lines.push(format!("- {}", c.field()));
                }
                format!("Apply failed with {} conflicts: {}", all.len(), lines.join("\n"))
            }
        }
    }

    /// The `metav1.Status` the apiserver answers with: HTTP 409, reason `Conflict`, one
    /// `FieldManagerConflict` cause per field.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message(),
            "reason": "Conflict",
            "details": {"causes": self.0.iter().map(Conflict::cause).collect::<Vec<_>>()},
            "code": 409,
        })
    }
}

impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}
