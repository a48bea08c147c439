//! Figures for the dashboard: queue sizes and moderation turnaround (first counted report
//! to the first decision on the subject).

use super::{ModerationStore, QueueState, StoreError};

/// The actions that decide a subject (they move it to resolved).
const DECISIONS: &str = "'label', 'negate-label', 'takedown', 'restore', 'acknowledge'";

/// How fast reports are decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Turnaround {
    /// Subjects decided in the window.
    pub decided: usize,
    /// Median microseconds from first report to decision.
    pub median_us: Option<i64>,
    /// 90th percentile.
    pub p90_us: Option<i64>,
}

/// The value at quantile `q` (0..=1) of `sorted` (nearest rank).
fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

impl ModerationStore {
    /// Subjects in each queue.
    pub async fn queue_counts(&self) -> Result<Vec<(QueueState, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM subjects WHERE state IS NOT NULL GROUP BY state",
        )
        .fetch_all(&self.reader)
        .await?;
        let count = |state: QueueState| {
            rows.iter()
                .find(|(name, _)| name == state.as_str())
                .map_or(0, |(_, n)| *n)
        };
        Ok([
            QueueState::Unreviewed,
            QueueState::Escalated,
            QueueState::Resolved,
        ]
        .into_iter()
        .map(|s| (s, count(s)))
        .collect())
    }

    /// Turnaround of the subjects first decided at or after `since_us`: per subject, the
    /// time from its first counted report to the first decision after it.
    pub async fn turnaround(&self, since_us: i64) -> Result<Turnaround, StoreError> {
        let mut times: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT MIN(a.at_us) - s.first_report_us FROM audit_log a \
             JOIN subjects s ON s.uri = a.subject \
             WHERE a.outcome = 'done' AND a.action IN ({DECISIONS}) \
               AND s.first_report_us IS NOT NULL AND a.at_us >= s.first_report_us \
             GROUP BY s.id HAVING MIN(a.at_us) >= ?"
        ))
        .bind(since_us)
        .fetch_all(&self.reader)
        .await?;
        times.sort_unstable();
        Ok(Turnaround {
            decided: times.len(),
            median_us: quantile(&times, 0.5),
            p90_us: quantile(&times, 0.9),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.9), Some(7));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(quantile(&ten, 0.5), Some(5));
        assert_eq!(quantile(&ten, 0.9), Some(9));
        assert_eq!(quantile(&ten, 1.0), Some(10));
        assert_eq!(quantile(&[1, 2, 3], 0.5), Some(2));
    }
}
