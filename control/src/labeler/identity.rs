//! The labeler's identity: a `did:plc` account on the bundled PDS whose DID document also
//! names the labeler's `#atproto_label` key and its `#atproto_labeler` service, and the
//! `app.bsky.labeler.service` declaration record (AC's label values) in its repository.
//!
//! How the DID document is changed: the bundled PDS created the account and holds its PLC
//! rotation key (the operator's `plc_rotation_key` secret), so the control plane signs the
//! PLC update itself: it reads the DID's current state (`GET /DID/data`) and last
//! operation (`GET /DID/log/last`), builds the next `plc_operation` with the label key and
//! the labeler service added and `prev` set to the last operation's CID, signs the
//! DAG-CBOR of the unsigned operation (SHA-256, k256, low-S, base64url without padding, as
//! the PLC spec says) and posts it. Nothing changes when the document already says the
//! same, so running it at every start is safe.
//!
//! DAG-CBOR comes from `serde_ipld_dagcbor`, which writes map keys in DAG-CBOR order
//! whatever the source order; the CID is CIDv1, dag-cbor, sha2-256, base32.

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::key::SigningKey;

/// The DID document fragment of the label-signing key.
pub const LABEL_KEY_ID: &str = "atproto_label";
/// The DID document fragment of the labeler service.
pub const LABELER_SERVICE_ID: &str = "atproto_labeler";
/// The declaration record's collection (`rkey` is `self`).
pub const DECLARATION: &str = "app.bsky.labeler.service";

/// Why the identity could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// An HTTP request failed or was refused.
    #[error("{what}: {reason}")]
    Http {
        /// The request.
        what: String,
        /// What went wrong (status and body, or the transport error).
        reason: String,
    },
    /// The PLC answered something that is not a PLC operation or state.
    #[error("the PLC directory's answer for {did} is malformed: {reason}")]
    Malformed {
        /// The DID.
        did: String,
        /// What is wrong.
        reason: String,
    },
    /// The rotation key given is not one of the DID's rotation keys.
    #[error("the PDS rotation key ({key}) is not a rotation key of {did}; it cannot update it")]
    NotRotationKey {
        /// The DID.
        did: String,
        /// The key, as `did:key`.
        key: String,
    },
    /// DAG-CBOR encoding failed.
    #[error("encoding the PLC operation: {0}")]
    Encode(String),
}

/// One label value the labeler declares (`com.atproto.label.defs#labelValueDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelValue {
    /// The value (`lowercase-kebab`).
    pub identifier: &'static str,
    /// `inform`, `alert` or `none`.
    pub severity: &'static str,
    /// `content`, `media` or `none`.
    pub blurs: &'static str,
    /// English name shown to users.
    pub name: &'static str,
    /// English description shown to users.
    pub description: &'static str,
}

/// AC's label values: what moderators apply in the admin console beside the global
/// `!hide`, `!warn` and `!takedown`.
pub const AC_LABEL_VALUES: &[LabelValue] = &[
    LabelValue {
        identifier: "offensive-text",
        severity: "alert",
        blurs: "content",
        name: "Offensive text",
        description: "The text of this work (a mood, KidLisp source or title) is offensive.",
    },
    LabelValue {
        identifier: "sensitive-image",
        severity: "alert",
        blurs: "media",
        name: "Sensitive image",
        description: "This painting or tape shows something some people would rather not see.",
    },
    LabelValue {
        identifier: "spam",
        severity: "inform",
        blurs: "none",
        name: "Spam",
        description: "Repeated, unsolicited or automated posting.",
    },
    LabelValue {
        identifier: "misleading",
        severity: "inform",
        blurs: "none",
        name: "Misleading",
        description: "This work claims to be something it is not (for example a copied piece).",
    },
];

/// The global values the labeler may also apply.
pub const GLOBAL_VALUES: &[&str] = &["!hide", "!warn", "!takedown"];

