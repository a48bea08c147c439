//! Reports: what someone (or something) said about a subject, and where it came from.
//!
//! Three sources feed the queue, all through [`ModerationStore::add_report`]:
//! - `atproto`: `com.atproto.moderation.createReport`, proxied by the reporter's PDS and
//!   authenticated with its service JWT (see [`super::xrpc`]);
//! - `appview`: the AppView's own signed-in users ([`NewReport::appview`]);
//! - `autoflag`: the safety filter ([`NewReport::auto_flag`]), with no reporter and the
//!   masked match as the reason text.
//!
//! Reason types are an open set in the lexicon (`knownValues`), and the list has grown and
//! been renamed over time (`com.atproto.moderation.defs#reason*`, then Ozone's
//! `tools.ozone.report.defs#reason*`). So a reason type is accepted by shape, not from a
//! list: one of the two namespaces, `#reason`, then an ASCII camel-case name. That admits
//! every value either namespace defines or will define, and refuses free text.
//!
//! [`ModerationStore::add_report`]: super::ModerationStore::add_report

use std::fmt;

use atelier_relay::lexicons::syntax;
use serde_json::{Value, json};
use unicode_segmentation::UnicodeSegmentation;

use super::subject::SubjectRef;

/// The most graphemes in a report's reason text (the lexicon's `maxGraphemes`).
pub const MAX_REASON_GRAPHEMES: usize = 2000;
/// The most bytes (UTF-8) in a report's reason text (the lexicon's `maxLength`).
pub const MAX_REASON_BYTES: usize = 20_000;

/// The namespaces whose `#reason*` tokens are reason types.
const REASON_NAMESPACES: [&str; 2] = ["com.atproto.moderation.defs", "tools.ozone.report.defs"];

/// The reason type auto-flags use unless the caller names another.
pub const REASON_OTHER: &str = "com.atproto.moderation.defs#reasonOther";

/// A checked reason type such as `com.atproto.moderation.defs#reasonSpam`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReasonType(String);

impl ReasonType {
    /// Checks `value` (see the module docs for what is accepted).
    pub fn parse(value: &str) -> Result<ReasonType, ReportError> {
        let invalid = || ReportError::ReasonType(value.to_owned());
        let (namespace, token) = value.split_once('#').ok_or_else(invalid)?;
        let name = token.strip_prefix("reason").ok_or_else(invalid)?;
        let camel = name.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
            && name.bytes().all(|b| b.is_ascii_alphanumeric());
        if REASON_NAMESPACES.contains(&namespace) && camel && name.len() <= 64 {
            Ok(ReasonType(value.to_owned()))
        } else {
            Err(invalid())
        }
    }

    /// The full token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReasonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a report came from, with its reporter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportSource {
    /// `createReport` from another PDS's account, verified by service auth.
    Atproto {
        /// The reporter's DID (the token's issuer).
        reporter: String,
    },
    /// A signed-in user of our AppView.
    AppView {
        /// The reporter's DID.
        reporter: String,
    },
    /// The safety filter; nobody to credit or mute.
    AutoFlag,
}

impl ReportSource {
    /// The name stored and shown (`atproto`, `appview`, `autoflag`).
    pub fn name(&self) -> &'static str {
        match self {
            ReportSource::Atproto { .. } => "atproto",
            ReportSource::AppView { .. } => "appview",
            ReportSource::AutoFlag => "autoflag",
        }
    }

    /// The reporter's DID, `None` for auto-flags.
    pub fn reporter(&self) -> Option<&str> {
        match self {
            ReportSource::Atproto { reporter } | ReportSource::AppView { reporter } => {
                Some(reporter)
            }
            ReportSource::AutoFlag => None,
        }
    }

    /// The source stored as `name` with `reporter`, if that is a valid pair.
    pub(super) fn from_parts(name: &str, reporter: Option<String>) -> Option<ReportSource> {
        match (name, reporter) {
            ("atproto", Some(reporter)) => Some(ReportSource::Atproto { reporter }),
            ("appview", Some(reporter)) => Some(ReportSource::AppView { reporter }),
            ("autoflag", None) => Some(ReportSource::AutoFlag),
            _ => None,
        }
    }
}

/// Why a report was refused. Each message starts with the lexicon field at fault, so the
/// XRPC layer can pass it on as an `InvalidRequest` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not a reason type (see the module docs).
    #[error(
        "reasonType: {0:?} is not a reason type (com.atproto.moderation.defs#reason... or tools.ozone.report.defs#reason...)"
    )]
    ReasonType(String),
    /// The reason text is too long.
    #[error(
        "reason: {graphemes} graphemes / {bytes} bytes is longer than {MAX_REASON_GRAPHEMES} graphemes / {MAX_REASON_BYTES} bytes"
    )]
    ReasonTooLong {
        /// Its length in graphemes.
        graphemes: usize,
        /// Its length in bytes.
        bytes: usize,
    },
    /// The subject is not acceptable.
    #[error("subject.{0}")]
    Subject(#[from] super::subject::SubjectError),
    /// The reporter is not a DID.
    #[error("reportedBy: {0:?} is not a DID")]
    Reporter(String),
}

