//! The harness itself works: a `--quick` run against the real control plane
//! writes well-formed results. No timing is asserted.

use std::process::Command;

use serde_json::Value;

#[test]
fn quick_run_writes_well_formed_results() {
    let out = std::env::temp_dir().join(format!("berth-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_berth-bench"))
        .args(["run", "--quick", "--out-dir"])
        .arg(&out)
        .env("BERTH_APISERVER_BIN", berth_testenv::apiserver::binary())
        .env("BERTH_OPERATOR_BIN", berth_testenv::operator::binary())
        .env("BERTH_TEST_CONTROL_PLANE_DIR", berth_testenv::control_plane_dir())
        .status()
        .expect("berth-bench runs");
    assert!(status.success(), "berth-bench run --quick failed: {status}");

    let json: Value = serde_json::from_slice(&std::fs::read(out.join("benchmarks.json")).expect("JSON written"))
        .expect("JSON parses");
    let number = |pointer: &str| {
        json.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("{pointer} is not a number: {json:#}"))
    };
    assert_eq!(json["profile"]["quick"], true);
    assert!(number("/machine/nproc") >= 1.0);
    assert!(!json["versions"]["berth_commit"].as_str().unwrap_or_default().is_empty());

    assert_eq!(number("/hot_path/berth/count"), number("/hot_path/raw/count"));
    assert!(number("/hot_path/berth/count") > 0.0);
    assert!(number("/hot_path/ratio_p50") > 0.0);

    let steps = json["scale"]["steps"].as_array().expect("scale steps");
    assert_eq!(steps.len(), 2);
    for step in steps {
        assert!(step["renew"]["count"].as_u64().unwrap_or(0) > 0, "a step without renews: {step:#}");
        assert!(step["memory"]["apiserver"]["peak_mib"].as_f64().unwrap_or(0.0) > 0.0);
        assert!(step["cpu_cores"]["apiserver"].as_f64().is_some());
        assert!(step["raw"]["renew"]["count"].as_u64().unwrap_or(0) > 0, "a step without raw writes: {step:#}");
    }
    assert!(json["scale"]["raw_max_leases_holding"].as_u64().is_some());

    let kinds = json["write_cost"]["kinds"].as_array().expect("write cost per kind");
    assert_eq!(kinds.len(), berth_bench::write_cost::WriteKind::ALL.len());
    for kind in kinds {
        assert!(kind["latency"]["count"].as_u64().unwrap_or(0) > 0, "{kind:#}");
        for process in ["kube-apiserver", "etcd"] {
            assert!(kind["cpu_ms_per_write"][process].as_f64().is_some(), "{process}: {kind:#}");
        }
    }
    assert!(number("/write_cost/sizes/berth_status") > number("/write_cost/sizes/berth_status_minimal"));
    let rewrites = json["write_cost"]["renew_rewrites"].as_array().expect("renew rewrites");
    assert!(rewrites.iter().any(|p| p.as_str().is_some_and(|p| p.ends_with("expiresAt"))), "{rewrites:?}");

    for phase in ["sustained", "double"] {
        let attempts = ["renewed_per_second", "failed_shed", "failed_refused", "failed_other"]
            .map(|f| number(&format!("/overload/{phase}/{f}")))
            .iter()
            .sum::<f64>();
        assert!(attempts > 0.0, "no renew in the overload's {phase} phase");
    }
    assert_eq!(number("/overload/double/leases"), 2.0 * number("/overload/knee_leases"));

    let expiry = &json["expiry"];
    assert_eq!(expiry["status_from_objects"]["count"], expiry["repetitions"][0]["leases"]);
    assert_eq!(expiry["suspend_from_watch"]["count"], expiry["repetitions"][0]["leases"]);

    assert_eq!(number("/memory/leases"), number("/profile/memory_leases"));
    assert_eq!(number("/memory/renew/count") + number("/memory/renew_errors"), number("/memory/leases"));
    for at in ["at_rest", "after_renews"] {
        for process in ["apiserver", "operator"] {
            assert!(number(&format!("/memory/{at}/{process}/rss_mib")) > 0.0, "{at} {process}");
        }
    }
    assert!(number("/memory/cold_start_seconds") > 0.0);
    assert!(number("/memory/operator_cold_start/peak_mib") > 0.0);

    assert!(number("/failover/kill_to_standby_ms") > 0.0);
    assert!(number("/failover/release_to_standby_ms") > 0.0);
    assert_eq!(json["targets"].as_array().map(Vec::len), Some(12));
    assert_eq!(json["failed"].as_array().map(Vec::len), Some(0), "no scenario failed: {:#}", json["failed"]);

    let ways = json["auth"]["ways"].as_array().expect("authentication cost per way");
    assert_eq!(ways.len(), 4);
    let renews = json["auth"]["repetitions"].as_array().map_or(0, Vec::len) as f64 * number("/auth/samples_per_way");
    for way in ways {
        assert_eq!(way["count"].as_f64(), Some(renews), "{way:#}");
        assert!(way["p50_ms"].as_f64().unwrap_or(0.0) > 0.0, "{way:#}");
    }

    let md = std::fs::read_to_string(out.join("benchmarks.md")).expect("Markdown written");
    for heading in [
        "## Targets",
        "## 1. Hot path",
        "## 2. Scale",
        "## 3. Expiry",
        "## 4. Failover",
        "## 5. Memory",
        "## 6. Authentication",
        "### The knee, side by side",
        "## 7. What a write costs",
        "### Server-side apply",
        "CEL rules: the real schema with CEL / without",
        "## 8. Overload",
        "## 9. Projection",
    ] {
        assert!(md.contains(heading), "benchmarks.md lacks {heading}:\n{md}");
    }

    // `render` rebuilds the same Markdown from the JSON alone.
    let again = out.join("again");
    let status = Command::new(env!("CARGO_BIN_EXE_berth-bench"))
        .args(["render", "--json"])
        .arg(out.join("benchmarks.json"))
        .arg("--out-dir")
        .arg(&again)
        .status()
        .expect("berth-bench render runs");
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(again.join("benchmarks.md")).expect("rendered again"), md);
    let _ = std::fs::remove_dir_all(&out);
}
