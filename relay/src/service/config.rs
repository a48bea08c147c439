//! The relay's configuration: the `relay:` section of `atelier.yaml`, or the whole file given
//! to `atelier relay --config`. One validated struct; [`RelayConfig::check`] names the key
//! that is wrong.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::eventlog::{FsyncPolicy, LogConfig, Retention};
use crate::filter::FilterRules;

/// The namespace relay's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Address the relay's HTTP and WebSocket server listens on.
    pub listen: SocketAddr,
    /// Directory holding the event log (`log/`) and the relay's state database
    /// (`relay.sqlite`: hosts, cursors, bans, known actors).
    pub data_dir: PathBuf,
    /// Upstreams followed from the start: relays or PDS hosts serving `subscribeRepos`.
    pub upstreams: Vec<UpstreamConfig>,
    /// Which PDS hosts may ask to be followed through `com.atproto.sync.requestCrawl`.
    pub crawl: CrawlPolicy,
    /// Which events are re-served (changeable at run time through the admin API).
    pub filter: FilterRules,
    /// The durable event log both endpoints replay from.
    pub log: LogSettings,
    /// Per-host ingest limits, applied to PDS hosts (not to upstream relays).
    pub limits: HostLimits,
    /// Downstream subscriber limits.
    pub subscribers: SubscriberLimits,
    /// Allow upstreams, DID documents and PDS hosts on loopback addresses (sandbox only:
    /// in production a loopback fetch is how an attacker reaches internal endpoints).
    pub allow_loopback: bool,
    /// PLC directory used to resolve `did:plc` identities.
    pub plc_url: String,
    /// Admin API bearer tokens, one per line (several allow rotation). Generated if missing.
    pub admin_tokens_file: PathBuf,
    /// zstd dictionary for Jetstream `compress=true` (the legacy Jetstream dictionary that
    /// `install.sh` fetches and checks). Empty: look under `ATELIER_HOME`.
    pub zstd_dictionary: Option<PathBuf>,
    /// Labelers whose account takedowns the relay honours: a `!takedown` or `!suspend`
    /// label on an account DID takes the account down (its events are refused and an
    /// `#account` event with status `takendown` is emitted); the label's negation lifts it.
    pub labelers: Vec<LabelerConfig>,
}

/// A labeler the relay follows (`com.atproto.label.subscribeLabels`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelerConfig {
    /// The labeler's DID; its DID document names the key labels are checked against.
    pub did: String,
    /// The labeler's base URL (`https://host`); empty: the DID document's
    /// `#atproto_labeler` service endpoint.
    #[serde(default)]
    pub url: Option<String>,
}

impl LabelerConfig {
    /// The DID's syntax and the URL's scheme; the error names the field (`did`, `url`).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !crate::lexicons::syntax::is_valid_did(&self.did) {
            return Err(("did", format!("{:?} is not a DID", self.did)));
        }
        if let Some(url) = &self.url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(u) => {
                    return Err((
                        "url",
                        format!("scheme {:?} is not http or https", u.scheme()),
                    ));
                }
                Err(e) => return Err(("url", format!("not a URL: {e}"))),
            }
        }
        Ok(())
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2480)),
            data_dir: PathBuf::from("relay-data"),
            upstreams: Vec::new(),
            crawl: CrawlPolicy::default(),
            filter: FilterRules::default(),
            log: LogSettings::default(),
            limits: HostLimits::default(),
            subscribers: SubscriberLimits::default(),
            allow_loopback: false,
            plc_url: "https://plc.directory".to_owned(),
            admin_tokens_file: PathBuf::from("relay-data/admin_tokens"),
            zstd_dictionary: None,
            labelers: Vec::new(),
        }
    }
}

/// One upstream followed from the start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `wss://host` or `ws://host:port` (the `subscribeRepos` path is added when missing).
    pub url: String,
    /// `relay` (events for many PDS hosts) or `pds` (events only for accounts it hosts; the
    /// relay checks each account's DID document names this host).
    #[serde(default)]
    pub kind: UpstreamKind,
    /// Skip signature and MST checks for this upstream. Only for an upstream you run.
    #[serde(default)]
    pub trusted: bool,
}

/// What an upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// A relay: carries many hosts' events; host limits do not apply.
    Relay,
    /// A PDS: carries only its own accounts' events.
    #[default]
    Pds,
}

impl UpstreamKind {
    /// `relay` or `pds`.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Relay => "relay",
            UpstreamKind::Pds => "pds",
        }
    }
}

/// Who may be crawled on request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CrawlPolicy {
    /// `closed` (refuse all requests), `allowlist` (only hosts in `allow`), or `open`
    /// (any public host, up to `max_hosts` and `new_hosts_per_day`).
    pub mode: CrawlMode,
    /// Hostnames (optionally with `:port`) accepted in `allowlist` mode.
    pub allow: Vec<String>,
    /// The most hosts followed in total (configured upstreams included).
    pub max_hosts: u32,
    /// The most hosts added through `requestCrawl` per day in `open` mode.
    pub new_hosts_per_day: u32,
}

impl Default for CrawlPolicy {
    fn default() -> Self {
        CrawlPolicy {
            mode: CrawlMode::Allowlist,
            allow: Vec::new(),
            max_hosts: 1000,
            new_hosts_per_day: 50,
        }
    }
}

/// See [`CrawlPolicy::mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CrawlMode {
    /// No host is added by request.
    Closed,
    /// Only listed hosts are added by request.
    Allowlist,
    /// Any host passing the SSRF guard, within the limits.
    Open,
}

