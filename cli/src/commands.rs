//! Every command except `lease hold`. Each prints its result on stdout and
//! returns the error that decides the exit code.

use std::io::Write;
use std::time::Duration;

use berth_api::wire::{AcquireRequest, AcquireResponse, LeaseView, ReleaseRequest, RenewRequest};
use berth_client::{Client, Error as ClientError, Grant};
use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;

use crate::args::{Global, GrantArgs, HolderArgs};
use crate::exit::CliError;
use crate::output::{self, Format};
use berth_api::duration::whole_seconds;

/// The version of the REST API this build speaks.
pub const API_VERSION: &str = "v1alpha1";

pub fn client(global: &Global) -> Result<Client, CliError> {
    let server = global
        .api_server
        .as_deref()
        .ok_or_else(|| CliError::Usage("no API server: pass --api-server or set BERTH_API_SERVER".to_owned()))?;
    let mut builder = Client::builder(server).timeout(global.timeout);
    if let Some(path) = &global.api_key_file {
        builder = builder.api_key_file(path);
    } else if let Some(key) = &global.api_key {
        builder = builder.api_key(key);
    }
    if global.insecure_skip_tls_verify {
        builder = builder.danger_accept_invalid_certs();
    } else if let Some(path) = &global.ca_file {
        builder = builder.ca_file(path).map_err(CliError::client("--ca-file"))?;
    }
    builder.build().map_err(CliError::client("configuring the client"))
}

fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Other(format!("writing output: {e}")))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PingReport {
    api_server: String,
    healthy: bool,
    /// Whether the key was accepted for the namespace; absent without a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_accepted: Option<bool>,
    namespace: String,
}

