//! `GET /`: the moderation console's dashboard: queue sizes, moderation turnaround (median
//! and 90th percentile from first report to decision, last 30 days), the health of every
//! service `up` runs, the AppView's ingest position and label sources (status, lag behind
//! our labeler, labels refused), and the relay's upstream hosts.
//!
//! Figures from other services are read live from their own endpoints (`_health`,
//! `/metrics`, `listHosts`) with a short timeout each, all at once; a service that does not
//! answer shows as down rather than holding up the page.

use std::time::Duration;

use askama::Template;
use axum::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::pages::ModerationPages;
use crate::admin::{Authed, Permission, Shell, human_duration, render};
use crate::moderation::Turnaround;

/// How long a service may take to answer the dashboard.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The turnaround window.
const WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// A service the dashboard checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProbe {
    /// Its name (`pds`, `relay`, `appview`, ...).
    pub name: String,
    /// Its base URL.
    pub url: String,
    /// Its health path (`/xrpc/_health`).
    pub health: String,
}

struct ServiceRow {
    name: String,
    url: String,
    up: bool,
    detail: String,
}

struct LabelSourceRow {
    did: String,
    connected: bool,
    cursor: String,
    lag: String,
    rejected: u64,
    error: String,
}

#[derive(Template)]
#[template(
    path = "admin/console_dashboard.html",
    config = "src/admin/askama.toml"
)]
struct DashboardPage {
    shell: Shell,
    queues: Vec<(&'static str, i64)>,
    decided: usize,
    median: String,
    p90: String,
    services: Vec<ServiceRow>,
    ingest: String,
    label_sources: Vec<LabelSourceRow>,
    hosts: Vec<(String, String)>,
}

fn duration_us(us: Option<i64>) -> String {
    us.map_or_else(
        || "–".to_owned(),
        |us| human_duration(Duration::from_micros(u64::try_from(us).unwrap_or(0))),
    )
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let response = http.get(url).timeout(PROBE_TIMEOUT).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

async fn get_text(http: &reqwest::Client, url: &str) -> Option<String> {
    let response = http.get(url).timeout(PROBE_TIMEOUT).send().await.ok()?;
    response.text().await.ok()
}

/// `atelier_appview_labels_rejected_total{source="DID",...} N`, summed per source.
fn rejected_for(metrics: &str, did: &str) -> u64 {
    let needle = format!("atelier_appview_labels_rejected_total{{source=\"{did}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `GET /`.
pub(crate) async fn show(authed: Authed, Extension(pages): Extension<ModerationPages>) -> Response {
    if let Err(forbidden) = authed.require(Permission::View) {
        return forbidden.into_response();
    }
    let store = pages.moderation.store();
    let since =
        atelier_relay::jetstream::now_us() - i64::try_from(WINDOW.as_micros()).unwrap_or(i64::MAX);
    let (counts, turnaround) = match tokio::try_join!(store.queue_counts(), store.turnaround(since))
    {
        Ok(figures) => figures,
        Err(e) => {
            tracing::error!(%e, "the dashboard's figures");
            (Vec::new(), Turnaround::default())
        }
    };
    let http = &pages.probe_http;
    let probes = pages.services.iter().map(|p| async move {
        let health = get_json(http, &format!("{}{}", p.url, p.health)).await;
        (p.clone(), health)
    });
    let probed = futures_util::future::join_all(probes).await;

    let mut ingest = "no AppView configured".to_owned();
    let mut label_sources = Vec::new();
    let mut hosts = Vec::new();
    let our_latest = pages.moderation.labeler().latest_seq();
    let our_did = pages.moderation.labeler().did().to_owned();
    let mut services = Vec::new();
    for (probe, health) in probed {
        let version = health
            .as_ref()
            .and_then(|h| h.get("version"))
            .and_then(Value::as_str)
            .unwrap_or("");
        services.push(ServiceRow {
            name: probe.name.clone(),
            url: probe.url.clone(),
            up: health.is_some(),
            detail: version.to_owned(),
        });
        match (probe.name.as_str(), &health) {
            ("appview", Some(h)) => {
                ingest = match h.get("committedSeq").and_then(Value::as_i64) {
                    Some(seq) => format!(
                        "indexed up to seq {seq} of {}",
                        h.get("source")
                            .and_then(Value::as_str)
                            .unwrap_or("its source")
                    ),
                    None => "nothing indexed yet".to_owned(),
                };
                let metrics = get_text(http, &format!("{}/metrics", probe.url))
                    .await
                    .unwrap_or_default();
                for source in h
                    .get("labelSources")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let did = source.get("did").and_then(Value::as_str).unwrap_or("");
                    let cursor = source.get("cursor").and_then(Value::as_i64);
                    label_sources.push(LabelSourceRow {
                        did: did.to_owned(),
                        connected: source.get("connected").and_then(Value::as_bool) == Some(true),
                        cursor: cursor.map_or_else(|| "–".to_owned(), |c| c.to_string()),
                        // The lag is known for our own labeler: its newest label's seq.
                        lag: if did == our_did {
                            format!("{} labels", (our_latest - cursor.unwrap_or(0)).max(0))
                        } else {
                            "–".to_owned()
                        },
                        rejected: rejected_for(&metrics, did),
                        error: source
                            .get("lastError")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    });
                }
            }
            ("relay", Some(_)) => {
                let list = get_json(
                    http,
                    &format!("{}/xrpc/com.atproto.sync.listHosts?limit=100", probe.url),
                )
                .await;
                for host in list
                    .as_ref()
                    .and_then(|l| l.get("hosts"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = host.get("hostname").and_then(Value::as_str).unwrap_or("");
                    let status = host.get("status").and_then(Value::as_str).unwrap_or("");
                    hosts.push((name.to_owned(), status.to_owned()));
                }
            }
            _ => {}
        }
    }
    let page = DashboardPage {
        shell: authed.shell("Dashboard"),
        queues: counts.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
        decided: turnaround.decided,
        median: duration_us(turnaround.median_us),
        p90: duration_us(turnaround.p90_us),
        services,
        ingest,
        label_sources,
        hosts,
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_labels_are_summed_per_source() {
        let metrics = "# HELP x\n\
            atelier_appview_labels_rejected_total{source=\"did:plc:a\",reason=\"bad_signature\"} 2\n\
            atelier_appview_labels_rejected_total{source=\"did:plc:a\",reason=\"invalid\"} 3\n\
            atelier_appview_labels_rejected_total{source=\"did:plc:b\",reason=\"invalid\"} 7\n";
        assert_eq!(rejected_for(metrics, "did:plc:a"), 5);
        assert_eq!(rejected_for(metrics, "did:plc:b"), 7);
        assert_eq!(rejected_for(metrics, "did:plc:c"), 0);
        assert_eq!(duration_us(None), "–");
    }
}
