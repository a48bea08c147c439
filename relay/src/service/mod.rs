//! The namespace relay service: follows upstreams, verifies and filters their events,
//! appends what passes to the durable event log, and serves it as a filtered
//! `subscribeRepos` and as Jetstream JSON.

pub mod config;
pub(crate) mod hosts;

pub use config::{
    ConfigError, CrawlMode, CrawlPolicy, FsyncMode, HostLimits, LogSettings, RelayConfig,
    SubscriberLimits, UpstreamConfig, UpstreamKind,
};
