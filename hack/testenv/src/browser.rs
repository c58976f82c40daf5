//! A real headless Chromium for tests, driven over WebDriver: Debian's
//! `chromium` and `chromedriver` (`.ci/run` installs both), and a few W3C
//! WebDriver calls over reqwest.
//!
//! Why WebDriver over reqwest and not a DevTools crate: the workspace already
//! builds reqwest, and the tests need about ten calls (navigate, run a
//! script, type, click, screenshot, read the console log); a CDP client crate
//! adds minutes of compile time on two cores for none of that.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::apiserver::free_port;

/// Flags that work in the test containers (no sandbox, no GPU, no network of its own).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser message of the kind the console shows.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub level: String,
    pub message: String,
}

/// A headless Chromium with one WebDriver session. Dropping it kills
/// chromedriver and the browser.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
    profile: PathBuf,
}

fn tool(env: &str, default: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(default))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "{default} was not found (or set {env}): the browser tests need Debian's chromium and \
             chromium-driver, which .ci/run installs (apt-get install chromium chromium-driver)"
        )
    })
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium with a window of `width` × `height`.
    ///
    /// # Panics
    /// When chromium or chromedriver is missing or does not start within 30 s.
    pub async fn start(width: u32, height: u32) -> Self {
        let chromium = tool("BERTH_CHROMIUM", "chromium");
        let chromedriver = tool("BERTH_CHROMEDRIVER", "chromedriver");
        let port = free_port();
        let profile = std::env::temp_dir().join(format!("berth-chromium-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("browser profile dir");
        let log = std::fs::File::create(profile.with_extension("chromedriver.log")).expect("chromedriver log");
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clones"))
            .stderr(log)
            // Its own process group, so that Drop can end the browser with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Self { driver, http, session: String::new(), profile };
        crate::eventually("chromedriver answers", Duration::from_secs(30), || async {
            let reply = browser.http.get(format!("{base}/status")).send().await.ok()?;
            let body = serde_json::from_slice::<Value>(&reply.bytes().await.ok()?).unwrap_or_default();
            (body["value"]["ready"] == true).then_some(())
        })
        .await;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", browser.profile.display()));
        args.push(format!("--window-size={width},{height}"));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The test apiserver's certificate is signed by a CA made for the test.
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = browser.call("POST", &format!("{base}/session"), Some(capabilities)).await;
        let id = created["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_owned();
        browser.session = format!("{base}/session/{id}");
        browser
    }

    async fn call(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let reply = request.send().await.unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
        let status = reply.status();
        let bytes = reply.bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(status.is_success(), "WebDriver {method} {url}: {status} {body}");
        body["value"].clone()
    }

    async fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("{}{path}", self.session), body).await
    }

    /// Loads `url` and waits for its `load` event.
    pub async fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.session_call("POST", "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Polls `script` until it returns something truthy in JavaScript's sense
    /// (not `null`, `false`, `0` or `""`), and returns that; panics with
    /// `what` after `timeout`.
    pub async fn wait_for(&self, what: &str, script: &str, args: Vec<Value>, timeout: Duration) -> Value {
        crate::eventually(what, timeout, || async {
            let value = self.execute(script, args.clone()).await;
            let falsy = matches!(&value, Value::Null | Value::Bool(false))
                || value.as_str() == Some("")
                || value.as_f64() == Some(0.0);
            (!falsy).then_some(value)
        })
        .await
    }

    /// The first element matching the CSS `selector`.
    pub async fn find(&self, selector: &str) -> String {
        let found =
            self.session_call("POST", "/element", Some(json!({"using": "css selector", "value": selector}))).await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {selector}: {found}")).to_owned()
    }

    /// Types `text` into the element matching `selector`.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let element = self.find(selector).await;
        self.session_call("POST", &format!("/element/{element}/value"), Some(json!({"text": text}))).await;
    }

    /// Clicks the element matching `selector`.
    pub async fn click(&self, selector: &str) {
        let element = self.find(selector).await;
        self.session_call("POST", &format!("/element/{element}/click"), None).await;
    }

    /// Resizes the browser window.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.session_call("POST", "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.session_call("GET", "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("screenshot is base64"))
            .expect("screenshot decodes")
    }

    /// The browser console messages since the last call (chromedriver's log endpoint).
    pub async fn console_log(&self) -> Vec<LogEntry> {
        let entries = self.session_call("POST", "/se/log", Some(json!({"type": "browser"}))).await;
        entries
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or_default().to_owned(),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Ends the session, then chromedriver.
    pub async fn quit(mut self) {
        self.session_call("DELETE", "", None).await;
        self.kill();
    }

    fn kill(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.driver.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}
