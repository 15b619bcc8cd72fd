//! The Hypervisor controller: probes each libvirt host every `probeIntervalSeconds` (and when
//! its spec changes) and records what it found — capacity, pools, accelerator, reachability —
//! in its status, through the Hypervisor ledger that also records the VMs placed there.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use machinist_crds::Hypervisor;
use machinist_crds::machine::PowerState;

use super::{Context, Error, error_policy, succeeded};
use crate::vm::host_ledger::HostRequest;

const CONTROLLER: &str = "hypervisor";

/// Longest a probe (connecting included) may take before the host counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Reconciles one Hypervisor: a probe, its outcome written to the status.
pub async fn reconcile(hypervisor: Arc<Hypervisor>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let namespace = hypervisor.namespace().unwrap_or_default();
    let name = hypervisor.name_any();
    let request = match ctx.hosts.call(&hypervisor.spec.uri, PROBE_TIMEOUT, |host| host.probe()).await {
        Ok(probed) => HostRequest::Probed(probed.probe),
        Err(error) => {
            tracing::debug!(hypervisor = %name, %error, "probe failed");
            HostRequest::Unreachable(error.to_string())
        }
    };
    let reachable = matches!(request, HostRequest::Probed(_));
    ctx.hypervisor_ledger.submit(&namespace, &name, request).await?;
    wake_vms(&name, reachable, &ctx);
    succeeded(CONTROLLER, hypervisor.as_ref(), &ctx);
    let every = u64::try_from(hypervisor.spec.probe_interval_seconds).unwrap_or(30).max(1);
    Ok(Action::requeue(Duration::from_secs(every)))
}

/// Wakes the VMs this probe concerns: when the host answered, those waiting for a host (not
/// placed yet, or placed here and last seen unreachable); when it did not, those placed here
/// that do not say so yet.
fn wake_vms(hypervisor: &str, reachable: bool, ctx: &Context) {
    for vm in ctx.vms.state() {
        let provider = vm.status.as_ref().and_then(|s| s.provider.as_ref());
        let unknown = provider.and_then(|p| p.power_state) == Some(PowerState::Unknown);
        let concerned = match provider.and_then(|p| p.hypervisor.as_deref()) {
            None => reachable,
            Some(host) => host == hypervisor && unknown == reachable,
        };
        if concerned {
            let _ = ctx.vm_wake.send(ObjectRef::from_obj(vm.as_ref())); // the VM controller stopped
        }
    }
}

/// The Hypervisor controller's error policy.
pub fn on_error(hypervisor: Arc<Hypervisor>, error: &Error, ctx: Arc<Context>) -> Action {
    error_policy(CONTROLLER, hypervisor.as_ref(), error, &ctx)
}
