//! AC's known quirks in records from the wild, as a table.
//!
//! Aesthetic Computer's PDS holds records written before the `computer.aesthetic.*`
//! lexicons settled (see `ac-records.md`, "Quirks of the records in the wild"). An indexer
//! must accept them, so [`Mode::Lenient`](super::Mode::Lenient) repairs and reports each
//! quirk listed in [`QUIRKS`], while [`Mode::Strict`](super::Mode::Strict) rejects each one
//! with a message naming the field. Adding a quirk is one line in [`QUIRKS`].

use std::fmt;

/// What a quirk looks like in a record (always at the record's top level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuirkKind {
    /// An undeclared field that AC writes. Lenient: kept and reported as
    /// [`Repair::UndeclaredField`](super::Repair::UndeclaredField) with `known_quirk: true`.
    ExtraField {
        /// The undeclared field.
        field: &'static str,
    },
    /// A legacy name for a declared field. Lenient: when `to` is declared by the schema and
    /// absent from the record, the value of `from` is moved to `to` and reported as
    /// [`Repair::RenamedField`](super::Repair::RenamedField).
    RenamedField {
        /// The legacy name found in the record.
        from: &'static str,
        /// The declared name.
        to: &'static str,
    },
    /// A required field that may be missing. Lenient: accepted and reported as
    /// [`Repair::MissingRequired`](super::Repair::MissingRequired).
    MissingField {
        /// The required field.
        field: &'static str,
    },
}

/// One known quirk of one record type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirk {
    /// The record NSID; a trailing `.*` matches every NSID under that prefix.
    pub nsid: &'static str,
    /// What the quirk looks like.
    pub kind: QuirkKind,
    /// Why AC's records look like this.
    pub note: &'static str,
}

/// Every known quirk. One line per quirk.
pub static QUIRKS: &[Quirk] = &[
    Quirk::extra(
        "computer.aesthetic.painting",
        "acUrl",
        "page URL on aesthetic.computer",
    ),
    Quirk::extra(
        "computer.aesthetic.kidlisp",
        "acUrl",
        "page URL on aesthetic.computer",
    ),
    Quirk::renamed(
        "computer.aesthetic.mood",
        "text",
        "mood",
        "older mood records",
    ),
    Quirk::renamed("computer.aesthetic.*", "mongoId", "ref", "older records"),
    Quirk::missing(
        "computer.aesthetic.tape",
        "video",
        "video conversion failed",
    ),
    Quirk::extra(
        "computer.aesthetic.tape",
        "thumbnail",
        "image/jpeg thumbnail blob",
    ),
    Quirk::extra(
        "computer.aesthetic.tape",
        "acUrl",
        "page URL on aesthetic.computer",
    ),
];

impl Quirk {
    /// An undeclared field AC writes.
    pub const fn extra(nsid: &'static str, field: &'static str, note: &'static str) -> Self {
        Quirk {
            nsid,
            kind: QuirkKind::ExtraField { field },
            note,
        }
    }

    /// A legacy field name `from` for the declared field `to`.
    pub const fn renamed(
        nsid: &'static str,
        from: &'static str,
        to: &'static str,
        note: &'static str,
    ) -> Self {
        Quirk {
            nsid,
            kind: QuirkKind::RenamedField { from, to },
            note,
        }
    }

    /// A required field that may be missing.
    pub const fn missing(nsid: &'static str, field: &'static str, note: &'static str) -> Self {
        Quirk {
            nsid,
            kind: QuirkKind::MissingField { field },
            note,
        }
    }

    /// Whether this quirk applies to records of type `nsid`.
    pub fn applies_to(&self, nsid: &str) -> bool {
        match self.nsid.strip_suffix('*') {
            Some(prefix) => nsid.starts_with(prefix),
            None => self.nsid == nsid,
        }
    }

    /// The field found in (or missing from) the record.
    pub fn field(&self) -> &'static str {
        match self.kind {
            QuirkKind::ExtraField { field } | QuirkKind::MissingField { field } => field,
            QuirkKind::RenamedField { from, .. } => from,
        }
    }
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            QuirkKind::ExtraField { field } => write!(f, "undeclared field `{field}`")?,
            QuirkKind::RenamedField { from, to } => {
                write!(f, "field `{from}` used instead of `{to}`")?;
            }
            QuirkKind::MissingField { field } => write!(f, "missing required field `{field}`")?,
        }
        write!(f, " (known AC quirk: {})", self.note)
    }
}

/// The quirks that apply to records of type `nsid`.
pub fn quirks_for(nsid: &str) -> impl Iterator<Item = &'static Quirk> + '_ {
    QUIRKS.iter().filter(move |q| q.applies_to(nsid))
}

/// Whether a top-level field named `field` in a `nsid` record is part of a known quirk.
pub fn is_quirk_field(nsid: &str, field: &str) -> bool {
    quirks_for(nsid).any(|q| match q.kind {
        QuirkKind::ExtraField { field: f } => f == field,
        QuirkKind::RenamedField { from, .. } => from == field,
        QuirkKind::MissingField { .. } => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_prefix_only() {
        let q = Quirk::renamed("computer.aesthetic.*", "mongoId", "ref", "x");
        assert!(q.applies_to("computer.aesthetic.painting"));
        assert!(!q.applies_to("computer.aestheticX.painting"));
        assert!(!q.applies_to("app.bsky.feed.post"));
    }

    #[test]
    fn quirk_fields_are_known() {
        assert!(is_quirk_field("computer.aesthetic.painting", "acUrl"));
        assert!(is_quirk_field("computer.aesthetic.piece", "mongoId"));
        assert!(!is_quirk_field("computer.aesthetic.piece", "acUrl"));
        assert!(!is_quirk_field("computer.aesthetic.tape", "video"));
    }
}
