//! What moderation is about: a subject, either an account (its DID) or a record (its
//! `at://` URI, with the CID of the version in question when known).
//!
//! A [`SubjectRef`] can only be built through its checked constructors, so everything
//! downstream (the store, the executor, the labeler) may rely on it: a record URI names its
//! repository by DID (a handle can change owner, a report must not follow it) and has both a
//! collection and a record key; an account is a valid DID. The author, kind and collection
//! the queue filters on are derived here, once.

use atelier_relay::lexicons::syntax::{self, Format};
use serde_json::{Value, json};

/// `$type` of an account subject (`com.atproto.admin.defs#repoRef`).
pub const REPO_REF: &str = "com.atproto.admin.defs#repoRef";
/// `$type` of a record subject (`com.atproto.repo.strongRef`).
pub const STRONG_REF: &str = "com.atproto.repo.strongRef";

/// Whether a subject is an account or a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    /// An account, named by its DID.
    Account,
    /// A record, named by its `at://` URI.
    Record,
}

impl SubjectKind {
    /// The name stored and shown (`account`, `record`).
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Account => "account",
            SubjectKind::Record => "record",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<SubjectKind> {
        match name {
            "account" => Some(SubjectKind::Account),
            "record" => Some(SubjectKind::Record),
            _ => None,
        }
    }
}

/// Why a subject is not acceptable. The messages name the part at fault and are safe to
/// show to whoever sent the subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The DID is not a valid DID.
    #[error("did: {0}")]
    Did(String),
    /// The URI is not a valid record AT-URI.
    #[error("uri: {0}")]
    Uri(String),
    /// The CID is not a valid CID string.
    #[error("cid: {0}")]
    Cid(String),
}

/// A checked moderation subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubjectRef {
    /// The DID (accounts) or `at://` URI (records): the subject's identity in every table
    /// and the `uri` of the labels issued on it.
    uri: String,
    /// The record version in question, when known. Never set for accounts.
    cid: Option<String>,
    kind: SubjectKind,
}

impl SubjectRef {
    /// An account subject.
    pub fn account(did: &str) -> Result<SubjectRef, SubjectError> {
        syntax::validate(Format::Did, did).map_err(|e| SubjectError::Did(e.reason))?;
        Ok(SubjectRef {
            uri: did.to_owned(),
            cid: None,
            kind: SubjectKind::Account,
        })
    }

    /// A record subject: `at://<did>/<collection>/<rkey>`, optionally pinned to `cid`.
    pub fn record(uri: &str, cid: Option<&str>) -> Result<SubjectRef, SubjectError> {
        syntax::validate(Format::AtUri, uri).map_err(|e| SubjectError::Uri(e.reason))?;
        let path = &uri["at://".len()..];
        let mut parts = path.split('/');
        let authority = parts.next().unwrap_or_default();
        if !syntax::is_valid_did(authority) {
            return Err(SubjectError::Uri(
                "must name its repository by DID, not by handle".to_owned(),
            ));
        }
        if parts.nth(1).is_none() {
            return Err(SubjectError::Uri(
                "must name a record (at://<did>/<collection>/<rkey>)".to_owned(),
            ));
        }
        if let Some(cid) = cid {
            syntax::validate(Format::Cid, cid).map_err(|e| SubjectError::Cid(e.reason))?;
        }
        Ok(SubjectRef {
            uri: uri.to_owned(),
            cid: cid.map(str::to_owned),
            kind: SubjectKind::Record,
        })
    }

    /// A subject from its identity as the console and the store write it: a DID is an
    /// account, an `at://` URI a record (`cid` applies to records only).
    pub fn parse(uri: &str, cid: Option<&str>) -> Result<SubjectRef, SubjectError> {
        if uri.starts_with("at://") {
            SubjectRef::record(uri, cid)
        } else if cid.is_some() {
            Err(SubjectError::Cid(
                "an account subject has no CID".to_owned(),
            ))
        } else {
            SubjectRef::account(uri)
        }
    }

    /// The DID (accounts) or `at://` URI (records).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The record version, if known.
    pub fn cid(&self) -> Option<&str> {
        self.cid.as_deref()
    }

