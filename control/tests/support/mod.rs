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

/// The AppView's OAuth sign-in as the tests run it: `base` its address, the client asking
/// for `scope`, sessions and a private token key (mode 0600) under `dir`, the sandbox's PLC
/// and loopback allowed, and a DNS table in which `localhost` is loopback and each of
/// `accounts`' `.test` handles resolves through its `_atproto` TXT record.
pub(crate) fn loopback_oauth(
    dir: &std::path::Path,
    base: &str,
    scope: &str,
    sandbox: &atelier_sandbox::Sandbox,
    accounts: &[&atelier_sandbox::Account],
) -> atelier_appview::service::OAuthServiceConfig {
    use std::net::{IpAddr, Ipv4Addr};
    use std::os::unix::fs::PermissionsExt;

    let key_file = dir.join("oauth_token_key");
    std::fs::write(&key_file, "42".repeat(32)).expect("key file");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
        .expect("key file mode");
    let mut dns = atelier_appview::relay::sync::ssrf::StaticDns::new()
        .with_ip("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST));
    for account in accounts {
        dns = dns.with_txt(
            &format!("_atproto.{}", account.handle),
            &format!("did={}", account.did),
        );
    }
    let mut oauth = atelier_appview::service::OAuthServiceConfig::new(
        base,
        scope,
        dir.join("sessions.sqlite"),
        "k1",
        key_file,
    );
    oauth.plc_url = sandbox.plc_url().to_owned();
    oauth.allow_loopback = true;
    oauth.dns = Some(std::sync::Arc::new(dns));
    oauth
}