/// The declaration record (`app.bsky.labeler.service`) for `values`.
pub fn declaration(values: &[LabelValue], created_at: &str) -> Value {
    let identifiers: Vec<&str> = GLOBAL_VALUES
        .iter()
        .copied()
        .chain(values.iter().map(|v| v.identifier))
        .collect();
    let definitions: Vec<Value> = values
        .iter()
        .map(|v| {
            json!({
                "identifier": v.identifier,
                "severity": v.severity,
                "blurs": v.blurs,
                "defaultSetting": "warn",
                "adultOnly": false,
                "locales": [{"lang": "en", "name": v.name, "description": v.description}],
            })
        })
        .collect();
    json!({
        "$type": DECLARATION,
        "policies": {
            "labelValues": identifiers,
            "labelValueDefinitions": definitions,
        },
        "createdAt": created_at,
    })
}

/// The CID (CIDv1, dag-cbor, sha2-256, base32) of `bytes`.
pub fn dag_cbor_cid(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut raw = vec![0x01, 0x71, 0x12, 0x20];
    raw.extend_from_slice(&digest);
    format!("b{}", BASE32_NOPAD.encode(&raw).to_ascii_lowercase())
}

fn encode(value: &Value) -> Result<Vec<u8>, IdentityError> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| IdentityError::Encode(e.to_string()))
}

/// `op` signed with `key`: the DAG-CBOR of `op` (without `sig`) hashed and signed, the
/// signature added as `sig`.
pub fn sign_operation(
    mut op: Map<String, Value>,
    key: &SigningKey,
) -> Result<Value, IdentityError> {
    op.remove("sig");
    let unsigned = encode(&Value::Object(op.clone()))?;
    let sig = key.sign(&unsigned);
    op.insert("sig".to_owned(), Value::from(BASE64URL_NOPAD.encode(&sig)));
    Ok(Value::Object(op))
}

/// The PLC update that adds `label_key` and the labeler service at `endpoint` to a DID
/// whose current state is `data` (`GET /DID/data`) and last operation `last`; `None` when
/// the state already has both.
pub fn labeler_update(
    did: &str,
    data: &Value,
    last: &Value,
    label_key: &str,
    endpoint: &str,
) -> Result<Option<Map<String, Value>>, IdentityError> {
    let malformed = |reason: &str| IdentityError::Malformed {
        did: did.to_owned(),
        reason: reason.to_owned(),
    };
    let field = |name: &str| data.get(name).cloned().ok_or_else(|| malformed(name));
    let mut methods = field("verificationMethods")?;
    let mut services = field("services")?;
    let (Some(m), Some(s)) = (methods.as_object_mut(), services.as_object_mut()) else {
        return Err(malformed(
            "verificationMethods and services must be objects",
        ));
    };
    let service = json!({"type": "AtprotoLabeler", "endpoint": endpoint});
    if m.get(LABEL_KEY_ID).and_then(Value::as_str) == Some(label_key)
        && s.get(LABELER_SERVICE_ID) == Some(&service)
    {
        return Ok(None);
    }
    m.insert(LABEL_KEY_ID.to_owned(), Value::from(label_key));
    s.insert(LABELER_SERVICE_ID.to_owned(), service);
    let prev = dag_cbor_cid(&encode(last)?);
    let mut op = Map::new();
    op.insert("type".to_owned(), Value::from("plc_operation"));
    op.insert("rotationKeys".to_owned(), field("rotationKeys")?);
    op.insert("verificationMethods".to_owned(), methods);
    op.insert("alsoKnownAs".to_owned(), field("alsoKnownAs")?);
    op.insert("services".to_owned(), services);
    op.insert("prev".to_owned(), Value::from(prev));
    Ok(Some(op))
}

/// Sends `request` (described as `what` in errors); a non-2xx answer is an error with its
/// status and body, a 2xx one gives its JSON (`null` when it has none).
async fn send_json(request: reqwest::RequestBuilder, what: String) -> Result<Value, IdentityError> {
    let failed = |reason: String| IdentityError::Http {
        what: what.clone(),
        reason,
    };
    let response = request.send().await.map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(failed(format!("{status}: {body}")));
    }
    Ok(response.json().await.unwrap_or(Value::Null))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, IdentityError> {
    send_json(http.get(url), format!("GET {url}")).await
}

