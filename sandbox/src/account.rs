//! A signed-in account on the sandbox PDS, with the few XRPC calls tests and demos need.
//!
//! This is deliberately a thin JSON client: the AppView's publishing pipeline has its own,
//! typed one. Requests send `validate: false` on record writes because the reference PDS
//! does not know AC's lexicons (Atelier validates them itself before publishing).

use serde::Deserialize;
use serde_json::{Value, json};

use crate::SandboxError;

/// An account created on the sandbox PDS, with its session tokens.
#[derive(Clone)]
pub struct Account {
    http: reqwest::Client,
    pds_url: String,
    /// The account's DID (`did:plc:...`, registered on the sandbox PLC).
    pub did: String,
    /// The account's handle, `{name}.test`.
    pub handle: String,
    /// The account's password (sandbox only).
    pub password: String,
    access_jwt: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens and the password stay out of Debug output.
        f.debug_struct("Account")
            .field("did", &self.did)
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// A blob as the PDS returns it from `uploadBlob`, ready to embed in a record.
#[derive(Debug, Clone, Deserialize)]
pub struct BlobRef {
    /// The blob object (`{"$type":"blob","ref":{"$link":..},"mimeType":..,"size":..}`).
    pub blob: Value,
}

/// The result of `createRecord`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreatedRecord {
    /// `at://did/collection/rkey`.
    pub uri: String,
    /// The record's CID.
    pub cid: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Session {
    did: String,
    handle: String,
    access_jwt: String,
}

#[derive(Deserialize)]
struct XrpcErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

impl Account {
    /// Creates an account with handle `{name}.test` on the PDS at `pds_url` (one this
    /// process did not start, such as `atelier up`'s) and returns a signed-in session.
    pub async fn create_on(pds_url: &str, name: &str) -> Result<Account, SandboxError> {
        Account::create(reqwest::Client::new(), pds_url, name).await
    }

    pub(crate) async fn create(
        http: reqwest::Client,
        pds_url: &str,
        name: &str,
    ) -> Result<Account, SandboxError> {
        let handle = format!("{name}.test");
        let password = format!("sandbox-{name}-password");
        let body = json!({
            "handle": handle,
            "email": format!("{name}@example.com"),
            "password": password,
        });
        let session: Session = send(
            &http,
            pds_url,
            "com.atproto.server.createAccount",
            None,
            Body::Json(&body),
        )
        .await?;
        Ok(Account {
            http,
            pds_url: pds_url.to_owned(),
            did: session.did,
            handle: session.handle,
            password,
            access_jwt: session.access_jwt,
        })
    }

    /// The access token (for tests that call XRPC methods this type does not wrap).
    pub fn access_jwt(&self) -> &str {
        &self.access_jwt
    }

    /// `com.atproto.repo.uploadBlob`.
    pub async fn upload_blob(&self, bytes: Vec<u8>, mime: &str) -> Result<BlobRef, SandboxError> {
        send(
            &self.http,
            &self.pds_url,
            "com.atproto.repo.uploadBlob",
            Some(&self.access_jwt),
            Body::Bytes(bytes, mime),
        )
        .await
    }

    /// `com.atproto.repo.createRecord` (unvalidated by the PDS; see the module docs).
    pub async fn create_record(
        &self,
        collection: &str,
        record: &Value,
    ) -> Result<CreatedRecord, SandboxError> {
        let body = json!({
            "repo": self.did,
            "collection": collection,
            "record": record,
            "validate": false,
        });
        self.call("com.atproto.repo.createRecord", &body).await
    }

    /// `com.atproto.repo.putRecord` (create or update at a known record key).
    pub async fn put_record(
        &self,
        collection: &str,
        rkey: &str,
        record: &Value,
    ) -> Result<CreatedRecord, SandboxError> {
        let body = json!({
            "repo": self.did,
            "collection": collection,
            "rkey": rkey,
            "record": record,
            "validate": false,
        });
        self.call("com.atproto.repo.putRecord", &body).await
    }

    /// `com.atproto.repo.deleteRecord`.
    pub async fn delete_record(&self, collection: &str, rkey: &str) -> Result<(), SandboxError> {
        let body = json!({ "repo": self.did, "collection": collection, "rkey": rkey });
        let _: Value = self.call("com.atproto.repo.deleteRecord", &body).await?;
        Ok(())
    }

    /// `com.atproto.repo.getRecord`: the record's `{uri, cid, value}`.
    pub async fn get_record(&self, collection: &str, rkey: &str) -> Result<Value, SandboxError> {
        let url = format!(
            "{}/xrpc/com.atproto.repo.getRecord?repo={}&collection={}&rkey={}",
            self.pds_url, self.did, collection, rkey
        );
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| SandboxError::Http {
                method: "com.atproto.repo.getRecord".into(),
                url: url.clone(),
                source: e,
            })?;
        decode("com.atproto.repo.getRecord", &url, resp).await
    }

