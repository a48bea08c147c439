//! What the control plane's integration tests share.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub(crate) mod agent;
pub(crate) mod browser;
