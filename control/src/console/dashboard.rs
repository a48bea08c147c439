//! `GET /`: the moderation console's dashboard: queue sizes, moderation turnaround (median
//! and 90th percentile from first report to decision, last 30 days), the health of every
//! service `up` runs, the AppView's ingest position and label sources (status, lag behind
//! our labeler, labels refused), the relay's upstream hosts, and two panels from the
//! AppView's `/metrics`: OAuth sign-in (started, completed, errors by kind, error rate,
//! abandoned) and publish to visibility (median and 90th percentile of
//! `atelier_appview_visibility_seconds`, publishes by kind and outcome, publish time).
//!
//! Figures from other services are read live from their own endpoints (`_health`,
//! `/metrics`, `listHosts`) with a short timeout each, all at once; a service that does not
//! answer shows as down rather than holding up the page, and a panel whose figures cannot
//! be read says so in plain words. `/metrics` is read with [`prometheus`].

mod prometheus;

use std::time::Duration;

use askama::Template;
use axum::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::pages::ModerationPages;
use crate::admin::{Authed, Permission, Shell, human_duration, render};
use crate::moderation::Turnaround;
use prometheus::{Histogram, Metrics};

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
    signin: SignInPanel,
    publishing: PublishPanel,
}

/// What the dashboard learned of the AppView's `/metrics`.
#[derive(Debug)]
enum AppViewMetrics {
    /// No service named `appview` is probed.
    NotConfigured,
    /// The AppView did not answer its health check.
    Down,
    /// It is up, but `/metrics` did not answer with a page.
    Unreadable,
    /// The page, parsed.
    Read(Metrics),
}

impl AppViewMetrics {
    /// The metrics, or the sentence saying why there are none.
    fn get(&self) -> Result<&Metrics, &'static str> {
        match self {
            AppViewMetrics::NotConfigured => Err("No AppView is configured."),
            AppViewMetrics::Down => Err("The AppView is not answering, so there are no figures."),
            AppViewMetrics::Unreadable => Err("The AppView's metrics could not be read just now."),
            AppViewMetrics::Read(metrics) => Ok(metrics),
        }
    }
}

/// The OAuth sign-in panel.
#[derive(Debug, Default, PartialEq)]
struct SignInPanel {
    /// Why there are no figures (the AppView down, sign-in off), in plain words.
    note: Option<String>,
    started: u64,
    completed: u64,
    abandoned: u64,
    /// Errors, all kinds.
    errors: u64,
    /// The kinds that happened, most first.
    by_kind: Vec<(String, u64)>,
    /// Errors per started sign-in, as a percentage, or "no sign-ins yet".
    error_rate: String,
}

/// The publish-to-visibility panel.
#[derive(Debug, Default, PartialEq)]
struct PublishPanel {
    /// Why there are no figures (the AppView down), in plain words.
    note: Option<String>,
    /// Commits indexed, median and 90th percentile of publish to visibility (or "none
    /// yet").
    visibility: String,
    /// `atelier_appview_publish_total` as (kind, outcome, count).
    publishes: Vec<(String, String, u64)>,
    /// Publishes timed, median and 90th percentile of `atelier_appview_publish_seconds`
    /// (or "none yet").
    publish_time: String,
}

const STARTED: &str = "atelier_appview_oauth_started_total";
const COMPLETED: &str = "atelier_appview_oauth_completed_total";
const ABANDONED: &str = "atelier_appview_oauth_abandoned_total";
const ERRORS: &str = "atelier_appview_oauth_errors_total";
const VISIBILITY: &str = "atelier_appview_visibility_seconds";
const PUBLISHES: &str = "atelier_appview_publish_total";
const PUBLISH_TIME: &str = "atelier_appview_publish_seconds";

/// A non-negative count read as a float.
fn count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

/// The sign-in panel from the AppView's metrics.
fn signin_panel(metrics: &AppViewMetrics) -> SignInPanel {
    let metrics = match metrics.get() {
        Ok(metrics) => metrics,
        Err(why) => {
            return SignInPanel {
                note: Some(why.to_owned()),
                ..SignInPanel::default()
            };
        }
    };
    if !metrics.has(STARTED) {
        return SignInPanel {
            note: Some("Sign-in is not enabled on the AppView.".to_owned()),
            ..SignInPanel::default()
        };
    }
    let read = |name| count(metrics.sum(name).unwrap_or(0.0));
    let mut by_kind: Vec<(String, u64)> = Vec::new();
    for sample in metrics.series(ERRORS) {
        let n = count(sample.value);
        let kind = sample.label("kind").unwrap_or("other");
        if n == 0 {
            continue;
        }
        match by_kind.iter_mut().find(|(k, _)| k == kind) {
            Some((_, total)) => *total += n,
            None => by_kind.push((kind.to_owned(), n)),
        }
    }
    by_kind.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let started = read(STARTED);
    let errors = by_kind.iter().map(|(_, n)| n).sum();
    SignInPanel {
        note: None,
        started,
        completed: read(COMPLETED),
        abandoned: read(ABANDONED),
        errors,
        by_kind,
        error_rate: if started == 0 {
            "no sign-ins yet".to_owned()
        } else {
            format!("{:.1}%", errors as f64 * 100.0 / started as f64)
        },
    }
}

/// Seconds in words for latencies: milliseconds under a second, else seconds or minutes
/// with one decimal.
fn seconds(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        "–".to_owned()
    } else if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        format!("{:.1} min", secs / 60.0)
    }
}

