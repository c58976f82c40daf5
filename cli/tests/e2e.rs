//! The `berth` binary against the real apiserver binary on the real control
//! plane (`berth_testenv`): every command in every output format, every exit
//! code, TLS, and `lease hold` losing its lease. Run `cargo build -p
//! berth-apiserver` first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use berth_api::BerthLease;
use berth_testenv::TestNamespace;
use berth_testenv::apiserver::{ApiServer, Tenant};
use chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams};
use serde_json::Value;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

struct Env {
    ns: TestNamespace,
    server: ApiServer,
    scratch: PathBuf,
}

impl Env {
    async fn start(prefix: &str) -> Self {
        let ns = TestNamespace::new(prefix).await;
        let tenants = vec![Tenant::new("team", &[&ns.name]), Tenant::new("other", &["elsewhere"])];
        let server = ApiServer::start(tenants, &[], &[]);
        let scratch = std::env::temp_dir().join(format!("berth-cli-{}", ns.name));
        std::fs::create_dir_all(&scratch).unwrap();
        Self { ns, server, scratch }
    }

    /// `berth` with the environment pointing at this apiserver as tenant `team`.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BERTH);
        for var in ["BERTH_API_KEY_FILE", "BERTH_HOLDER", "BERTH_TENANT", "BERTH_LOG"] {
            cmd.env_remove(var);
        }
        cmd.env("BERTH_API_SERVER", &self.server.url)
            .env("BERTH_API_KEY", self.server.key("team"))
            .env("BERTH_NAMESPACE", &self.ns.name)
            .env("BERTH_CA_FILE", &self.server.ca_file)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("berth runs"))
    }

    /// `lease get NAME -o json`, repeated until `check` accepts it: the
    /// apiserver reads from its informer cache, which can lag a write by a
    /// moment.
    fn settle(&self, name: &str, check: impl Fn(&Value) -> bool) -> Value {
        let get = || self.run(&["lease", "get", name, "-o", "json"]);
        let shown = || format!("{:?}", get());
        berth_testenv::eventually_blocking_showing(
            &format!("lease {name} settles"),
            Duration::from_secs(10),
            shown,
            || {
                let run = get();
                (run.code == 0).then(|| run.json()).filter(|view| check(view))
            },
        )
    }

    fn leases(&self) -> Api<BerthLease> {
        self.ns.api()
    }

    async fn server_expiry(&self, name: &str, holder: &str) -> DateTime<Utc> {
        let status = self.leases().get(name).await.expect("lease reads").status.expect("status");
        status.holders.iter().find(|h| h.identity == holder).expect("holder in status").expires_at
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

fn held_by(holder: &str) -> impl Fn(&Value) -> bool {
    move |view| view["holders"][0]["identity"] == holder
}

fn is_released(view: &Value) -> bool {
    view["state"] == "released"
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().expect("berth exits, not killed"),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    }
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    #[track_caller]
    fn yaml(&self) -> Value {
        serde_yaml::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// One line on stderr, starting with `berth: `, and never the key.
    #[track_caller]
    fn error_line(&self, key: &str) -> &str {
        let line = self.stderr.trim_end();
        assert!(!line.contains('\n') && line.starts_with("berth: "), "not one error line: {self:?}");
        assert!(!line.contains(key), "the key leaked: {line}");
        line
    }
}

#[tokio::test]
async fn documented_commands_work_exactly_as_written() {
    let env = Env::start("cli-documented").await;
    env.run(&["lease", "acquire", "ingest-coordinator", "--holder", "team/worker-1"]).ok();
    env.settle("ingest-coordinator", held_by("team/worker-1"));

    // berth --api-server https://HOST:8443 --api-key $KEY lease list
    let list = Command::new(BERTH)
        .env_clear()
        .env("BERTH_NAMESPACE", &env.ns.name)
        .env("BERTH_CA_FILE", &env.server.ca_file)
        .args(["--api-server", &env.server.url, "--api-key", env.server.key("team"), "lease", "list"])
        .output()
        .expect("berth runs");
    let list = Run::from(list).ok();
    let header = list.stdout.lines().next().unwrap();
    assert!(header.starts_with("NAME") && header.contains("STATE") && header.contains("AGE"), "{list:?}");
    assert!(list.stdout.contains("ingest-coordinator   held    team/worker-1   1"), "{list:?}");

    // berth lease get ingest-coordinator
    let get = env.run(&["lease", "get", "ingest-coordinator"]).ok();
    let row = get.stdout.lines().nth(1).unwrap();
    assert!(row.starts_with("ingest-coordinator   held    team/worker-1   1       in "), "{get:?}");

    // berth lease release ingest-coordinator
    let release = env.run(&["lease", "release", "ingest-coordinator"]).ok();
    assert_eq!(release.stdout, "released ingest-coordinator (holder team/worker-1, token 1)\n");
    env.settle("ingest-coordinator", is_released);
    let again = env.run(&["lease", "release", "ingest-coordinator"]).ok();
    assert_eq!(again.stdout, "ingest-coordinator has no live holder: nothing to release\n");
}

#[tokio::test]
async fn every_command_prints_table_json_and_yaml() {
    let env = Env::start("cli-formats").await;
    let ns = env.ns.name.as_str();

    // table
    assert_eq!(env.run(&["version"]).ok().stdout, format!("berth {} (API v1alpha1)\n", env!("CARGO_PKG_VERSION")));
    let ping = env.run(&["ping"]).ok();
    assert_eq!(ping.stdout, format!("{} is healthy, key accepted for namespace {ns}\n", env.server.url));
    assert_eq!(env.run(&["lease", "acquire", "t", "--holder", "team/a", "--ttl", "1m"]).ok().stdout, "1\n");
    assert_eq!(
        env.run(&["lease", "renew", "t", "--holder", "team/a", "--token", "1", "--ttl", "1m"]).ok().stdout,
        "1\n"
    );
    env.settle("t", held_by("team/a"));
    let get = env.run(&["lease", "get", "t"]).ok();
    assert!(get.stdout.lines().nth(1).unwrap().starts_with("t      held    team/a   1       in "), "{get:?}");
    let list = env.run(&["lease", "list"]).ok();
    assert_eq!(list.stdout.lines().count(), 2, "{list:?}");
    let all = env.run(&["lease", "list", "-A"]).ok();
    assert!(all.stdout.starts_with("NAMESPACE") && all.stdout.contains(&format!("{ns}   t ")), "{all:?}");
    let release = env.run(&["lease", "release", "t", "--holder", "team/a", "--token", "1"]).ok();
    assert_eq!(release.stdout, "released t (holder team/a, token 1)\n");
    env.settle("t", is_released);
    let watch = first_watch_lines(&env, &["lease", "watch", "t"], 2);
    assert!(watch[0].starts_with("NAME") && watch[1].starts_with("t      released"), "{watch:?}");

    // json
    assert_eq!(env.run(&["version", "-o", "json"]).ok().json()["apiVersion"], "v1alpha1");
    let ping = env.run(&["ping", "-o", "json"]).ok().json();
    assert_eq!((ping["healthy"].as_bool(), ping["keyAccepted"].as_bool()), (Some(true), Some(true)));
    let acquired = env.run(&["lease", "acquire", "j", "--holder", "team/b", "-o", "json"]).ok().json();
    assert_eq!((acquired["acquired"].as_bool(), acquired["fencingToken"].as_i64()), (Some(true), Some(1)));
    let renewed = env.run(&["lease", "renew", "j", "--holder", "team/b", "--token", "1", "-o", "json"]).ok().json();
    assert_eq!(renewed["holder"], "team/b");
    env.settle("j", held_by("team/b"));
    let got = env.run(&["lease", "get", "j", "-o", "json"]).ok().json();
    assert_eq!((got["name"].as_str(), got["holders"][0]["fencingToken"].as_i64()), (Some("j"), Some(1)));
    let listed = env.run(&["lease", "list", "-o", "json"]).ok().json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let all = env.run(&["lease", "list", "-A", "-o", "json"]).ok().json();
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let released = env.run(&["lease", "release", "j", "-o", "json"]).ok().json();
    assert_eq!((released["released"].as_bool(), released["holder"].as_str()), (Some(true), Some("team/b")));
    env.settle("j", is_released);
    let watch = first_watch_lines(&env, &["lease", "watch", "j", "-o", "json"], 1);
    assert_eq!(serde_json::from_str::<Value>(&watch[0]).unwrap()["state"], "released");

    // yaml
    assert_eq!(env.run(&["version", "-o", "yaml"]).ok().yaml()["clientVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(env.run(&["ping", "-o", "yaml"]).ok().yaml()["healthy"], Value::Bool(true));
    let acquired = env.run(&["lease", "acquire", "y", "--holder", "team", "-o", "yaml"]).ok().yaml();
    assert_eq!(acquired["holder"], "team");
    env.settle("y", held_by("team"));
    let renewed = env.run(&["lease", "renew", "y", "--holder", "team", "--token", "1", "-o", "yaml"]).ok().yaml();
    assert_eq!(renewed["acquired"], Value::Bool(true));
    assert_eq!(env.run(&["lease", "get", "y", "-o", "yaml"]).ok().yaml()["semantics"], "at-most-once");
    assert_eq!(env.run(&["lease", "list", "-o", "yaml"]).ok().yaml()["items"].as_array().unwrap().len(), 3);
    assert_eq!(env.run(&["lease", "list", "-A", "-o", "yaml"]).ok().yaml()["items"].as_array().unwrap().len(), 3);
    let watch = first_watch_lines(&env, &["lease", "watch", "y", "-o", "yaml"], 2);
    assert_eq!(watch[0], "---");
    assert_eq!(watch[1], format!("namespace: {ns}"));
    let released = env.run(&["lease", "release", "y", "-o", "yaml"]).ok().yaml();
    assert_eq!(released["fencingToken"].as_i64(), Some(1));

    for shell in ["bash", "zsh", "fish"] {
        let script = env.run(&["completion", shell]).ok();
        assert!(script.stdout.contains("berth") && script.stdout.contains("lease"), "{shell}: {script:?}");
    }
}

/// Starts `berth lease watch …`, returns its first `n` lines, and stops it.
fn first_watch_lines(env: &Env, args: &[&str], n: usize) -> Vec<String> {
    use std::io::BufRead;
    let mut child = env.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("watch starts");
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let lines: Vec<String> = stdout.lines().take(n).map(|l| l.expect("a line")).collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(lines.len(), n, "the watch printed fewer lines than expected");
    lines
}

#[tokio::test]
async fn exit_codes_follow_the_contract() {
    let env = Env::start("cli-exit-codes").await;
    let key = env.server.key("team").to_owned();
    env.run(&["lease", "acquire", "busy", "--holder", "team/a"]).ok();

    // 1: error, with the server's message
    let missing = env.run(&["lease", "get", "nope"]);
    assert_eq!(missing.code, 1);
    assert_eq!(missing.error_line(&key), "berth: lease get nope: not found: lease not found");
    let conflict = env.run(&["lease", "release", "busy", "--holder", "team/b", "--token", "1"]);
    assert_eq!(conflict.code, 1);
    assert!(conflict.error_line(&key).ends_with("conflict: lease held by another identity or token"), "{conflict:?}");
    let invalid = env.run(&["lease", "acquire", "busy", "--holder", "team/a", "--ttl", "100000s"]);
    assert_eq!(invalid.code, 1);
    assert!(invalid.error_line(&key).ends_with("invalid request: ttlSeconds must be at most 86400"), "{invalid:?}");

    // 2: usage
    assert_eq!(env.run(&["lease", "acquire", "busy"]).code, 2, "missing --holder");
    let bad = env.run(&["lease", "acquire", "busy", "--holder", "team/a", "--ttl", "5x"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("unknown unit \"x\""), "{bad:?}");
    let no_server = Run::from(Command::new(BERTH).env_clear().args(["lease", "list"]).output().unwrap());
    assert_eq!(no_server.code, 2);
    assert_eq!(no_server.stderr, "berth: no API server: pass --api-server or set BERTH_API_SERVER\n");

    // 3: not acquired, naming the holder; the refusal still prints for -o json
    let taken = env.run(&["lease", "acquire", "busy", "--holder", "team/b"]);
    assert_eq!(taken.code, 3);
    assert!(taken.error_line(&key).contains("not acquired: held by team/a until "), "{taken:?}");
    let taken = env.run(&["lease", "acquire", "busy", "--holder", "team/b", "-o", "json"]);
    assert_eq!((taken.code, taken.json()["acquired"].as_bool()), (3, Some(false)));
    let stale = env.run(&["lease", "renew", "busy", "--holder", "team/a", "--token", "7"]);
    assert_eq!(stale.code, 3, "{stale:?}");

    // 4: unauthorized and forbidden
    let unknown = env.run(&["--api-key", "wrong-key", "lease", "list"]);
    assert_eq!(unknown.code, 4);
    assert_eq!(
        unknown.error_line("wrong-key"),
        format!("berth: lease list -n {}: unauthorized: unauthorized", env.ns.name)
    );
    let foreign = env.run(&["lease", "acquire", "busy", "--holder", "intruder"]);
    assert_eq!(foreign.code, 4);
    assert!(foreign.error_line(&key).ends_with("forbidden: holder not authorized for this identity"), "{foreign:?}");
    let other_ns = env.run(&["lease", "list", "-n", "elsewhere"]);
    assert_eq!(other_ns.code, 4);
    assert!(other_ns.error_line(&key).ends_with("forbidden: not authorized for this namespace"), "{other_ns:?}");

    // the key from a file works as well
    let key_file = env.scratch.join("key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let mut cmd = env.command(&["lease", "list", "--api-key-file", key_file.to_str().unwrap()]);
    cmd.env_remove("BERTH_API_KEY");
    Run::from(cmd.output().unwrap()).ok();
}

#[tokio::test]
async fn tls_ca_file_works_unknown_ca_fails_clearly_and_insecure_warns() {
    let env = Env::start("cli-tls").await;
    env.run(&["ping", "--ca-file", env.server.ca_file.to_str().unwrap()]).ok();

    let mut system = env.command(&["ping"]);
    system.env_remove("BERTH_CA_FILE");
    let system = Run::from(system.output().unwrap());
    assert_eq!(system.code, 1);
    assert!(
        system
            .error_line(env.server.key("team"))
            .contains("TLS: the server's certificate is signed by an unknown certificate authority")
    );

    let other = env.scratch.join("other-ca");
    let status = Command::new(berth_testenv::repo_root().join("hack/gen-tls.sh")).arg(&other).status().unwrap();
    assert!(status.success());
    let wrong = env.run(&["ping", "--ca-file", other.join("ca.crt").to_str().unwrap()]);
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("signed by an unknown certificate authority"), "{wrong:?}");

    let mut insecure = env.command(&["lease", "list", "--insecure-skip-tls-verify"]);
    insecure.env("BERTH_CA_FILE", other.join("ca.crt"));
    let insecure = Run::from(insecure.output().unwrap()).ok();
    assert!(insecure.stderr.contains("TLS certificate verification is disabled"), "{insecure:?}");
}

/// A shell command that records its fencing token, then on SIGTERM records
/// the wall-clock time (seconds since the epoch) and exits 0.
fn child_script(dir: &Path) -> String {
    format!(
        r#"trap 'date +%s.%N > {dir}/term; exit 0' TERM
echo "$BERTH_FENCING_TOKEN" > {dir}/started
while :; do sleep 0.05; done"#,
        dir = dir.display()
    )
}

fn wait_for_file(path: &Path, within: Duration) -> String {
    berth_testenv::eventually_blocking(&format!("{} appears", path.display()), within, || {
        std::fs::read_to_string(path).ok().filter(|text| text.ends_with('\n'))
    })
}

/// Waits until `child` exits; one that does not is killed, so that it does not outlive the test.
fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let exited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        berth_testenv::eventually_blocking("berth exits", within, || child.try_wait().unwrap())
    }));
    exited.unwrap_or_else(|hang| {
        let _ = child.kill();
        std::panic::resume_unwind(hang)
    })
}

