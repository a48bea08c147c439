//! What the AppView's ingest tests share: ingest running in the test process, stoppable,
//! and waiting for a condition with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atelier_appview::ingest::{self, IngestConfig, IngestStats};
use atelier_appview::store::AnyStore;

/// How long any single step of an ingest test may take.
pub(crate) const STEP: Duration = Duration::from_secs(60);

/// Ingest running in this process, stoppable.
pub(crate) struct Ingest {
    pub(crate) stats: Arc<IngestStats>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), atelier_appview::AppViewError>>,
}

impl Ingest {
    /// Starts following `config.source` into `store`.
    pub(crate) fn spawn(config: IngestConfig, store: Arc<AnyStore>) -> Ingest {
        let stats = Arc::new(IngestStats::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = {
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                ingest::run(&config, store, stats, async move {
                    let _ = stopped.await;
                })
                .await
            })
        };
        Ingest { stats, stop, task }
    }

    /// Stops ingest (its last batch committed) and returns its counters.
    pub(crate) async fn stop(self) -> Arc<IngestStats> {
        let _ = self.stop.send(());
        tokio::time::timeout(STEP, self.task)
            .await
            .expect("ingest stops in time")
            .expect("ingest task")
            .expect("ingest ends cleanly");
        self.stats
    }
}

/// Waits until `check` holds, or fails after [`STEP`] with `what`.
pub(crate) async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + STEP;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