/// Makes `did`'s DID document name `label_key` (`did:key`) as `#atproto_label` and
/// `endpoint` as its `#atproto_labeler` service, signing the PLC update with
/// `rotation_key`. Returns whether an update was posted.
///
/// # Errors
/// When the PLC directory cannot be read or refuses the update, or `rotation_key` is not
/// one of the DID's rotation keys.
pub async fn ensure_labeler_service(
    http: &reqwest::Client,
    plc_url: &str,
    did: &str,
    rotation_key: &SigningKey,
    label_key: &str,
    endpoint: &str,
) -> Result<bool, IdentityError> {
    let base = plc_url.trim_end_matches('/');
    let data = get_json(http, &format!("{base}/{did}/data")).await?;
    let rotation = rotation_key.did_key();
    let listed = data
        .get("rotationKeys")
        .and_then(Value::as_array)
        .is_some_and(|keys| keys.iter().any(|k| k.as_str() == Some(rotation.as_str())));
    if !listed {
        return Err(IdentityError::NotRotationKey {
            did: did.to_owned(),
            key: rotation,
        });
    }
    let last = get_json(http, &format!("{base}/{did}/log/last")).await?;
    let Some(op) = labeler_update(did, &data, &last, label_key, endpoint)? else {
        return Ok(false);
    };
    let signed = sign_operation(op, rotation_key)?;
    let url = format!("{base}/{did}");
    send_json(http.post(&url).json(&signed), format!("POST {url}")).await?;
    Ok(true)
}

/// A signed-in account on a PDS.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountSession {
    /// The account's DID.
    pub did: String,
    /// Its access token (left out of Debug output).
    pub access_jwt: String,
}

impl std::fmt::Debug for AccountSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSession")
            .field("did", &self.did)
            .finish_non_exhaustive()
    }
}

async fn xrpc_post(
    http: &reqwest::Client,
    pds_url: &str,
    method: &str,
    body: &Value,
) -> Result<Value, (u16, Value)> {
    let url = format!("{}/xrpc/{method}", pds_url.trim_end_matches('/'));
    let response = http
        .post(&url)
        .json(body)
        .send()
        .await
        .map_err(|e| (0, Value::from(e.to_string())))?;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        Ok(answer)
    } else {
        Err((status, answer))
    }
}

fn session_of(answer: &Value) -> Option<AccountSession> {
    Some(AccountSession {
        did: answer.get("did")?.as_str()?.to_owned(),
        access_jwt: answer.get("accessJwt")?.as_str()?.to_owned(),
    })
}

/// Signs in as `handle` on `pds_url`, creating the account first when it does not exist.
///
/// # Errors
/// When neither works (the PDS's answer is in the error).
pub async fn sign_in_or_create(
    http: &reqwest::Client,
    pds_url: &str,
    handle: &str,
    email: &str,
    password: &str,
) -> Result<AccountSession, IdentityError> {
    let failed = |what: &str, (status, answer): (u16, Value)| IdentityError::Http {
        what: format!("{what} {handle} on {pds_url}"),
        reason: format!("{status}: {answer}"),
    };
    let login = json!({"identifier": handle, "password": password});
    let first = xrpc_post(http, pds_url, "com.atproto.server.createSession", &login).await;
    let answer = match first {
        Ok(answer) => answer,
        // Unknown account (or a password that never matched): create it.
        Err((401, _)) => {
            let body = json!({"handle": handle, "email": email, "password": password});
            xrpc_post(http, pds_url, "com.atproto.server.createAccount", &body)
                .await
                .map_err(|e| failed("creating", e))?
        }
        Err(e) => return Err(failed("signing in as", e)),
    };
    session_of(&answer).ok_or_else(|| failed("reading the session of", (200, answer)))
}

