//! Sign-in metrics: OAuth starts, completions, errors by kind and abandonment, rendered
//! into the AppView's `/metrics`.

/// Sign-in counters (filled in by the sign-in pages).
#[derive(Debug, Default)]
pub struct OAuthMetrics {}

impl OAuthMetrics {
    /// Appends the counters in the Prometheus text format to `out`.
    pub fn render(&self, out: &mut String) {
        let _ = out;
    }
}