fn epoch_seconds(text: &str) -> DateTime<Utc> {
    let secs: f64 = text.trim().parse().expect("a timestamp");
    DateTime::from_timestamp_micros((secs * 1e6) as i64).unwrap()
}

#[tokio::test]
async fn hold_runs_the_command_and_exits_with_its_code_after_releasing() {
    let env = Env::start("cli-hold-ok").await;
    let script = r#"test "$BERTH_FENCING_TOKEN" = 1 && test "$BERTH_HOLDER" = team/job && exit 7"#;
    let run = env.run(&["lease", "hold", "job", "--holder", "team/job", "--", "sh", "-c", script]);
    assert_eq!(run.code, 7, "{run:?}");
    env.settle("job", is_released);

    let blocker = env.run(&["lease", "acquire", "job", "--holder", "team/other"]).ok();
    assert_eq!(blocker.stdout, "2\n");
    let marker = env.scratch.join("ran");
    let touch = format!("touch {}", marker.display());
    let refused = env.run(&["lease", "hold", "job", "--holder", "team/job", "--", "sh", "-c", &touch]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(!marker.exists(), "the command must not run without the lease");
}

#[tokio::test]
async fn hold_sigterms_the_command_before_the_server_expiry_when_the_apiserver_is_stopped() {
    let mut env = Env::start("cli-hold-expiry").await;
    let script = child_script(&env.scratch);
    let mut hold = env
        .command(&[
            "lease", "hold", "cut", "--holder", "team/h", "--ttl", "6s", "--margin", "2s", "--", "sh", "-c", &script,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("hold starts");
    assert_eq!(wait_for_file(&env.scratch.join("started"), Duration::from_secs(20)), "1\n");

    env.server.terminate();
    // With the apiserver stopped, nobody renews or expires anything: this is
    // the expiry the server promised, and the earliest it could grant again.
    let server_expiry = env.server_expiry("cut", "team/h").await;
    let status = wait_exit(&mut hold, Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(hold.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("berth: lost lease cut: no renew succeeded before the local safe deadline"), "{stderr}");
    let term = epoch_seconds(&wait_for_file(&env.scratch.join("term"), Duration::from_secs(1)));
    assert!(term < server_expiry, "SIGTERM at {term}, server expiry {server_expiry}");
    eprintln!(
        "hold (apiserver stopped): SIGTERM handled {:?} before the server's expiresAt",
        (server_expiry - term).to_std().unwrap()
    );

    // Back up, the server grants the lease to someone else only from its expiry on.
    env.server.restart();
    let other =
        env.run(&["lease", "acquire", "cut", "--holder", "team/next", "--wait", "30s", "-o", "json"]).ok().json();
    let granted: DateTime<Utc> = other["acquiredAt"].as_str().unwrap().parse().unwrap();
    assert!(granted >= server_expiry, "granted at {granted}, before the expiry {server_expiry}");
    assert_eq!(other["fencingToken"].as_i64(), Some(2));
}

#[tokio::test]
async fn hold_sigterms_the_command_when_the_lease_object_is_deleted() {
    let env = Env::start("cli-hold-delete").await;
    let script = child_script(&env.scratch);
    let mut hold = env
        .command(&["lease", "hold", "doomed", "--holder", "team/h", "--ttl", "30s", "--", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .expect("hold starts");
    wait_for_file(&env.scratch.join("started"), Duration::from_secs(20));
    let promised = env.server_expiry("doomed", "team/h").await;

    let deleted_at = Utc::now();
    env.leases().delete("doomed", &DeleteParams::default()).await.expect("delete");
    let status = wait_exit(&mut hold, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(hold.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("berth: lost lease doomed: a renew was refused"), "{stderr}");
    let term = epoch_seconds(&wait_for_file(&env.scratch.join("term"), Duration::from_secs(1)));
    assert!(term < promised, "SIGTERM at {term}, after the expiry {promised} of the deleted grant");
    eprintln!("hold (lease deleted): SIGTERM handled {:?} after the delete", (term - deleted_at).to_std().unwrap());

    // The object is gone, so the next acquire starts the token over.
    assert_eq!(env.run(&["lease", "acquire", "doomed", "--holder", "team/next"]).ok().stdout, "1\n");
}

#[tokio::test]
async fn hold_kills_a_command_that_ignores_sigterm_after_the_grace_period() {
    let mut env = Env::start("cli-hold-kill").await;
    let started = env.scratch.join("started");
    // The held command: it runs until a signal ends it (the sleep is no wait).
    let script = format!("trap '' TERM; echo x > {}; while :; do sleep 0.05; done", started.display());
    let mut hold = env
        .command(&[
            "lease", "hold", "stubborn", "--holder", "team/h", "--ttl", "3s", "--margin", "1s", "--grace", "1s", "--",
            "sh", "-c", &script,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("hold starts");
    wait_for_file(&started, Duration::from_secs(20));
    env.server.kill();
    let status = wait_exit(&mut hold, Duration::from_secs(20));
    let mut stderr = String::new();
    std::io::Read::read_to_string(hold.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("did not exit within 1s; sending SIGKILL"), "{stderr}");
}

#[tokio::test]
async fn hold_waits_for_the_lease_and_passes_signals_on_to_the_command() {
    let env = Env::start("cli-hold-signal").await;
    env.run(&["lease", "acquire", "queue", "--holder", "team/first"]).ok();
    env.settle("queue", held_by("team/first"));
    let started = env.scratch.join("started");
    // The held command: it runs until a signal ends it (the sleep is no wait).
    let script = format!(
        "trap 'exit 5' TERM; echo \"$BERTH_FENCING_TOKEN\" > {}; while :; do sleep 0.05; done",
        started.display()
    );
    let mut hold = env
        .command(&["lease", "hold", "queue", "--holder", "team/second", "--wait", "30s", "--", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .expect("hold starts");
    berth_testenv::eventually("the hold's acquire waits", Duration::from_secs(30), || async {
        (env.server.metric("berth_apiserver_waiting_acquires") == Some(1.0)).then_some(())
    })
    .await;
    assert!(!started.exists(), "the command runs only once the lease is granted");
    env.run(&["lease", "release", "queue", "--holder", "team/first"]).ok();
    assert_eq!(wait_for_file(&started, Duration::from_secs(20)), "2\n");

    let sent = Command::new("kill").args(["-TERM", &hold.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = wait_exit(&mut hold, Duration::from_secs(20));
    assert_eq!(status.code(), Some(5), "berth exits with the command's code");
    env.settle("queue", is_released);
}

/// Whether process `pid` runs (a zombie waiting to be reaped does not).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

#[tokio::test]
async fn hold_killed_with_sigkill_takes_its_command_with_it() {
    let env = Env::start("cli-hold-sigkill").await;
    let pid_file = env.scratch.join("pid");
    // The held command: it runs until a signal ends it (the sleep is no wait).
    let script = format!("echo $$ > {}; exec sleep 600", pid_file.display());
    let mut hold = env
        .command(&["lease", "hold", "orphan", "--holder", "team/h", "--ttl", "30s", "--", "sh", "-c", &script])
        .spawn()
        .expect("hold starts");
    let pid = wait_for_file(&pid_file, Duration::from_secs(20)).trim().to_owned();
    assert!(running(&pid), "the command runs while held");

    hold.kill().expect("SIGKILL reaches berth");
    hold.wait().expect("berth is reaped");
    berth_testenv::eventually(&format!("the command {pid} ends with berth"), Duration::from_secs(30), || async {
        (!running(&pid)).then_some(())
    })
    .await;
}