/// Writes the declaration record (`app.bsky.labeler.service/self`) for `values` to the
/// labeler's repository on `pds_url`, signed in with `access_jwt`; returns its CID.
///
/// # Errors
/// When the PDS refuses the write.
pub async fn publish_declaration(
    http: &reqwest::Client,
    pds_url: &str,
    access_jwt: &str,
    did: &str,
    values: &[LabelValue],
    created_at: &str,
) -> Result<String, IdentityError> {
    let url = format!(
        "{}/xrpc/com.atproto.repo.putRecord",
        pds_url.trim_end_matches('/')
    );
    let body = json!({
        "repo": did,
        "collection": DECLARATION,
        "rkey": "self",
        "record": declaration(values, created_at),
    });
    let request = http.post(&url).bearer_auth(access_jwt).json(&body);
    let answer = send_json(request, format!("POST {url}")).await?;
    answer
        .get("cid")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| IdentityError::Http {
            what: format!("POST {url}"),
            reason: format!("no cid in {answer}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cids_are_cidv1_dag_cbor_sha256_base32() {
        // The empty map's CID, as any DAG-CBOR implementation computes it.
        let cid = dag_cbor_cid(&[0xa0]);
        assert!(cid.starts_with("bafyrei"), "{cid}");
        assert_eq!(cid.len(), 59);
    }

    #[test]
    fn the_update_adds_the_key_and_service_once() {
        let data = json!({
            "did": "did:plc:abc",
            "rotationKeys": ["did:key:zQ3sRotation"],
            "verificationMethods": {"atproto": "did:key:zQ3sRepo"},
            "alsoKnownAs": ["at://labeler.test"],
            "services": {"atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": "http://127.0.0.1:2583"}},
        });
        let last = json!({"type": "plc_operation", "prev": null, "sig": "x"});
        let op = labeler_update(
            "did:plc:abc",
            &data,
            &last,
            "did:key:zQ3sLabel",
            "http://127.0.0.1:2585",
        )
        .unwrap()
        .unwrap();
        assert_eq!(op["verificationMethods"]["atproto"], "did:key:zQ3sRepo");
        assert_eq!(
            op["verificationMethods"]["atproto_label"],
            "did:key:zQ3sLabel"
        );
        assert_eq!(
            op["services"]["atproto_labeler"]["endpoint"],
            "http://127.0.0.1:2585"
        );
        assert_eq!(
            op["services"]["atproto_pds"]["type"],
            "AtprotoPersonalDataServer"
        );
        assert_eq!(op["prev"], dag_cbor_cid(&encode(&last).unwrap()));
        // Applied: nothing more to do.
        let mut applied = data.clone();
        applied["verificationMethods"] = op["verificationMethods"].clone();
        applied["services"] = op["services"].clone();
        assert!(
            labeler_update(
                "did:plc:abc",
                &applied,
                &last,
                "did:key:zQ3sLabel",
                "http://127.0.0.1:2585"
            )
            .unwrap()
            .is_none()
        );
        assert!(matches!(
            labeler_update("did:plc:abc", &json!({}), &last, "k", "e"),
            Err(IdentityError::Malformed { .. })
        ));
    }

    #[test]
    fn signing_drops_an_old_sig_and_verifies() {
        let key = SigningKey::from_bytes([3; 32]).unwrap();
        let mut op = Map::new();
        op.insert("type".into(), Value::from("plc_operation"));
        op.insert("sig".into(), Value::from("stale"));
        let signed = sign_operation(op, &key).unwrap();
        let sig = BASE64URL_NOPAD
            .decode(signed["sig"].as_str().unwrap().as_bytes())
            .unwrap();
        let unsigned = encode(&json!({"type": "plc_operation"})).unwrap();
        key.public_key().verify_bytes(&unsigned, &sig).unwrap();
    }

    #[test]
    fn the_declaration_lists_every_value() {
        let record = declaration(AC_LABEL_VALUES, "2026-12-06T00:00:00.000Z");
        let values = record["policies"]["labelValues"].as_array().unwrap();
        assert_eq!(values.len(), GLOBAL_VALUES.len() + AC_LABEL_VALUES.len());
        for v in AC_LABEL_VALUES {
            super::super::label::check_value(v.identifier).unwrap();
        }
        assert_eq!(
            record["policies"]["labelValueDefinitions"][0]["identifier"],
            "offensive-text"
        );
    }
}