/// A report to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    /// What is reported, with the version the reporter saw when known.
    pub subject: SubjectRef,
    /// The broad category.
    pub reason_type: ReasonType,
    /// The reporter's words (or the auto-flag's masked match).
    pub reason: Option<String>,
    /// Who reported it, and through what.
    pub source: ReportSource,
}

impl NewReport {
    /// A report from a signed-in AppView user.
    pub fn appview(
        reporter: &str,
        subject: SubjectRef,
        reason_type: ReasonType,
        reason: Option<String>,
    ) -> NewReport {
        NewReport {
            subject,
            reason_type,
            reason,
            source: ReportSource::AppView {
                reporter: reporter.to_owned(),
            },
        }
    }

    /// An auto-flag: the safety filter matched `masked_match` (already masked, e.g.
    /// `f**k`) in `subject`. The reason type is `reasonOther` unless one is given.
    pub fn auto_flag(
        subject: SubjectRef,
        reason_type: Option<ReasonType>,
        masked_match: &str,
    ) -> NewReport {
        NewReport {
            subject,
            reason_type: reason_type.unwrap_or_else(|| ReasonType(REASON_OTHER.to_owned())),
            reason: Some(masked_match.to_owned()),
            source: ReportSource::AutoFlag,
        }
    }

    /// Checks what the constructors cannot: the reason's length and the reporter's DID.
    pub fn check(&self) -> Result<(), ReportError> {
        if let Some(reason) = &self.reason {
            check_reason(reason)?;
        }
        match self.source.reporter() {
            Some(did) if !syntax::is_valid_did(did) => Err(ReportError::Reporter(did.to_owned())),
            _ => Ok(()),
        }
    }
}

/// Checks a reason text against the lexicon's limits.
pub fn check_reason(reason: &str) -> Result<(), ReportError> {
    let bytes = reason.len();
    // Every grapheme is at least one byte, so short texts skip the segmentation.
    if bytes <= MAX_REASON_GRAPHEMES {
        return Ok(());
    }
    let graphemes = reason.graphemes(true).count();
    if bytes > MAX_REASON_BYTES || graphemes > MAX_REASON_GRAPHEMES {
        return Err(ReportError::ReasonTooLong { graphemes, bytes });
    }
    Ok(())
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The report's number (the lexicon's `id`).
    pub id: i64,
    /// The subject, with the CID the reporter named.
    pub subject: SubjectRef,
    /// The broad category.
    pub reason_type: ReasonType,
    /// The reporter's words.
    pub reason: Option<String>,
    /// Who reported it, and through what.
    pub source: ReportSource,
    /// Whether the reporter was muted when reporting: the report is kept but did not
    /// raise or reopen the subject.
    pub muted: bool,
    /// When it arrived, microseconds since the epoch.
    pub created_us: i64,
}

impl Report {
    /// The `com.atproto.moderation.createReport` output. Auto-flags have no reporter and
    /// are never answered over XRPC; their `reportedBy` would be empty.
    pub fn to_output_json(&self) -> Value {
        let mut output = json!({
            "id": self.id,
            "reasonType": self.reason_type.as_str(),
            "subject": self.subject.to_json(),
            "reportedBy": self.source.reporter().unwrap_or_default(),
            "createdAt": crate::labeler::label::format_datetime(self.created_us),
        });
        if let Some(reason) = &self.reason {
            output["reason"] = Value::from(reason.as_str());
        }
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_types() {
        let cases = [
            ("com.atproto.moderation.defs#reasonSpam", true),
            ("com.atproto.moderation.defs#reasonAppeal", true),
            ("tools.ozone.report.defs#reasonViolenceAnimalWelfare", true),
            ("tools.ozone.report.defs#reasonSexualNCII", true),
            ("com.atproto.moderation.defs#reason", false),
            ("com.atproto.moderation.defs#reasonspam", false),
            ("com.atproto.moderation.defs#spam", false),
            ("com.example.defs#reasonSpam", false),
            ("reasonSpam", false),
            ("com.atproto.moderation.defs#reasonSpam!", false),
            ("", false),
        ];
        for (value, ok) in cases {
            assert_eq!(ReasonType::parse(value).is_ok(), ok, "{value:?}");
        }
    }

    #[test]
    fn reason_lengths() {
        let cases = [
            ("x".repeat(2000), true),
            ("x".repeat(2001), false),
            // 2000 graphemes of 4 bytes each: within both limits.
            ("🎨".repeat(2000), true),
            // A family emoji is one grapheme of 25 bytes: 800 of them pass the grapheme
            // limit and fail the byte limit.
            ("👨‍👩‍👧‍👦".repeat(801), false),
        ];
        for (reason, ok) in cases {
            assert_eq!(check_reason(&reason).is_ok(), ok, "{} bytes", reason.len());
        }
    }
}
