//! What to do with a text the filter flags: block it, mask it, or let it through.
//!
//! The publishing proxy applies the deployment's [`Policy`] to each text field before it
//! writes a record ([`SafetyFilter::apply`]); ingest and the admin console's auto-flags only
//! read the matches ([`SafetyFilter::check`]) and never change what others published.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use super::{Match, SafetyFilter};

/// What publishing does with a text that has matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Refuse the text: [`Blocked`] names every match.
    Block,
    /// Replace each matched character with `_` and publish the rest (what AC does today).
    #[default]
    Mask,
    /// Publish the text as it is (the matches can still be flagged for moderators).
    Allow,
}

impl Policy {
    /// The policy's name in configuration: `block`, `mask` or `allow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Block => "block",
            Policy::Mask => "mask",
            Policy::Allow => "allow",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy name that is not `block`, `mask` or `allow`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown safety policy `{0}` (expected `block`, `mask` or `allow`)")]
pub struct UnknownPolicy(pub String);

impl FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Policy, UnknownPolicy> {
        match s {
            "block" => Ok(Policy::Block),
            "mask" => Ok(Policy::Mask),
            "allow" => Ok(Policy::Allow),
            other => Err(UnknownPolicy(other.to_owned())),
        }
    }
}

/// A text refused under [`Policy::Block`], with every match in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the safety filter blocks this text ({})", Summary(.matches))]
pub struct Blocked {
    /// The matches, in text order (never empty).
    pub matches: Vec<Match>,
}

/// `2 matches: "fuck" at bytes 0..4, "shit" at bytes 9..13`.
struct Summary<'a>(&'a [Match]);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} {}", if n == 1 { "match" } else { "matches" })?;
        for (i, m) in self.0.iter().enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(
                f,
                "{sep}\"{}\" at bytes {}..{}",
                m.word, m.range.start, m.range.end
            )?;
        }
        Ok(())
    }
}

impl SafetyFilter {
    /// Applies `policy` to `text`: the text itself when it is clean or the policy is
    /// [`Policy::Allow`], the masked text under [`Policy::Mask`], and [`Blocked`] with the
    /// matches under [`Policy::Block`].
    pub fn apply<'t>(&self, policy: Policy, text: &'t str) -> Result<Cow<'t, str>, Blocked> {
        if policy == Policy::Allow {
            return Ok(Cow::Borrowed(text));
        }
        let found = self.find(text);
        if found.hits.is_empty() {
            return Ok(Cow::Borrowed(text));
        }
        match policy {
            Policy::Block => Err(Blocked {
                matches: found.matches(),
            }),
            Policy::Mask | Policy::Allow => Ok(Cow::Owned(found.mask(text))),
        }
    }
}