/// "N timed: median X, 90th percentile Y", or "none yet".
fn latency(histogram: Option<Histogram>, what: &str) -> String {
    let Some(h) = histogram else {
        return "none yet".to_owned();
    };
    match (h.quantile(0.5), h.quantile(0.9)) {
        (Some(median), Some(p90)) => format!(
            "{} {what}: median {}, 90th percentile {}",
            count(h.count),
            seconds(median),
            seconds(p90)
        ),
        _ => "none yet".to_owned(),
    }
}

/// The publish-to-visibility panel from the AppView's metrics.
fn publish_panel(metrics: &AppViewMetrics) -> PublishPanel {
    let metrics = match metrics.get() {
        Ok(metrics) => metrics,
        Err(why) => {
            return PublishPanel {
                note: Some(why.to_owned()),
                ..PublishPanel::default()
            };
        }
    };
    let mut publishes: Vec<(String, String, u64)> = metrics
        .series(PUBLISHES)
        .map(|s| {
            (
                s.label("kind").unwrap_or("").to_owned(),
                s.label("outcome").unwrap_or("").to_owned(),
                count(s.value),
            )
        })
        .collect();
    publishes.sort();
    PublishPanel {
        note: None,
        visibility: latency(metrics.histogram(VISIBILITY), "commits indexed"),
        publishes,
        publish_time: latency(metrics.histogram(PUBLISH_TIME), "publishes timed"),
    }
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
    if !response.status().is_success() {
        return None;
    }
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
    let mut appview_metrics = AppViewMetrics::NotConfigured;
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
            ("appview", None) => appview_metrics = AppViewMetrics::Down,
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
                let text = get_text(http, &format!("{}/metrics", probe.url)).await;
                appview_metrics = match &text {
                    Some(text) => AppViewMetrics::Read(Metrics::parse(text)),
                    None => AppViewMetrics::Unreadable,
                };
                let metrics = text.unwrap_or_default();
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
        signin: signin_panel(&appview_metrics),
        publishing: publish_panel(&appview_metrics),
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

    fn read(text: &str) -> AppViewMetrics {
        AppViewMetrics::Read(Metrics::parse(text))
    }

    #[test]
    fn signin_panel_figures() {
        let panel = signin_panel(&read(
            "atelier_appview_oauth_started_total 8\n\
             atelier_appview_oauth_completed_total 5\n\
             atelier_appview_oauth_abandoned_total 2\n\
             atelier_appview_oauth_errors_total{kind=\"unknown_handle\"} 1\n\
             atelier_appview_oauth_errors_total{kind=\"denied\"} 0\n\
             atelier_appview_oauth_errors_total{kind=\"csrf\"} 2\n",
        ));
        assert_eq!(
            panel,
            SignInPanel {
                note: None,
                started: 8,
                completed: 5,
                abandoned: 2,
                errors: 3,
                by_kind: vec![("csrf".to_owned(), 2), ("unknown_handle".to_owned(), 1)],
                error_rate: "37.5%".to_owned(),
            }
        );
        let idle = signin_panel(&read("atelier_appview_oauth_started_total 0\n"));
        assert_eq!(idle.error_rate, "no sign-ins yet");
        let off = signin_panel(&read("atelier_appview_events_total 3\n"));
        assert_eq!(
            off.note.as_deref(),
            Some("Sign-in is not enabled on the AppView.")
        );
    }

    #[test]
    fn panels_say_why_there_are_no_figures() {
        let cases = [
            (AppViewMetrics::NotConfigured, "No AppView is configured."),
            (
                AppViewMetrics::Down,
                "The AppView is not answering, so there are no figures.",
            ),
            (
                AppViewMetrics::Unreadable,
                "The AppView's metrics could not be read just now.",
            ),
        ];
        for (metrics, want) in cases {
            assert_eq!(signin_panel(&metrics).note.as_deref(), Some(want));
            assert_eq!(publish_panel(&metrics).note.as_deref(), Some(want));
        }
    }

    #[test]
    fn publish_panel_figures() {
        let panel = publish_panel(&read(
            "atelier_appview_visibility_seconds_bucket{le=\"0.1\"} 2\n\
             atelier_appview_visibility_seconds_bucket{le=\"0.5\"} 6\n\
             atelier_appview_visibility_seconds_bucket{le=\"1\"} 9\n\
             atelier_appview_visibility_seconds_bucket{le=\"+Inf\"} 10\n\
             atelier_appview_visibility_seconds_sum 7.5\n\
             atelier_appview_visibility_seconds_count 10\n\
             atelier_appview_publish_total{kind=\"painting\",outcome=\"ok\"} 4\n\
             atelier_appview_publish_total{kind=\"mood\",outcome=\"blocked\"} 1\n",
        ));
        assert_eq!(
            panel,
            PublishPanel {
                note: None,
                visibility: "10 commits indexed: median 400 ms, 90th percentile 1.0 s".to_owned(),
                publishes: vec![
                    ("mood".to_owned(), "blocked".to_owned(), 1),
                    ("painting".to_owned(), "ok".to_owned(), 4),
                ],
                publish_time: "none yet".to_owned(),
            }
        );
        let empty = publish_panel(&read(
            "atelier_appview_visibility_seconds_bucket{le=\"+Inf\"} 0\n",
        ));
        assert_eq!(empty.visibility, "none yet");
        assert!(empty.publishes.is_empty());
    }

    #[test]
    fn seconds_in_words() {
        let cases = [
            (0.0004, "0 ms"),
            (0.4, "400 ms"),
            (1.0, "1.0 s"),
            (12.34, "12.3 s"),
            (90.0, "1.5 min"),
            (f64::NAN, "–"),
            (-1.0, "–"),
        ];
        for (secs, want) in cases {
            assert_eq!(seconds(secs), want, "{secs}");
        }
    }
}