    /// `com.atproto.repo.listRecords`: `(uri, cid)` of every record in `collection`, all
    /// pages.
    pub async fn list_records(&self, collection: &str) -> Result<Vec<CreatedRecord>, SandboxError> {
        let method = "com.atproto.repo.listRecords";
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/xrpc/{method}?repo={}&collection={collection}&limit=100",
                self.pds_url, self.did
            );
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let resp = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| SandboxError::Http {
                    method: method.into(),
                    url: url.clone(),
                    source: e,
                })?;
            let page: Value = decode(method, &url, resp).await?;
            let records = page["records"].as_array().cloned().unwrap_or_default();
            for r in &records {
                if let (Some(uri), Some(cid)) = (r["uri"].as_str(), r["cid"].as_str()) {
                    out.push(CreatedRecord {
                        uri: uri.to_owned(),
                        cid: cid.to_owned(),
                    });
                }
            }
            cursor = page["cursor"].as_str().map(str::to_owned);
            if records.is_empty() || cursor.is_none() {
                return Ok(out);
            }
        }
    }

    /// `com.atproto.server.getServiceAuth`: a token the PDS signs with the account's key
    /// for service `aud`, bound to method `lxm` when given (what a client sends another
    /// service as `Authorization: Bearer`).
    pub async fn service_auth(&self, aud: &str, lxm: Option<&str>) -> Result<String, SandboxError> {
        let method = "com.atproto.server.getServiceAuth";
        let mut url = format!("{}/xrpc/{method}?aud={}", self.pds_url, encode(aud));
        if let Some(lxm) = lxm {
            url.push_str(&format!("&lxm={}", encode(lxm)));
        }
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.access_jwt)
            .send()
            .await
            .map_err(|e| SandboxError::Http {
                method: method.into(),
                url: url.clone(),
                source: e,
            })?;
        let body: Value = decode(method, &url, resp).await?;
        body["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SandboxError::Xrpc {
                method: method.into(),
                status: 200,
                error: "NoToken".into(),
                message: format!("the answer has no token: {body}"),
            })
    }

    /// `com.atproto.sync.getBlob`: the blob's bytes.
    pub async fn get_blob(&self, cid: &str) -> Result<Vec<u8>, SandboxError> {
        let url = format!(
            "{}/xrpc/com.atproto.sync.getBlob?did={}&cid={}",
            self.pds_url, self.did, cid
        );
        let method = "com.atproto.sync.getBlob";
        let http_err = |e| SandboxError::Http {
            method: method.into(),
            url: url.clone(),
            source: e,
        };
        let resp = self.http.get(&url).send().await.map_err(http_err)?;
        if !resp.status().is_success() {
            return Err(xrpc_error(method, resp).await);
        }
        Ok(resp.bytes().await.map_err(http_err)?.to_vec())
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
    ) -> Result<T, SandboxError> {
        send(
            &self.http,
            &self.pds_url,
            method,
            Some(&self.access_jwt),
            Body::Json(body),
        )
        .await
    }
}

enum Body<'a> {
    Json(&'a Value),
    Bytes(Vec<u8>, &'a str),
}

async fn send<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    pds_url: &str,
    method: &str,
    token: Option<&str>,
    body: Body<'_>,
) -> Result<T, SandboxError> {
    let url = format!("{pds_url}/xrpc/{method}");
    let mut req = http.post(&url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req = match body {
        Body::Json(v) => req.json(v),
        Body::Bytes(bytes, mime) => req.header("content-type", mime).body(bytes),
    };
    let resp = req.send().await.map_err(|e| SandboxError::Http {
        method: method.into(),
        url: url.clone(),
        source: e,
    })?;
    decode(method, &url, resp).await
}

async fn decode<T: serde::de::DeserializeOwned>(
    method: &str,
    url: &str,
    resp: reqwest::Response,
) -> Result<T, SandboxError> {
    if !resp.status().is_success() {
        return Err(xrpc_error(method, resp).await);
    }
    resp.json().await.map_err(|e| SandboxError::Http {
        method: method.into(),
        url: url.into(),
        source: e,
    })
}

async fn xrpc_error(method: &str, resp: reqwest::Response) -> SandboxError {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let body: XrpcErrorBody = serde_json::from_str(&text).unwrap_or(XrpcErrorBody {
        error: "Unknown".into(),
        message: text,
    });
    SandboxError::Xrpc {
        method: method.into(),
        status,
        error: body.error,
        message: body.message,
    }
}

/// Percent-encodes a query value (DIDs carry `:` and `#`).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
