//! The semantic checks serde cannot express: each failure names the key path that is wrong
//! (the loader adds the line when the key is in the file).

use std::net::SocketAddr;
use std::path::Path;

use super::schema::{AtelierConfig, Backend, PdsImplementation, Profile, SourceKind, StoreKind};
use super::secret::{SecretError, check_secret_file, read_secret};

/// A configuration that parses but cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct CheckError {
    /// The key path (`services.pds.port`).
    pub key: String,
    /// What is wrong, and how to fix it when that is not obvious.
    pub reason: String,
}

fn bad<T>(key: &str, reason: impl Into<String>) -> Result<T, CheckError> {
    Err(CheckError {
        key: key.to_owned(),
        reason: reason.into(),
    })
}

impl AtelierConfig {
    /// Checks what serde cannot; relative file paths are taken from `base_dir` (the directory
    /// holding `atelier.yaml`). Stops at the first problem.
    pub fn check(&self, base_dir: &Path) -> Result<(), CheckError> {
        self.check_hostname()?;
        self.check_profile()?;
        self.check_tls(base_dir)?;
        self.check_pds(base_dir)?;
        self.check_store(base_dir)?;
        self.check_admin()?;
        self.check_signin()?;
        for (i, labeler) in self.services.appview.labelers.iter().enumerate() {
            labeler.check().map_err(|(field, reason)| CheckError {
                key: format!("services.appview.labelers[{i}].{field}"),
                reason,
            })?;
        }
        if let Some(relay) = &self.services.relay {
            relay.check().map_err(|e| CheckError {
                key: format!("services.relay.{}", e.key),
                reason: e.reason,
            })?;
        }
        self.check_ports()?;
        let secrets_dir = super::secrets::secrets_dir(&self.data_dir_in(base_dir));
        super::secrets::audit(&secrets_dir).map_err(|e| CheckError {
            key: "data_dir".to_owned(),
            reason: e.to_string(),
        })?;
        Ok(())
    }

    fn check_hostname(&self) -> Result<(), CheckError> {
        if let Err(reason) = check_dns_name(&self.hostname) {
            return bad("hostname", format!("{:?} {reason}", self.hostname));
        }
        let host = self.hostname.to_ascii_lowercase();
        if self.profile == Profile::Production
            && (host == "localhost" || host.ends_with(".localhost") || !host.contains('.'))
        {
            return bad(
                "hostname",
                format!(
                    "{:?} is not a public hostname; the production profile needs one (e.g. atelier.example.com)",
                    self.hostname
                ),
            );
        }
        Ok(())
    }

    fn check_profile(&self) -> Result<(), CheckError> {
        if self.profile != Profile::Production {
            return Ok(());
        }
        if self.services.plc.is_some() {
            return bad(
                "services.plc",
                "only the sandbox profile runs a local PLC directory; remove this section (production uses plc.directory)",
            );
        }
        if let Some(relay) = &self.services.relay
            && relay.allow_loopback
        {
            return bad(
                "services.relay.allow_loopback",
                "must be false in production (a loopback fetch reaches internal endpoints)",
            );
        }
        let tls = &self.tls;
        if tls.cert_file.is_none() && tls.key_file.is_none() && !tls.behind_proxy {
            return bad(
                "tls",
                "the production profile needs TLS: set tls.cert_file and tls.key_file, or tls.behind_proxy: true",
            );
        }
        Ok(())
    }