/// Event log settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `every_append` (an acknowledged event survives power loss), `interval` (at most
    /// `fsync_interval_ms` of events lost on power loss) or `never` (the OS decides; a
    /// process crash still loses nothing).
    pub fsync: FsyncMode,
    /// Milliseconds between syncs under `fsync: interval`.
    pub fsync_interval_ms: u64,
    /// Drop events older than this many hours (0: keep by age forever).
    pub retention_hours: u64,
    /// Drop the oldest events while the log is larger than this many megabytes (0: no cap).
    pub retention_mb: u64,
    /// Segment file size in megabytes.
    pub segment_mb: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            fsync: FsyncMode::Interval,
            fsync_interval_ms: 100,
            retention_hours: 72,
            retention_mb: 0,
            segment_mb: 128,
        }
    }
}

/// See [`LogSettings::fsync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    /// Sync before acknowledging each event.
    EveryAppend,
    /// Sync on an interval.
    Interval,
    /// Never sync explicitly.
    Never,
}

impl LogSettings {
    /// The event log configuration these settings describe.
    pub fn log_config(&self) -> LogConfig {
        let fsync = match self.fsync {
            FsyncMode::EveryAppend => FsyncPolicy::EveryAppend,
            FsyncMode::Interval => {
                FsyncPolicy::Interval(Duration::from_millis(self.fsync_interval_ms))
            }
            FsyncMode::Never => FsyncPolicy::Never,
        };
        let hours = |h: u64| Duration::from_secs(h.saturating_mul(3600));
        LogConfig {
            segment_bytes: self.segment_mb.max(1) << 20,
            fsync,
            retention: Retention {
                max_age: (self.retention_hours > 0).then(|| hours(self.retention_hours)),
                max_total_bytes: (self.retention_mb > 0).then_some(self.retention_mb << 20),
            },
            ..LogConfig::default()
        }
    }
}

/// Per-host ingest limits (the reference relay's baseline by default). Events over a limit
/// are dropped and counted (`rate_limited`); accounts over the cap are dropped and counted
/// (`account_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HostLimits {
    /// Events per second per host.
    pub per_second: u64,
    /// Events per hour per host.
    pub per_hour: u64,
    /// Events per day per host.
    pub per_day: u64,
    /// Distinct accounts accepted from one host.
    pub accounts_per_host: u64,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            per_second: 50,
            per_hour: 2_500,
            per_day: 20_000,
            accounts_per_host: 100,
        }
    }
}

/// Downstream subscriber limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriberLimits {
    /// The most simultaneous subscribers over both endpoints.
    pub max: usize,
    /// Live events buffered per subscriber; one that falls further behind is dropped with
    /// `ConsumerTooSlow`.
    pub buffer_events: usize,
    /// Seconds a single WebSocket send may block before the subscriber is dropped.
    pub send_timeout_secs: u64,
    /// Seconds between server pings.
    pub ping_secs: u64,
}

impl Default for SubscriberLimits {
    fn default() -> Self {
        SubscriberLimits {
            max: 5_000,
            buffer_events: 4_096,
            send_timeout_secs: 10,
            ping_secs: 30,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("relay.{key}: {reason}")]
pub struct ConfigError {
    /// The key path under `relay`.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl RelayConfig {
    /// Semantic checks that serde cannot express; the error names the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| {
            Err(ConfigError {
                key: key.to_owned(),
                reason,
            })
        };
        for (i, up) in self.upstreams.iter().enumerate() {
            if let Err(e) = super::hosts::upstream_url(&up.url) {
                return bad(&format!("upstreams[{i}].url"), e);
            }
        }
        if let Err(e) = self.filter.check() {
            return bad("filter.collections", e.to_string());
        }
        if self.log.fsync == FsyncMode::Interval && self.log.fsync_interval_ms == 0 {
            return bad(
                "log.fsync_interval_ms",
                "must be more than 0 with fsync: interval".into(),
            );
        }
        if self.log.segment_mb == 0 || self.log.segment_mb > 4096 {
            return bad("log.segment_mb", "must be between 1 and 4096".into());
        }
        for (key, v) in [
            ("limits.per_second", self.limits.per_second),
            ("limits.per_hour", self.limits.per_hour),
            ("limits.per_day", self.limits.per_day),
            ("limits.accounts_per_host", self.limits.accounts_per_host),
        ] {
            if v == 0 {
                return bad(key, "must be more than 0".into());
            }
        }
        if self.subscribers.max == 0 {
            return bad("subscribers.max", "must be more than 0".into());
        }
        if self.subscribers.buffer_events < 16 {
            return bad("subscribers.buffer_events", "must be at least 16".into());
        }
        if self.subscribers.send_timeout_secs == 0 {
            return bad(
                "subscribers.send_timeout_secs",
                "must be more than 0".into(),
            );
        }
        if self.subscribers.ping_secs == 0 {
            return bad("subscribers.ping_secs", "must be more than 0".into());
        }
        if let Err(e) = url::Url::parse(&self.plc_url) {
            return bad("plc_url", format!("not a URL: {e}"));
        }
        for (i, host) in self.crawl.allow.iter().enumerate() {
            if let Err(e) = super::hosts::normalize_host(host) {
                return bad(&format!("crawl.allow[{i}]"), e);
            }
        }
        for (i, labeler) in self.labelers.iter().enumerate() {
            if let Err((field, reason)) = labeler.check() {
                return bad(&format!("labelers[{i}].{field}"), reason);
            }
        }
        Ok(())
    }
}
