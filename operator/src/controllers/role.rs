//! The Role controller: `Valid` says whether the templates parse and the install settings
//! hold together ([`crate::roles::validate`]).

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use machinist_crds::Role;
use serde_json::json;

use super::{Context, Error, FIELD_MANAGER, error_policy, now, succeeded};
use crate::conditions::{self, Desired};
use crate::lifecycle::Transition;
use crate::roles;

/// Reconciles one Role.
pub async fn reconcile(role: Arc<Role>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("role");
    let name = role.name_any();
    let problems = roles::validate(&role.spec);
    let prior = role.status.clone().unwrap_or_default();
    let mut status = prior.clone();
    status.observed_generation = role.metadata.generation;
    let desired = if problems.is_empty() {
        Desired::yes("Valid", "Valid", "templates parse; install settings are consistent")
    } else {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Desired::no("Valid", "InvalidRole", list.join("; "))
    };
    let became_invalid = !problems.is_empty()
        && conditions::find(&prior.conditions, "Valid").map(|c| c.status.as_str()) != Some("False");
    let message = desired.message.clone();
    conditions::set(&mut status.conditions, desired, role.metadata.generation, &now());
    if status != prior {
        let api: Api<Role> = Api::namespaced(ctx.client.clone(), &role.namespace().unwrap_or_default());
        let patch = json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "Role", "status": {
            "conditions": status.conditions, "observedGeneration": status.observed_generation,
        }});
        api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch))
            .await
            .map_err(|source| Error::Api { action: "write the status of", kind: "Role", name: name.clone(), source })?;
    }
    if became_invalid {
        ctx.publish(role.as_ref(), &[Transition { reason: "InvalidRole".into(), message, warning: true }], "Validate");
    }
    succeeded("role", role.as_ref(), &ctx);
    Ok(Action::await_change())
}

/// The Role controller's error policy.
pub fn on_error(role: Arc<Role>, error: &Error, ctx: Arc<Context>) -> Action {
    error_policy("role", role.as_ref(), error, &ctx)
}
