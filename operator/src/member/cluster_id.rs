//! This cluster's id in member mode: `--cluster-id`, or the SIG-Multicluster
//! About API's `ClusterProperty` named `cluster.clusterset.k8s.io` (KEP-2149).

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use crate::error::{Error, Result};

/// The `ClusterProperty` that names this cluster within its ClusterSet.
pub const CLUSTER_PROPERTY: &str = "cluster.clusterset.k8s.io";

/// Whether `id` is an RFC 1123 label: at most 63 lowercase alphanumerics or
/// '-', starting and ending with an alphanumeric.
pub fn is_rfc1123_label(id: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = id.as_bytes();
    matches!((bytes.first(), bytes.last()), (Some(&first), Some(&last)) if alnum(first) && alnum(last))
        && bytes.len() <= 63
        && bytes.iter().all(|&c| alnum(c) || c == b'-')
}

/// The cluster id: `flag` when given, else the About API's value.
///
/// # Errors
/// [`Error::ClusterId`] when neither gives one (the About API's CRD is not
/// installed, or has no `cluster.clusterset.k8s.io`), when the About API
/// cannot be read, or when the id is not an RFC 1123 label.
pub async fn resolve(client: &Client, flag: Option<&str>) -> Result<String> {
    let (id, source) = match flag {
        Some(id) => (id.to_owned(), "--cluster-id"),
        None => (from_about_api(client).await?, "ClusterProperty cluster.clusterset.k8s.io"),
    };
    if !is_rfc1123_label(&id) {
        return Err(Error::ClusterId(format!(
            "{source} is {id:?}: a cluster id must be an RFC 1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)"
        )));
    }
    Ok(id)
}

async fn from_about_api(client: &Client) -> Result<String> {
    let gvk = GroupVersionKind::gvk("about.k8s.io", "v1alpha1", "ClusterProperty");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "clusterproperties");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let missing = || {
        Error::ClusterId(
            "member mode needs a cluster id: pass --cluster-id, or install the About API (about.k8s.io ClusterProperty) with a cluster.clusterset.k8s.io property".to_owned(),
        )
    };
    match api.get_opt(CLUSTER_PROPERTY).await {
        Ok(Some(property)) => property.data["spec"]["value"].as_str().map(str::to_owned).ok_or_else(missing),
        Ok(None) => Err(missing()),
        // The CRD is not installed: the resource itself is unknown.
        Err(kube::Error::Api(status)) if status.code == 404 => Err(missing()),
        Err(source) => Err(Error::ClusterId(format!("reading ClusterProperty {CLUSTER_PROPERTY}: {source}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_rfc1123_labels() {
        for good in ["east", "eu-west-1", "a", "0", &"x".repeat(63)] {
            assert!(is_rfc1123_label(good), "{good}");
        }
        for bad in ["", "East", "-east", "east-", "east.1", "east_1", &"x".repeat(64), "team/east"] {
            assert!(!is_rfc1123_label(bad), "{bad}");
        }
    }
}