    /// Account or record.
    pub fn kind(&self) -> SubjectKind {
        self.kind
    }

    /// The DID of the account the subject belongs to: the account itself, or the record's
    /// repository.
    pub fn author(&self) -> &str {
        match self.kind {
            SubjectKind::Account => &self.uri,
            SubjectKind::Record => self.record_parts().0,
        }
    }

    /// The record's collection (its record type), `None` for accounts.
    pub fn collection(&self) -> Option<&str> {
        match self.kind {
            SubjectKind::Account => None,
            SubjectKind::Record => Some(self.record_parts().1),
        }
    }

    /// The lexicon form: a `repoRef` for accounts, a `strongRef` for records. A record
    /// without a known CID is written without `cid` (only reports from outside carry one).
    pub fn to_json(&self) -> Value {
        match self.kind {
            SubjectKind::Account => json!({ "$type": REPO_REF, "did": self.uri }),
            SubjectKind::Record => {
                let mut value = json!({ "$type": STRONG_REF, "uri": self.uri });
                if let Some(cid) = &self.cid {
                    value["cid"] = Value::from(cid.as_str());
                }
                value
            }
        }
    }

    /// The DID and collection of a record URI (checked at construction).
    fn record_parts(&self) -> (&str, &str) {
        let mut parts = self.uri["at://".len()..].split('/');
        let did = parts.next().unwrap_or_default();
        let collection = parts.next().unwrap_or_default();
        (did, collection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DID: &str = "did:plc:alice000000000000000000";
    const CID: &str = "bafyreifxykqhed72s26cr4i64rxvrtofeqrly3j4vjzbkvo3ckkjbxjqtq";

    /// The kind and collection parsed, or the start of the error.
    type Expect<'a> = Result<(SubjectKind, Option<&'a str>), &'a str>;

    #[test]
    fn subjects() {
        let record = format!("at://{DID}/computer.aesthetic.painting/3kabc");
        let cases: &[(&str, Option<&str>, Expect<'_>)] = &[
            (DID, None, Ok((SubjectKind::Account, None))),
            (
                &record,
                Some(CID),
                Ok((SubjectKind::Record, Some("computer.aesthetic.painting"))),
            ),
            (
                &record,
                None,
                Ok((SubjectKind::Record, Some("computer.aesthetic.painting"))),
            ),
            (DID, Some(CID), Err("cid: an account subject has no CID")),
            ("did:PLC:x", None, Err("did: ")),
            ("alice.test", None, Err("did: ")),
            (
                "at://alice.test/computer.aesthetic.painting/3kabc",
                None,
                Err("uri: must name its repository by DID"),
            ),
            (
                "at://did:plc:alice000000000000000000/computer.aesthetic.painting",
                None,
                Err("uri: must name a record"),
            ),
            (
                "at://did:plc:alice000000000000000000",
                None,
                Err("uri: must name a record"),
            ),
            ("at://did:plc:a/x.y.z/k?q", None, Err("uri: ")),
            (&record, Some("not-a-cid"), Err("cid: ")),
        ];
        for (uri, cid, expect) in cases {
            match (SubjectRef::parse(uri, *cid), expect) {
                (Ok(subject), Ok((kind, collection))) => {
                    assert_eq!(subject.kind(), *kind, "{uri}");
                    assert_eq!(subject.collection(), *collection, "{uri}");
                    assert_eq!(subject.author(), DID, "{uri}");
                    assert_eq!(subject.uri(), *uri);
                    assert_eq!(subject.cid(), *cid);
                }
                (Err(error), Err(prefix)) => {
                    assert!(error.to_string().starts_with(prefix), "{uri}: {error}")
                }
                (got, want) => panic!("{uri}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn lexicon_form() {
        let account = SubjectRef::account(DID).unwrap();
        assert_eq!(account.to_json(), json!({"$type": REPO_REF, "did": DID}));
        let uri = format!("at://{DID}/computer.aesthetic.mood/3kabc");
        let record = SubjectRef::record(&uri, Some(CID)).unwrap();
        assert_eq!(
            record.to_json(),
            json!({"$type": STRONG_REF, "uri": uri, "cid": CID})
        );
    }
}
