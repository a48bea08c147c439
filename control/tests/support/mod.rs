//! What the control plane's integration tests share.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub(crate) mod agent;
pub(crate) mod browser;

/// The admin console's settings as the tests run it: data in `dir`, one bootstrap `admin`
/// (role admin), cookies without `Secure` (plain http on loopback).
pub(crate) fn loopback_admin(dir: &std::path::Path) -> atelier_control::admin::AdminServiceConfig {
    let mut admin = atelier_control::admin::AdminServiceConfig::new(dir.to_owned());
    admin.bootstrap = vec![atelier_control::config::BootstrapUser {
        name: "admin".to_owned(),
        role: atelier_control::config::Role::Admin,
    }];
    admin.secure_cookies = false;
    admin
}