pub async fn ping(global: &Global) -> Result<(), CliError> {
    let client = client(global)?;
    let server = client.base_url().as_str().trim_end_matches('/').to_owned();
    client.ping().await.map_err(CliError::client("ping"))?;
    let has_key = global.api_key.is_some() || global.api_key_file.is_some();
    if has_key {
        client
            .list(&global.namespace)
            .await
            .map_err(CliError::client(format!("ping: listing namespace {}", global.namespace)))?;
    }
    let report = PingReport {
        api_server: server,
        healthy: true,
        key_accepted: has_key.then_some(true),
        namespace: global.namespace.clone(),
    };
    match global.output {
        Format::Table => {
            let key =
                if has_key { format!(", key accepted for namespace {}", report.namespace) } else { String::new() };
            print(&format!("{} is healthy{key}\n", report.api_server))
        }
        format => print(&output::structured(format, &report)),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionReport {
    client_version: &'static str,
    api_version: &'static str,
}

pub fn version(global: &Global) -> Result<(), CliError> {
    let report = VersionReport { client_version: env!("CARGO_PKG_VERSION"), api_version: API_VERSION };
    match global.output {
        Format::Table => print(&format!("berth {} (API {})\n", report.client_version, report.api_version)),
        format => print(&output::structured(format, &report)),
    }
}

pub async fn list(global: &Global, all_namespaces: bool) -> Result<(), CliError> {
    let client = client(global)?;
    let leases = if all_namespaces {
        client.list_all().await.map_err(CliError::client("lease list -A"))?
    } else {
        client.list(&global.namespace).await.map_err(CliError::client(format!("lease list -n {}", global.namespace)))?
    };
    match global.output {
        Format::Table if leases.is_empty() && all_namespaces => {
            eprintln!("No leases found.");
            Ok(())
        }
        Format::Table if leases.is_empty() => {
            eprintln!("No leases found in namespace {}.", global.namespace);
            Ok(())
        }
        Format::Table => print(&output::lease_table(&leases, all_namespaces, Utc::now())),
        format => print(&output::structured(format, &berth_api::wire::LeaseList { items: leases })),
    }
}

pub async fn get(global: &Global, name: &str) -> Result<(), CliError> {
    let client = client(global)?;
    let lease = client.get(&global.namespace, name).await.map_err(CliError::client(format!("lease get {name}")))?;
    match global.output {
        Format::Table => print(&output::lease_table(std::slice::from_ref(&lease), false, Utc::now())),
        format => print(&output::structured(format, &lease)),
    }
}

/// Prints a grant: the token alone for tables (so `$(berth lease acquire …)`
/// captures it), the wire answer for JSON and YAML.
fn print_grant(format: Format, grant: Grant) -> Result<(), CliError> {
    match format {
        Format::Table => print(&format!("{}\n", grant.fencing_token)),
        format => print(&output::structured(format, &AcquireResponse::from(grant))),
    }
}

/// A refused answer still goes to stdout for JSON and YAML; the error line
/// and exit code 3 follow.
fn print_refusal(format: Format, err: &ClientError) -> Result<(), CliError> {
    match (format, err) {
        (Format::Json | Format::Yaml, ClientError::NotAcquired { current }) => {
            print(&output::structured(format, current))
        }
        _ => Ok(()),
    }
}

pub async fn acquire(
    global: &Global,
    name: &str,
    holder: &HolderArgs,
    grant: &GrantArgs,
    semantics: Option<berth_api::Semantics>,
    max_holders: Option<i32>,
) -> Result<(), CliError> {
    let client = client(global)?;
    let ttl_seconds = whole_seconds("--ttl", grant.ttl).map_err(CliError::Usage)?;
    let request =
        AcquireRequest { holder: holder.holder.clone(), ttl_seconds, semantics, max_holders, ..Default::default() };
    let context = format!("lease acquire {name}");
    let result = client.acquire_with_wait(&global.namespace, name, &request, grant.wait.unwrap_or_default()).await;
    match result {
        Ok(grant) => print_grant(global.output, grant),
        Err(e) => {
            print_refusal(global.output, &e)?;
            Err(CliError::Client { context, source: e })
        }
    }
}

pub async fn renew(
    global: &Global,
    name: &str,
    holder: &HolderArgs,
    token: i32,
    ttl: Duration,
) -> Result<(), CliError> {
    let client = client(global)?;
    let ttl_seconds = whole_seconds("--ttl", ttl).map_err(CliError::Usage)?;
    let request = RenewRequest { holder: holder.holder.clone(), fencing_token: token, ttl_seconds };
    match client.renew(&global.namespace, name, &request).await {
        Ok(grant) => print_grant(global.output, grant),
        Err(e) => {
            print_refusal(global.output, &e)?;
            Err(CliError::Client { context: format!("lease renew {name}"), source: e })
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReleaseReport {
    namespace: String,
    name: String,
    /// Absent when the lease had no live holder: nothing was released.
    #[serde(skip_serializing_if = "Option::is_none")]
    holder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fencing_token: Option<i32>,
    released: bool,
}

/// Picks the holder to release from the lease's live holders (see
/// `RELEASE_HELP`): `Ok(None)` when nobody holds it.
pub fn pick_own_holder(
    view: &LeaseView,
    holder: Option<&str>,
    tenant: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> Result<Option<(String, i32)>, CliError> {
    let live: Vec<_> = view.holders.iter().filter(|h| h.is_live(now)).collect();
    if live.is_empty() {
        return Ok(None);
    }
    let candidates: Vec<_> = live
        .iter()
        .filter(|h| holder.is_none_or(|wanted| h.identity == wanted))
        .filter(|h| {
            tenant
                .is_none_or(|t| h.identity == t || h.identity.strip_prefix(t).is_some_and(|rest| rest.starts_with('/')))
        })
        .collect();
    match candidates.as_slice() {
        [one] => Ok(Some((one.identity.clone(), one.fencing_token))),
        [] => {
            // Only reachable with a filter: without one, every live holder is a candidate.
            let whose = match (holder, tenant) {
                (Some(h), _) => format!("holder {h}"),
                (None, Some(t)) => format!("tenant {t}"),
                (None, None) => "the caller".to_owned(),
            };
            let holders: Vec<_> = live.iter().map(|h| h.identity.as_str()).collect();
            Err(CliError::Other(format!("lease {} is not held by {whose} (held by {})", view.name, holders.join(", "))))
        }
        several => {
            let holders: Vec<_> = several.iter().map(|h| h.identity.as_str()).collect();
            Err(CliError::Usage(format!(
                "lease {} has several live holders ({}): choose one with --holder",
                view.name,
                holders.join(", ")
            )))
        }
    }
}

pub async fn release(
    global: &Global,
    name: &str,
    holder: Option<&str>,
    token: Option<i32>,
    tenant: Option<&str>,
) -> Result<(), CliError> {
    let client = client(global)?;
    let context = format!("lease release {name}");
    let picked = match (holder, token) {
        (Some(holder), Some(token)) => Some((holder.to_owned(), token)),
        (None, Some(_)) => return Err(CliError::Usage("--token needs --holder".to_owned())),
        (holder, None) => {
            let view = client.get(&global.namespace, name).await.map_err(CliError::client(context.clone()))?;
            pick_own_holder(&view, holder, tenant, Utc::now())?
        }
    };
    let report = match picked {
        None => ReleaseReport {
            namespace: global.namespace.clone(),
            name: name.to_owned(),
            holder: None,
            fencing_token: None,
            released: false,
        },
        Some((holder, fencing_token)) => {
            let request = ReleaseRequest { holder: holder.clone(), fencing_token };
            client.release(&global.namespace, name, &request).await.map_err(CliError::client(context))?;
            ReleaseReport {
                namespace: global.namespace.clone(),
                name: name.to_owned(),
                holder: Some(holder),
                fencing_token: Some(fencing_token),
                released: true,
            }
        }
    };
    match (global.output, &report.holder) {
        (Format::Table, Some(holder)) => {
            print(&format!("released {name} (holder {holder}, token {})\n", report.fencing_token.unwrap_or_default()))
        }
        (Format::Table, None) => print(&format!("{name} has no live holder: nothing to release\n")),
        (format, _) => print(&output::structured(format, &report)),
    }
}

pub async fn watch(global: &Global, name: &str) -> Result<(), CliError> {
    let client = client(global)?;
    let context = format!("lease watch {name}");
    let mut stream = client.watch(&global.namespace, name).await.map_err(CliError::client(context.clone()))?;
    let mut header = true;
    while let Some(item) = stream.next().await {
        let view = item.map_err(CliError::client(context.clone()))?;
        let text = match global.output {
            Format::Table => {
                let row = output::lease_row(&view, false, Utc::now());
                let table = output::table(&output::lease_header(false), &[row]);
                // kubectl -w style: the header once, then a row per change.
                let lines: Vec<_> = table.lines().skip(usize::from(!header)).map(|l| format!("{l}\n")).collect();
                header = false;
                lines.concat()
            }
            format => output::streamed(format, &view),
        };
        print(&text)?;
    }
    eprintln!("berth: the server ended the watch: the lease was deleted, or the server is shutting down");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{Holder, LeaseState, Semantics};
    use chrono::{TimeDelta, TimeZone};

    fn now() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap()
    }

    fn view(holders: &[(&str, i32, i64)]) -> LeaseView {
        LeaseView {
            namespace: "ns".into(),
            name: "ingest-coordinator".into(),
            semantics: Semantics::AtLeastOnce,
            state: LeaseState::Held,
            holders: holders
                .iter()
                .map(|(identity, token, expires_in)| Holder {
                    identity: identity.to_string(),
                    fencing_token: *token,
                    acquired_at: now(),
                    renewed_at: now(),
                    expires_at: now() + TimeDelta::seconds(*expires_in),
                })
                .collect(),
            fencing_token: 9,
            transitions: 9,
            ttl_seconds: 30,
            heartbeat_interval_seconds: 10,
            max_holders: None,
            target: None,
            updated_at: None,
            target_status: None,
            conditions: Vec::new(),
        }
    }

    #[test]
    fn release_picks_the_only_live_holder() {
        let v = view(&[("team-a/old", 3, -1), ("team-a/w1", 7, 20)]);
        assert_eq!(pick_own_holder(&v, None, None, now()).unwrap(), Some(("team-a/w1".into(), 7)));
    }

    #[test]
    fn release_without_live_holders_has_nothing_to_do() {
        assert_eq!(pick_own_holder(&view(&[("team-a/old", 3, -1)]), None, None, now()).unwrap(), None);
    }

    #[test]
    fn release_narrows_several_holders_by_tenant_or_holder() {
        let v = view(&[("team-a", 7, 20), ("team-ab/w", 8, 20), ("team-b/w", 9, 20)]);
        assert_eq!(pick_own_holder(&v, None, Some("team-a"), now()).unwrap(), Some(("team-a".into(), 7)));
        assert_eq!(pick_own_holder(&v, Some("team-b/w"), None, now()).unwrap(), Some(("team-b/w".into(), 9)));
        let err = pick_own_holder(&v, None, None, now()).unwrap_err();
        assert!(err.to_string().contains("choose one with --holder"), "{err}");
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        let err = pick_own_holder(&v, None, Some("team-c"), now()).unwrap_err();
        assert!(err.to_string().contains("is not held by tenant team-c"), "{err}");
    }
}
