//! The admin console as moderators use it: the console's accounts and sessions
//! ([`crate::admin`]) with the moderation pages ([`pages`]) on top of the moderation back
//! end ([`crate::moderation`]), and beside them on the same listener the labeler's
//! `queryLabels`/`subscribeLabels` ([`crate::labeler`]) and `createReport`.
//!
//! - [`dashboard`]: queue sizes, turnaround, services' health, label sources, relay hosts.
//! - [`pages`]: queues, subject view, actions (one or bulk), audit log and export.
//! - [`preview`]: records and media fetched from their author's PDS for the subject view.
//! - [`service`]: all of it on one listener, `run(config, listener, shutdown)`.
//! - [`up`]: `atelier up`'s part: the labeler's identity in the sandbox, then the service.

pub mod dashboard;
pub mod pages;
pub mod preview;
pub mod service;
pub mod up;

pub use service::{ConsoleConfig, ConsoleError, admin_dir, run};
