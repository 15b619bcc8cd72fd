//! Server-side apply bodies built from the kinds' own types, so that the API version and kind
//! are spelled once (by [`kube::Resource`]) and not in every writer.

use kube::Resource;
use serde::Serialize;
use serde_json::{Value, json};

/// The body of a server-side apply of `status` — a kind's status type, or the part of it a
/// writer owns — to an object of kind `K`, for `Api::patch_status` with `Patch::Apply`.
///
/// ```
/// use machinist_crds::{Machine, machine::MachineStatus};
/// let body = machinist_crds::apply::status::<Machine>(&MachineStatus::default())?;
/// assert_eq!(body["apiVersion"], "machinist.dev/v1alpha1");
/// assert_eq!(body["kind"], "Machine");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn status<K: Resource<DynamicType = ()>>(status: &impl Serialize) -> Result<Value, serde_json::Error> {
    Ok(json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": serde_json::to_value(status)?}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cmdb, Role};

    #[test]
    fn bodies_name_the_kind_and_carry_the_status_as_given() -> Result<(), serde_json::Error> {
        let body = status::<Cmdb>(&json!({"free": 3}))?;
        assert_eq!(body, json!({"apiVersion": "machinist.dev/v1alpha1", "kind": "Cmdb", "status": {"free": 3}}));
        assert_eq!(status::<Role>(&json!({}))?["kind"], "Role");
        Ok(())
    }
}
