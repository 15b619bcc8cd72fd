//! The Role controller: `Valid` says whether the templates parse and the install settings
//! hold together ([`crate::roles::validate`]).

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use machinist_crds::machine::MachinePhase;
use machinist_crds::{Role, RoleStatus};

use super::{Context, Error, apply_status, error_policy, now, succeeded};
use crate::conditions::{self, Desired};
use crate::lifecycle::Transition;
use crate::roles;

/// Reconciles one Role.
pub async fn reconcile(role: Arc<Role>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("role");
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
        // Only the fields this controller owns: `installed` is not its to write.
        let owned = RoleStatus {
            conditions: status.conditions,
            observed_generation: status.observed_generation,
            ..RoleStatus::default()
        };
        apply_status(&ctx, role.as_ref(), &owned).await?;
    }
    wake_machines_of(&role, &ctx);
    if became_invalid {
        ctx.publish(role.as_ref(), &[Transition { reason: "InvalidRole".into(), message, warning: true }], "Validate");
    }
    succeeded("role", role.as_ref(), &ctx);
    Ok(Action::await_change())
}

/// Wakes the Machines that wait for this Role (allocated, or failed installing), so that a Role
/// created or fixed after them starts their install.
fn wake_machines_of(role: &Role, ctx: &Context) {
    let namespace = role.namespace();
    let name = role.name_any();
    for machine in ctx.machines.state() {
        let status = machine.status.as_ref();
        let waits = matches!(status.and_then(|s| s.phase), Some(MachinePhase::Allocated | MachinePhase::Failed));
        let names_it =
            machine.spec.role.as_ref().or(status.and_then(|s| s.role.as_ref())).is_some_and(|r| r.name == name);
        if waits && names_it && machine.namespace() == namespace {
            let _ = ctx.wake.send(ObjectRef::from_obj(machine.as_ref())); // the Machine controller stopped
        }
    }
}

/// The Role controller's error policy.
pub fn on_error(role: Arc<Role>, error: &Error, ctx: Arc<Context>) -> Action {
    error_policy("role", role.as_ref(), error, &ctx)
}
