//! Wire types shared by the generated lexicon code: blob references, CID links and bytes in
//! their JSON form, and the [`Record`] trait every generated record type implements.
//!
//! These are plain serde types. They check shape, not content: whether a CID parses or a MIME
//! type is accepted is for [`crate::validate`]. The strong reference
//! (`com.atproto.repo.strongRef`) is generated from its lexicon and re-exported here as
//! [`StrongRef`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::generated::com::atproto::repo::strong_ref::StrongRef;

/// A record type: a lexicon `main` def of type `record`.
pub trait Record: Serialize + DeserializeOwned {
    /// The NSID of the record's collection, which is also its `$type`.
    const NSID: &'static str;
}

/// A link to content by CID: `{"$link": "bafy…"}` in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CidLink {
    /// The CID as a string (base32 `b…` for CIDv1).
    #[serde(rename = "$link")]
    pub link: String,
}

/// A reference to a blob stored alongside a repository, in its current form:
/// `{"$type": "blob", "ref": {"$link": "bafk…"}, "mimeType": "image/png", "size": 1234}`.
///
/// The legacy form (`{"cid": "…", "mimeType": "…"}`) is not accepted here; the lenient
/// validator deals with what the wild holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "$type", rename = "blob", rename_all = "camelCase")]
pub struct BlobRef {
    /// The CID of the blob's content (raw codec).
    pub r#ref: CidLink,
    /// The MIME type the blob was uploaded with, such as `image/png`.
    pub mime_type: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// Raw bytes: `{"$bytes": "…"}` in JSON, base64 without padding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bytes {
    /// The bytes, base64-encoded (standard alphabet, no padding), as they appear in JSON.
    #[serde(rename = "$bytes")]
    pub base64: String,
}
