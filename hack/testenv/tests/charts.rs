//! The Helm charts: lint, template, and a server-side dry-run of what they
//! render against the real control plane.

use std::process::{Command, Output};

use berth_testenv::{TestNamespace, helm, kubectl, repo_root};

fn chart(name: &str) -> String {
    repo_root().join("deploy/helm").join(name).to_str().unwrap().to_owned()
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Value sets every chart must accept: the defaults, a non-default one, and
/// for the operator member mode (with a cluster id and a CA, and with neither).
fn value_sets(chart: &str, namespace: &str) -> Vec<Vec<String>> {
    let mut custom = vec![
        format!("--set=watchNamespaces={{{namespace}}}"),
        "--set=replicaCount=3".into(),
        "--set=logging.format=text".into(),
        "--set=logging.level=debug".into(),
        "--set=podDisruptionBudget.minAvailable=2".into(),
        "--set=image.tag=v9.9.9".into(),
    ];
    match chart {
        "berth-operator" => custom.extend([
            "--set=crd.install=true".into(),
            "--set=leaderElection.enabled=false".into(),
            // Member mode signing in with a projected service-account token instead of a key Secret.
            "--set=member.enabled=true".into(),
            "--set=member.apiServer=https://berth.example.com:8443".into(),
            "--set=member.clusterId=east".into(),
            "--set=berthApiToken.projected=true".into(),
        ]),
        _ => custom.extend([
            "--set=service.port=9443".into(),
            "--set=apiKeys.enabled=false".into(),
            // JWT issuers and TokenReview instead of keys: a ConfigMap and the auth-delegator binding.
            r#"--set-json=authentication.config={"apiVersion":"berth.skaphos.io/v1alpha1","kind":"AuthenticationConfiguration","jwt":[{"issuer":{"url":"https://oidc.east.example.com","audiences":["berth"]},"tenants":[{"serviceAccount":"berth-system:berth-operator","tenant":"east","namespaces":["pipeline"]}]}],"tokenReview":{"tenants":[{"serviceAccount":"apps:worker","tenant":"core"}]}}"#.into(),
        ]),
    }
    let mut sets = vec![vec![], custom];
    if chart == "berth-operator" {
        let member = ["--set=member.enabled=true", "--set=member.apiServer=https://berth.example.com:8443"];
        let mut with_id: Vec<String> = member.iter().map(|s| s.to_string()).collect();
        with_id.extend(["--set=member.clusterId=east".into(), "--set=member.ca.secretName=berth-ca".into()]);
        sets.push(with_id);
        sets.push(member.iter().map(|s| s.to_string()).collect());
    }
    sets
}

#[tokio::test]
async fn charts_lint_template_and_pass_server_side_dry_run() {
    let ns = TestNamespace::new("charts").await;
    let helm = helm();
    for name in ["berth-apiserver", "berth-operator"] {
        for values in value_sets(name, &ns.name) {
            let lint = Command::new(&helm).args(["lint", "--strict", &chart(name)]).args(&values).output().unwrap();
            ok(lint, &format!("helm lint {name} {values:?}"));
            let template = Command::new(&helm)
                .args(["template", name, &chart(name), "--namespace", &ns.name])
                .args(&values)
                .output()
                .unwrap();
            let rendered = ok(template, &format!("helm template {name} {values:?}"));
            assert!(rendered.contains("kind: Deployment"), "{name}: no Deployment rendered");
            let mut apply = kubectl()
                .args(["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            apply.stdin.take().unwrap().write_all(rendered.as_bytes()).unwrap();
            let applied = ok(apply.wait_with_output().unwrap(), &format!("dry-run of {name} {values:?}"));
            assert!(applied.contains("(server dry run)"), "{applied}");
        }
    }
}

#[test]
fn charts_reject_values_outside_their_schema() {
    let helm = helm();
    for (name, bad) in [
        ("berth-apiserver", "--set=replicaCount=0"),
        ("berth-apiserver", "--set=logging.format=xml"),
        ("berth-operator", "--set=watchNamespaces={Not_A_Namespace}"),
        ("berth-operator", "--set=unknownKey=1"),
        ("berth-operator", "--set=member.clusterId=East_1"),
        ("berth-operator", "--set=member.apiServer=http://plain.example.com"),
        ("berth-operator", "--set=berthApiToken.expirationSeconds=60"),
        ("berth-apiserver", "--set=authentication.config.kind=Other"),
    ] {
        let out = Command::new(&helm).args(["template", name, &chart(name), bad]).output().unwrap();
        assert!(!out.status.success(), "{name} accepted {bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("values don't meet the specifications of the schema"));
    }
}

#[test]
fn crd_rbac_and_admission_manifests_match_their_sources() {
    let fresh = std::env::temp_dir().join(format!("berth-rbac-{}", std::process::id()));
    let out = Command::new(repo_root().join("hack/render-config.sh")).arg(&fresh).output().unwrap();
    ok(out, "hack/render-config.sh");
    for file in ["rbac/apiserver.yaml", "rbac/operator.yaml", "admission/operator.yaml"] {
        let committed = std::fs::read_to_string(repo_root().join("config").join(file)).unwrap();
        let rendered = std::fs::read_to_string(fresh.join(file)).unwrap();
        assert!(committed == rendered, "config/{file} is stale: run `make manifests`");
    }
    let _ = std::fs::remove_dir_all(&fresh);
    let crd = std::fs::read_to_string(repo_root().join("config/crd/berthlease.yaml")).unwrap();
    let chart_copy =
        std::fs::read_to_string(repo_root().join("deploy/helm/berth-operator/files/berthlease.yaml")).unwrap();
    assert!(crd == chart_copy, "the operator chart's CRD copy is stale: run `make manifests`");
}

#[test]
fn operator_chart_renders_the_member_prometheus_rule_on_request() {
    let helm = helm();
    let operator = chart("berth-operator");
    let default = Command::new(&helm).args(["template", "berth-operator", &operator]).output().unwrap();
    assert!(!ok(default, "helm template (defaults)").contains("kind: PrometheusRule"), "the rule is off by default");
    let values = ["--set=member.enabled=true", "--set=member.apiServer=https://berth.example.com:8443"];
    let with_rule = [&values[..], &["--set=prometheusRule.enabled=true"]].concat();
    let lint = Command::new(&helm).args(["lint", "--strict", &operator]).args(&with_rule).output().unwrap();
    ok(lint, "helm lint with the PrometheusRule");
    let rendered =
        Command::new(&helm).args(["template", "berth-operator", &operator]).args(&with_rule).output().unwrap();
    let rendered = ok(rendered, "helm template with the PrometheusRule");
    for line in [
        "kind: PrometheusRule",
        "alert: BerthMemberLeaseFenced",
        "berth_operator_member_state{state=\"fenced\"}",
        "alert: BerthMemberCoordinationUnreachable",
        "berth_operator_member_coordination_reachable",
    ] {
        assert!(rendered.contains(line), "{line} missing from\n{rendered}");
    }
}
