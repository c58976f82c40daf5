//! Prints the BerthLease CRD as YAML (`make manifests` writes it to config/crd/).
#![forbid(unsafe_code)]

fn main() {
    print!("{}", berth_api::crd_yaml());
}
