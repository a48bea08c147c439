//! Counters for Prometheus `/metrics`, kept as atomics and rendered in the text format by
//! hand (a handful of families; a metrics framework would add more than it saves).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Relay-wide counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Events received from upstreams, by kind.
    events_in: Mutex<BTreeMap<&'static str, u64>>,
    /// Events appended to the log and fanned out, by kind.
    events_out: Mutex<BTreeMap<&'static str, u64>>,
    /// Events refused, by reason (verification labels, `rate_limited`, `account_limit`,
    /// `wrong_host`, `takendown`, `banned_host`).
    refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Events the namespace filter dropped.
    pub(crate) filtered: AtomicU64,
    /// Messages sent to subscribers.
    pub(crate) messages_sent: AtomicU64,
}

fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, key: &'static str) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key).or_default() += 1;
    }
}

fn snapshot(map: &Mutex<BTreeMap<&'static str, u64>>) -> BTreeMap<&'static str, u64> {
    map.lock().map(|m| m.clone()).unwrap_or_default()
}

impl Metrics {
    pub(crate) fn event_in(&self, kind: &'static str) {
        bump(&self.events_in, kind);
    }

    pub(crate) fn event_out(&self, kind: &'static str) {
        bump(&self.events_out, kind);
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        bump(&self.refused, reason);
    }
}

/// What a render needs besides the counters.
#[derive(Debug)]
pub(crate) struct Gauges {
    pub(crate) subscribers: usize,
    pub(crate) dropped_slow: u64,
    pub(crate) log_bytes: u64,
    pub(crate) log_segments: usize,
    pub(crate) log_latest_seq: u64,
    /// (host, connected, seconds since its last event, events in, refused by reason).
    pub(crate) hosts: Vec<HostGauge>,
    /// Label sync (account takedowns from labelers).
    pub(crate) labels: std::sync::Arc<crate::labels::LabelStats>,
}

/// One host's gauges.
#[derive(Debug)]
pub(crate) struct HostGauge {
    pub(crate) host: String,
    pub(crate) connected: bool,
    pub(crate) lag_seconds: f64,
    pub(crate) events: u64,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn labelled(out: &mut String, name: &str, label: &str, values: &BTreeMap<&'static str, u64>) {
    for (k, v) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape(k));
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of everything.
pub(crate) fn render(m: &Metrics, g: &Gauges) -> String {
    let mut out = String::with_capacity(2048);
    family(
        &mut out,
        "atelier_relay_events_in_total",
        "counter",
        "Events received from upstreams, by kind.",
    );
    labelled(
        &mut out,
        "atelier_relay_events_in_total",
        "kind",
        &snapshot(&m.events_in),
    );
    family(
        &mut out,
        "atelier_relay_events_out_total",
        "counter",
        "Events logged and fanned out, by kind.",
    );
    labelled(
        &mut out,
        "atelier_relay_events_out_total",
        "kind",
        &snapshot(&m.events_out),
    );
    family(
        &mut out,
        "atelier_relay_refused_total",
        "counter",
        "Events refused, by reason (verification failures, limits, bans, takedowns).",
    );
    labelled(
        &mut out,
        "atelier_relay_refused_total",
        "reason",
        &snapshot(&m.refused),
    );
    family(
        &mut out,
        "atelier_relay_filtered_total",
        "counter",
        "Events outside the namespace filter.",
    );
    let _ = writeln!(
        out,
        "atelier_relay_filtered_total {}",
        m.filtered.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "atelier_relay_messages_sent_total",
        "counter",
        "WebSocket messages sent to subscribers.",
    );
    let _ = writeln!(
        out,
        "atelier_relay_messages_sent_total {}",
        m.messages_sent.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "atelier_relay_subscribers",
        "gauge",
        "Connected subscribers.",
    );
    let _ = writeln!(out, "atelier_relay_subscribers {}", g.subscribers);
    family(
        &mut out,
        "atelier_relay_subscribers_dropped_total",
        "counter",
        "Subscribers dropped as too slow.",
    );
    let _ = writeln!(
        out,
        "atelier_relay_subscribers_dropped_total {}",
        g.dropped_slow
    );
    family(
        &mut out,
        "atelier_relay_log_bytes",
        "gauge",
        "Event log size on disk.",
    );
    let _ = writeln!(out, "atelier_relay_log_bytes {}", g.log_bytes);
    family(
        &mut out,
        "atelier_relay_log_segments",
        "gauge",
        "Event log segment files.",
    );
    let _ = writeln!(out, "atelier_relay_log_segments {}", g.log_segments);
    family(
        &mut out,
        "atelier_relay_log_latest_seq",
        "gauge",
        "The newest seq in the log.",
    );
    let _ = writeln!(out, "atelier_relay_log_latest_seq {}", g.log_latest_seq);
    family(
        &mut out,
        "atelier_relay_host_connected",
        "gauge",
        "Whether the upstream connection is open.",
    );
    for h in &g.hosts {
        let _ = writeln!(
            out,
            "atelier_relay_host_connected{{host=\"{}\"}} {}",
            escape(&h.host),
            u8::from(h.connected)
        );
    }
    family(
        &mut out,
        "atelier_relay_host_lag_seconds",
        "gauge",
        "Seconds since the upstream's last event (upstream time to receipt for the last event).",
    );
    for h in &g.hosts {
        let _ = writeln!(
            out,
            "atelier_relay_host_lag_seconds{{host=\"{}\"}} {:.3}",
            escape(&h.host),
            h.lag_seconds
        );
    }
    family(
        &mut out,
        "atelier_relay_host_events_total",
        "counter",
        "Events received per upstream host.",
    );
    for h in &g.hosts {
        let _ = writeln!(
            out,
            "atelier_relay_host_events_total{{host=\"{}\"}} {}",
            escape(&h.host),
            h.events
        );
    }
    render_labels(&mut out, &g.labels);
    out
}

/// Label sync's figures: per labeler connection state and cursor, labels refused.
fn render_labels(out: &mut String, stats: &crate::labels::LabelStats) {
    let sources = stats.sources();
    family(
        out,
        "atelier_relay_labeler_connected",
        "gauge",
        "Whether the labeler's subscribeLabels stream is open.",
    );
    for (did, s) in &sources {
        let _ = writeln!(
            out,
            "atelier_relay_labeler_connected{{labeler=\"{}\"}} {}",
            escape(did),
            u8::from(s.connected)
        );
    }
    family(
        out,
        "atelier_relay_labeler_cursor",
        "gauge",
        "The seq of the last label frame applied from the labeler.",
    );
    for (did, s) in &sources {
        let _ = writeln!(
            out,
            "atelier_relay_labeler_cursor{{labeler=\"{}\"}} {}",
            escape(did),
            s.cursor.unwrap_or(0)
        );
    }
    family(
        out,
        "atelier_relay_label_takedown_changes_total",
        "counter",
        "Account takedowns put in force or lifted by labels.",
    );
    let applied = stats.applied.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(out, "atelier_relay_label_takedown_changes_total {applied}");
    family(
        out,
        "atelier_relay_labels_rejected_total",
        "counter",
        "Labels refused, by labeler and reason (invalid, wrong_src, bad_signature).",
    );
    for ((did, reason), n) in stats.rejected() {
        let _ = writeln!(
            out,
            "atelier_relay_labels_rejected_total{{labeler=\"{}\",reason=\"{}\"}} {n}",
            escape(&did),
            escape(&reason)
        );
    }
}
