//! Signing in: the lockout gate, the password check and the failure count, in the order
//! that keeps each promise.
//!
//! 1. A locked name or address is refused before the password is looked at.
//! 2. The password is checked in the same time whether or not the name is an account
//!    ([`UserStore::verify_password`]).
//! 3. A failure counts against the name and the address ([`super::lockout`]); the answer
//!    is the same "wrong name or password" for a name that is no account, a disabled one
//!    and a wrong password, until a lock starts.
//!
//! The password-change page uses the same [`attempt`] for the current password, so a
//! stolen session cannot be used to guess it without limit either.

use std::net::IpAddr;
use std::time::Duration;

use super::lockout::{LockKey, LoginLimits};
use super::store::{StoreError, User, UserStore, check_name};

/// What a sign-in attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// The password is right and the account enabled.
    Success(User),
    /// Wrong name or password (or a disabled account: the answer does not say which).
    Wrong,
    /// Too many failures: no password is checked until the lock ends.
    Locked {
        /// What is locked.
        scope: LockScope,
        /// How long until it may be tried again.
        retry_after: Duration,
    },
}

/// What a lock is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    /// The user name typed (whether or not it is an account).
    Name,
    /// The client's address.
    Address,
}

/// Tries to sign `name` in with `password`, from `address` (when known).
pub async fn attempt(
    store: &UserStore,
    limits: &LoginLimits,
    name: &str,
    password: &str,
    address: Option<IpAddr>,
) -> Result<SignIn, StoreError> {
    // A string that cannot be a user name is not counted against a name of its own (it
    // would only fill the table), but still against the address.
    let name_key = check_name(name).is_ok().then_some(LockKey::User(name));
    let address_key = address.map(LockKey::Address);
    for (key, scope) in [
        (name_key, LockScope::Name),
        (address_key, LockScope::Address),
    ] {
        if let Some(key) = key
            && let Some(retry_after) = store.locked_for(&key).await?
        {
            return Ok(SignIn::Locked { scope, retry_after });
        }
    }
    if let Some(user) = store.verify_password(name, password).await? {
        if let Some(key) = &name_key {
            store.clear_failures(key).await?;
        }
        return Ok(SignIn::Success(user));
    }
    let mut outcome = SignIn::Wrong;
    // The name's lock is the one to report when both start at once: it is the one the
    // person can do something about (wait, or ask an admin).
    for (key, scope) in [
        (address_key, LockScope::Address),
        (name_key, LockScope::Name),
    ] {
        if let Some(key) = key
            && let Some(retry_after) = store.record_failure(&key, limits).await?
        {
            outcome = SignIn::Locked { scope, retry_after };
        }
    }
    Ok(outcome)
}
