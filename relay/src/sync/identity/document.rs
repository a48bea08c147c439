//! DID documents, parsed leniently: the parts ATProto uses, from any shape that carries them.
//!
//! Two shapes are in the wild and both must work:
//! - current: verification method type `Multikey`, absolute ids (`did:plc:…#atproto`);
//! - legacy (what the local PLC still serves): `EcdsaSecp256k1VerificationKey2019` or
//!   `EcdsaSecp256r1VerificationKey2019`, relative ids (`#atproto`).
//!
//! Entries that are malformed (a verification method given as a bare string, a service
//! endpoint given as a map) are skipped, not fatal: one odd entry must not hide the
//! account's signing key. Only a document without an `id` is rejected. Key bytes are not
//! decoded here: [`SigningKeyRef`] carries the type and multibase text for
//! [`crate::sync::keys`] to parse.

use serde_json::Value;

/// A DID document, reduced to what ATProto reads from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidDocument {
    id: String,
    also_known_as: Vec<String>,
    verification_methods: Vec<VerificationMethod>,
    services: Vec<Service>,
}

/// One `verificationMethod` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationMethod {
    /// `#atproto` or `did:…#atproto`, as written.
    pub id: String,
    /// `Multikey`, `EcdsaSecp256k1VerificationKey2019`, ...
    pub key_type: String,
    /// The controller DID, if given.
    pub controller: Option<String>,
    /// The `publicKeyMultibase` text, if given.
    pub public_key_multibase: Option<String>,
}

/// One `service` entry with a string endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `#atproto_pds` or `did:…#atproto_pds`, as written.
    pub id: String,
    /// The service types (`type` may be a string or a list).
    pub types: Vec<String>,
    /// `serviceEndpoint` (when it is a string, or the first string of a list).
    pub endpoint: String,
}

/// A public key named by a DID document, not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SigningKeyRef {
    /// The verification method type: `Multikey` (multicodec-prefixed compressed key) or a
    /// legacy `EcdsaSecp256{k,r}1VerificationKey2019` (bare key bytes, curve from the type).
    pub key_type: String,
    /// The `publicKeyMultibase` text (`z…`).
    pub multibase: String,
}

/// Why a document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The bytes are not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// There is no string `id`.
    #[error("no string \"id\"")]
    MissingId,
}

/// The PDS service id and type.
const PDS_ID: &str = "atproto_pds";
const PDS_TYPE: &str = "AtprotoPersonalDataServer";
/// The labeler service id and type.
const LABELER_ID: &str = "atproto_labeler";
const LABELER_TYPE: &str = "AtprotoLabeler";
/// The repository signing key id, and the label signing key id.
const SIGNING_KEY_ID: &str = "atproto";
const LABEL_KEY_ID: &str = "atproto_label";

impl DidDocument {
    /// Parses a document from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<DidDocument, DocumentError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| DocumentError::NotJson(e.to_string()))?;
        DidDocument::from_value(&value)
    }

    /// Parses a document from a JSON value.
    pub fn from_value(value: &Value) -> Result<DidDocument, DocumentError> {
        let object = value.as_object().ok_or(DocumentError::NotAnObject)?;
        let id = object
            .get("id")
            .and_then(Value::as_str)
            .ok_or(DocumentError::MissingId)?
            .to_owned();
        let also_known_as = list(object.get("alsoKnownAs"))
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let verification_methods = list(object.get("verificationMethod"))
            .filter_map(parse_verification_method)
            .collect();
        let services = list(object.get("service"))
            .filter_map(parse_service)
            .collect();
        Ok(DidDocument {
            id,
            also_known_as,
            verification_methods,
            services,
        })
    }

    /// The document's `id` (the DID it claims to describe).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `alsoKnownAs` strings.
    pub fn also_known_as(&self) -> &[String] {
        &self.also_known_as
    }

    /// The well-formed `verificationMethod` entries.
    pub fn verification_methods(&self) -> &[VerificationMethod] {
        &self.verification_methods
    }

    /// The `service` entries with a string endpoint.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The claimed handle: the first `at://` entry of `alsoKnownAs`, without the prefix and
    /// as written (not yet normalised or verified; see `Resolver::verify_handle`).
    pub fn handle(&self) -> Option<&str> {
        self.also_known_as
            .iter()
            .find_map(|aka| aka.strip_prefix("at://"))
    }

    /// The PDS endpoint: service `#atproto_pds` of type `AtprotoPersonalDataServer`, if its
    /// endpoint is an http(s) URL.
    pub fn pds_endpoint(&self) -> Option<&str> {
        self.service_endpoint(PDS_ID, PDS_TYPE)
    }

    /// The labeler endpoint: service `#atproto_labeler` of type `AtprotoLabeler`.
    pub fn labeler_endpoint(&self) -> Option<&str> {
        self.service_endpoint(LABELER_ID, LABELER_TYPE)
    }

    /// The repository signing key, `#atproto`.
    pub fn signing_key(&self) -> Option<SigningKeyRef> {
        self.key(SIGNING_KEY_ID)
    }

    /// The label signing key, `#atproto_label` (labels are never checked against
    /// `#atproto`).
    pub fn label_key(&self) -> Option<SigningKeyRef> {
        self.key(LABEL_KEY_ID)
    }

    /// Whether `id` names fragment `fragment` of this document, relatively or absolutely.
    fn names(&self, id: &str, fragment: &str) -> bool {
        let Some((base, frag)) = id.split_once('#') else {
            return false;
        };
        frag == fragment && (base.is_empty() || base == self.id)
    }

    /// The first verification method with fragment `fragment`, if it has a multibase key.
    fn key(&self, fragment: &str) -> Option<SigningKeyRef> {
        let method = self
            .verification_methods
            .iter()
            .find(|m| self.names(&m.id, fragment))?;
        Some(SigningKeyRef {
            key_type: method.key_type.clone(),
            multibase: method.public_key_multibase.clone()?,
        })
    }

    /// The endpoint of the first service with fragment `fragment`, if it has type `kind` and
    /// an http(s) URL.
    fn service_endpoint(&self, fragment: &str, kind: &str) -> Option<&str> {
        let service = self.services.iter().find(|s| self.names(&s.id, fragment))?;
        if !service.types.iter().any(|t| t == kind) {
            return None;
        }
        let url = url::Url::parse(&service.endpoint).ok()?;
        let web = matches!(url.scheme(), "http" | "https") && url.host().is_some();
        web.then_some(service.endpoint.as_str())
    }
}

/// The items of a JSON array (or a lone value treated as a one-item list; absent = empty).
fn list(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    let items: &[Value] = match value {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => &[],
        Some(other) => std::slice::from_ref(other),
    };
    items.iter()
}

fn parse_verification_method(value: &Value) -> Option<VerificationMethod> {
    let object = value.as_object()?;
    Some(VerificationMethod {
        id: object.get("id")?.as_str()?.to_owned(),
        key_type: object.get("type")?.as_str()?.to_owned(),
        controller: object
            .get("controller")
            .and_then(Value::as_str)
            .map(str::to_owned),
        public_key_multibase: object
            .get("publicKeyMultibase")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn parse_service(value: &Value) -> Option<Service> {
    let object = value.as_object()?;
    let endpoint = match object.get("serviceEndpoint")? {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().find_map(Value::as_str)?.to_owned(),
        _ => return None,
    };
    Some(Service {
        id: object.get("id")?.as_str()?.to_owned(),
        types: list(object.get("type"))
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        endpoint,
    })
}