    fn check_tls(&self, base_dir: &Path) -> Result<(), CheckError> {
        let tls = &self.tls;
        match (&tls.cert_file, &tls.key_file) {
            (Some(_), None) => return bad("tls.key_file", "required with tls.cert_file"),
            (None, Some(_)) => return bad("tls.cert_file", "required with tls.key_file"),
            (Some(cert), Some(key)) => {
                if tls.behind_proxy {
                    return bad(
                        "tls.behind_proxy",
                        "set either certificate files or behind_proxy, not both",
                    );
                }
                let cert = base_dir.join(cert);
                if let Err(e) = std::fs::metadata(&cert) {
                    return bad("tls.cert_file", format!("{}: {e}", cert.display()));
                }
                check_secret_file(&base_dir.join(key))
                    .or_else(|e| bad("tls.key_file", e.to_string()))?;
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn check_pds(&self, base_dir: &Path) -> Result<(), CheckError> {
        let pds = &self.services.pds;
        check_secret_pair(
            "services.pds.smtp_url",
            pds.smtp_url.is_some(),
            pds.smtp_url_file.as_deref(),
            base_dir,
        )?;
        if pds.blob_limit_bytes == 0 {
            return bad("services.pds.blob_limit_bytes", "must be more than 0");
        }
        for (i, crawler) in pds.crawlers.iter().enumerate() {
            let ok = url::Url::parse(crawler)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .unwrap_or(false);
            if !ok {
                return bad(
                    &format!("services.pds.crawlers[{i}]"),
                    format!("{crawler:?} is not an http(s) URL"),
                );
            }
        }
        if pds.implementation == PdsImplementation::Rsky {
            match self.backend {
                Backend::Process if pds.rsky_binary.is_none() => {
                    return bad(
                        "services.pds.rsky_binary",
                        "implementation rsky with the process backend needs the path of an rsky-pds binary",
                    );
                }
                Backend::Docker if pds.rsky_image.is_none() => {
                    return bad(
                        "services.pds.rsky_image",
                        "implementation rsky with the docker backend needs an rsky-pds image",
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_signin(&self) -> Result<(), CheckError> {
        let appview = &self.services.appview;
        if appview.signin.enabled && self.profile == Profile::Production {
            return bad(
                "services.appview.signin.enabled",
                "sign-in in production needs the confidential web client, which is not built \
                 yet; set it to false (the loopback client is for the sandbox only)",
            );
        }
        if let Some(url) = &appview.signin.public_url {
            let parsed = url::Url::parse(url);
            let loopback = parsed.as_ref().is_ok_and(|u| {
                u.scheme() == "http"
                    && matches!(u.host_str(), Some("127.0.0.1" | "[::1]"))
                    && u.path() == "/"
            });
            if !loopback {
                return bad(
                    "services.appview.signin.public_url",
                    format!(
                        "the loopback client needs http://127.0.0.1:PORT or http://[::1]:PORT, \
                         got {url:?}"
                    ),
                );
            }
        }
        if let Some(scope) = &appview.signin.scope
            && !scope.split(' ').any(|s| s == "atproto")
        {
            return bad("services.appview.signin.scope", "must include \"atproto\"");
        }
        let publish = &appview.publish;
        if publish.enabled && !appview.signin.enabled {
            return bad(
                "services.appview.publish.enabled",
                "publishing needs sign-in: set services.appview.signin.enabled too, or this to false",
            );
        }
        if publish.max_image_bytes == 0 {
            return bad(
                "services.appview.publish.max_image_bytes",
                "must be more than 0",
            );
        }
        if publish.max_video_bytes == 0 {
            return bad(
                "services.appview.publish.max_video_bytes",
                "must be more than 0",
            );
        }
        let pds_limit = self.services.pds.blob_limit_bytes;
        for (key, limit) in [
            (
                "services.appview.publish.max_image_bytes",
                publish.max_image_bytes,
            ),
            (
                "services.appview.publish.max_video_bytes",
                publish.max_video_bytes,
            ),
        ] {
            if limit > pds_limit {
                return bad(
                    key,
                    format!(
                        "{limit} is more than the PDS accepts (services.pds.blob_limit_bytes: {pds_limit})"
                    ),
                );
            }
        }
        Ok(())
    }

    fn check_store(&self, base_dir: &Path) -> Result<(), CheckError> {
        if let Some(source) = &self.services.appview.source {
            let url = source.url.as_str();
            let parsed = url::Url::parse(url);
            if !matches!(parsed.as_ref().map(url::Url::scheme), Ok("ws" | "wss"))
                || parsed.as_ref().is_ok_and(|u| u.host_str().is_none())
            {
                return bad(
                    "services.appview.source.url",
                    format!(
                        "must be a ws:// or wss:// subscribeRepos URL such as \
                         wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos, got {url:?}"
                    ),
                );
            }
            if source.kind == SourceKind::Jetstream && !source.trusted {
                return bad(
                    "services.appview.source.trusted",
                    "a jetstream source carries no signatures or proofs, so it cannot be \
                     verified: set `trusted: true` if you run it or trust its operator, or \
                     follow a subscribeRepos URL instead"
                        .to_owned(),
                );
            }
        }
        let store = &self.services.appview.store;
        let key = "services.appview.store.url";
        check_secret_pair(
            key,
            store.url.is_some(),
            store.url_file.as_deref(),
            base_dir,
        )?;
        if store.kind != StoreKind::Postgres {
            return Ok(());
        }
        let url = match store.postgres_url(base_dir) {
            Ok(Some(url)) => url,
            Ok(None) => {
                return bad(
                    key,
                    "kind: postgres needs url or url_file (postgres://user:password@host/db)",
                );
            }
            Err(e) => return bad("services.appview.store.url_file", e.to_string()),
        };
        let url = url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            // The value is a secret: name its scheme only.
            let scheme = url.split_once("://").map_or("(none)", |(s, _)| s);
            let key = if store.url.is_some() {
                key
            } else {
                "services.appview.store.url_file"
            };
            return bad(
                key,
                format!("must be a postgres:// or postgresql:// URL (the scheme is {scheme})"),
            );
        }
        Ok(())
    }

    fn check_admin(&self) -> Result<(), CheckError> {
        let users = &self.services.admin.bootstrap;
        for (i, user) in users.iter().enumerate() {
            let name = &user.name;
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return bad(
                    &format!("services.admin.bootstrap[{i}].name"),
                    format!("{name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"),
                );
            }
            if users[..i].iter().any(|u| &u.name == name) {
                return bad(
                    &format!("services.admin.bootstrap[{i}].name"),
                    format!("{name:?} is listed twice"),
                );
            }
        }
        Ok(())
    }

    fn check_ports(&self) -> Result<(), CheckError> {
        let mut listeners: Vec<(&str, SocketAddr)> = Vec::new();
        if let Some(plc) = self.plc() {
            listeners.push((
                "services.plc.port",
                SocketAddr::from(([127, 0, 0, 1], plc.port)),
            ));
        }
        listeners.push(("services.pds.port", self.services.pds.listen()));
        if let Some(relay) = &self.services.relay {
            listeners.push(("services.relay.listen", relay.listen));
        }
        listeners.push(("services.appview.port", self.services.appview.listen()));
        listeners.push(("services.admin.port", self.services.admin.listen()));
        for (i, (key, addr)) in listeners.iter().enumerate() {
            if addr.port() == 0 {
                return bad(key, "port 0 is not allowed: give a fixed port");
            }
            for (other_key, other) in &listeners[..i] {
                let overlap = addr.ip() == other.ip()
                    || addr.ip().is_unspecified()
                    || other.ip().is_unspecified();
                if overlap && addr.port() == other.port() {
                    return bad(
                        key,
                        format!("port {} is already used by {other_key}", addr.port()),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Refuses `x` with `x_file`, and a world-readable `x_file`.
fn check_secret_pair(
    key: &str,
    inline: bool,
    file: Option<&Path>,
    base_dir: &Path,
) -> Result<(), CheckError> {
    let file_key = format!("{key}_file");
    match read_secret(None, file, base_dir) {
        _ if inline && file.is_some() => bad(
            key,
            format!(
                "set both {key} and {file_key}; keep one (the value inline, or a file holding it)"
            ),
        ),
        Err(e @ (SecretError::WorldReadable { .. } | SecretError::Io { .. })) => {
            bad(&file_key, e.to_string())
        }
        Err(e) => bad(key, e.to_string()),
        Ok(_) => Ok(()),
    }
}

/// Why `name` is not a DNS name (labels of letters, digits and inner hyphens, at most 63
/// characters each, 253 in all).
fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > 253 {
        return Err("is longer than 253 characters");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; a hostname is needed");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label (two dots, or a dot at an end)");
        }
        if label.len() > 63 {
            return Err("has a label longer than 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("is not a DNS name: only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a label that starts or ends with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_dns_name;

    #[test]
    fn dns_names() {
        for good in ["localhost", "example.com", "a-b.example.co.uk", "x1.dev"] {
            assert_eq!(check_dns_name(good), Ok(()), "{good}");
        }
        for bad in [
            "", "a..b", "-a.com", "a-.com", "a_b.com", "a b", "10.0.0.1", "é.com",
        ] {
            assert!(check_dns_name(bad).is_err(), "{bad}");
        }
    }
}
