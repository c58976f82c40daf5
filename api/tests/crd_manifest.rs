//! The committed CRD must be what the Rust types generate.

#[test]
fn committed_crd_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/crd/berthlease.yaml");
    let committed = std::fs::read_to_string(path).expect("config/crd/berthlease.yaml exists");
    assert!(
        committed == berth_api::crd_yaml(),
        "config/crd/berthlease.yaml is stale: run `make manifests` and commit the result"
    );
}
