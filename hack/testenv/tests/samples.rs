//! The examples in `config/samples/` are accepted by a real kube-apiserver as
//! they stand (a server-side dry run, in a test namespace): a user can apply
//! them after filling in their own values.

use std::io::Write;
use std::process::Stdio;

use berth_testenv::{TestNamespace, kubectl, repo_root};

#[tokio::test]
async fn every_sample_passes_a_server_side_dry_run() {
    let ns = TestNamespace::new("samples").await;
    let samples = repo_root().join("config/samples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&samples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        // Each sample names its own namespace; the dry run goes to the test's.
        let text = in_namespace(&std::fs::read_to_string(&path).unwrap(), &ns.name);
        let mut apply = kubectl()
            .args(["apply", "--dry-run=server", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        apply.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = apply.wait_with_output().unwrap();
        assert!(out.status.success(), "{} was refused: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} samples found in {}", samples.display());
}

/// `text` with every `namespace: X` (block or flow style) set to `namespace`.
fn in_namespace(text: &str, namespace: &str) -> String {
    text.lines()
        .map(|line| match line.find("namespace: ") {
            Some(at) => {
                let rest = &line[at + "namespace: ".len()..];
                let end = rest.find([',', '}', ' ']).unwrap_or(rest.len());
                format!("{}namespace: {namespace}{}", &line[..at], &rest[end..])
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
