//! Sign-in rate limiting: lockout with exponential back-off, per user name and per client
//! address.
//!
//! Every failed sign-in counts against two keys ([`LockKey`]): the name tried, whether or
//! not it is an account (so a lockout tells nothing about which names exist), and the
//! client's address. When a key's count reaches its threshold it is locked for
//! [`LoginLimits::base_lockout`], and each further failure doubles that, up to
//! [`LoginLimits::max_lockout`]: with `n` failures and threshold `t`, the lock is
//! `base * 2^(n - t)` ([`LoginLimits::lockout_after`]).
//!
//! While a key is locked, sign-ins are refused before the password is looked at (guessing
//! then costs the server no hashing) and the refused attempts do not count. A successful
//! sign-in clears the name's count, not the address's: one good account must not wash a
//! guessing address clean. A count is forgotten after [`LoginLimits::forget_after`]
//! without failures.
//!
//! Counts live in the console's SQLite file, so restarting the console unlocks nothing.

use std::net::IpAddr;
use std::time::Duration;

use sqlx::Row;

use super::store::{StoreError, UserStore, unix_now};

/// The sign-in limits. The defaults suit a real console; tests use small values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures for one user name before it is locked (at least 1).
    pub per_user: u32,
    /// Failures from one client address before it is locked (at least 1). Higher than
    /// `per_user`, since several moderators may share an address (an office, a VPN).
    pub per_address: u32,
    /// The first lock's length.
    pub base_lockout: Duration,
    /// The longest lock.
    pub max_lockout: Duration,
    /// A key's failures are forgotten after this long without another.
    pub forget_after: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_user: 5,
            per_address: 20,
            base_lockout: Duration::from_secs(30),
            max_lockout: Duration::from_secs(60 * 60),
            forget_after: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl LoginLimits {
    /// How long a key with `failures` failures is locked, given its `threshold`: `None`
    /// below the threshold, else `base * 2^(failures - threshold)`, at most `max_lockout`.
    pub fn lockout_after(&self, failures: u32, threshold: u32) -> Option<Duration> {
        let excess = failures.checked_sub(threshold)?;
        let lock = 2u32
            .checked_pow(excess)
            .and_then(|factor| self.base_lockout.checked_mul(factor))
            .unwrap_or(self.max_lockout);
        Some(lock.min(self.max_lockout))
    }

    fn threshold(&self, key: &LockKey<'_>) -> u32 {
        match key {
            LockKey::User(_) => self.per_user,
            LockKey::Address(_) => self.per_address,
        }
    }
}

/// What failures are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKey<'a> {
    /// A user name, as typed.
    User(&'a str),
    /// A client address.
    Address(IpAddr),
}

impl LockKey<'_> {
    fn db_key(&self) -> String {
        match self {
            LockKey::User(name) => format!("user:{name}"),
            LockKey::Address(addr) => format!("ip:{addr}"),
        }
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The time left of a lock ending at `locked_until`, if it has not ended by `now`.
fn remaining(locked_until: i64, now: i64) -> Option<Duration> {
    let left = locked_until.checked_sub(now).filter(|left| *left > 0)?;
    Some(Duration::from_secs(left.unsigned_abs()))
}

impl UserStore {
    /// How much longer `key` is locked, if it is.
    pub async fn locked_for(&self, key: &LockKey<'_>) -> Result<Option<Duration>, StoreError> {
        let locked_until: Option<i64> =
            sqlx::query_scalar("SELECT locked_until FROM login_failures WHERE key = ?")
                .bind(key.db_key())
                .fetch_optional(&self.pool)
                .await?;
        Ok(locked_until.and_then(|until| remaining(until, unix_now())))
    }

    /// Counts a failed sign-in against `key`; returns the lock it now has, if any.
    pub async fn record_failure(
        &self,
        key: &LockKey<'_>,
        limits: &LoginLimits,
    ) -> Result<Option<Duration>, StoreError> {
        let now = unix_now();
        let db_key = key.db_key();
        // One statement, so two failures at once both count.
        let row = sqlx::query(
            "INSERT INTO login_failures (key, failures, last_failure_at, locked_until) \
             VALUES (?1, 1, ?2, 0) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN ?2 - last_failure_at > ?3 THEN 1 ELSE failures + 1 END, \
               last_failure_at = ?2 \
             RETURNING failures",
        )
        .bind(&db_key)
        .bind(now)
        .bind(seconds(limits.forget_after))
        .fetch_one(&self.pool)
        .await?;
        let failures: i64 = row.try_get("failures")?;
        let failures = u32::try_from(failures).unwrap_or(u32::MAX);
        let Some(lock) = limits.lockout_after(failures, limits.threshold(key)) else {
            return Ok(None);
        };
        let until = now.saturating_add(seconds(lock));
        sqlx::query("UPDATE login_failures SET locked_until = MAX(locked_until, ?) WHERE key = ?")
            .bind(until)
            .bind(&db_key)
            .execute(&self.pool)
            .await?;
        Ok(remaining(until, now))
    }

    /// Forgets `key`'s failures (after a successful sign-in).
    pub async fn clear_failures(&self, key: &LockKey<'_>) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE key = ?")
            .bind(key.db_key())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the counts that are forgotten and no longer locked; returns how many.
    pub async fn delete_stale_failures(&self, limits: &LoginLimits) -> Result<u64, StoreError> {
        let now = unix_now();
        let done = sqlx::query(
            "DELETE FROM login_failures WHERE last_failure_at < ? AND locked_until < ?",
        )
        .bind(now.saturating_sub(seconds(limits.forget_after)))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let limits = LoginLimits {
            base_lockout: Duration::from_secs(30),
            max_lockout: Duration::from_secs(600),
            ..LoginLimits::default()
        };
        // (failures, threshold, lock in seconds)
        let cases: &[(u32, u32, Option<u64>)] = &[
            (0, 5, None),
            (4, 5, None),
            (5, 5, Some(30)),
            (6, 5, Some(60)),
            (7, 5, Some(120)),
            (9, 5, Some(480)),
            (10, 5, Some(600)),
            (1, 1, Some(30)),
            // 2^40 overflows a u32 factor: the cap, not a wrap-around.
            (45, 5, Some(600)),
            (u32::MAX, 5, Some(600)),
        ];
        for &(failures, threshold, want) in cases {
            assert_eq!(
                limits.lockout_after(failures, threshold),
                want.map(Duration::from_secs),
                "{failures} failures, threshold {threshold}"
            );
        }
    }

    #[test]
    fn remaining_time() {
        assert_eq!(remaining(100, 40), Some(Duration::from_secs(60)));
        assert_eq!(remaining(100, 100), None);
        assert_eq!(remaining(0, 100), None);
    }

    #[test]
    fn keys() {
        assert_eq!(LockKey::User("ann").db_key(), "user:ann");
        let addr: IpAddr = "::1".parse().expect("an address");
        assert_eq!(LockKey::Address(addr).db_key(), "ip:::1");
    }
}
