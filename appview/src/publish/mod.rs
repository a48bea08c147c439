//! The publishing API: signed-in users publish AC records and media to their own PDS
//! through the AppView.

use std::sync::Arc;

use axum::Router;

/// What the safety filter does with a publish whose text matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextPolicy {
    /// Refuse the publish (422, naming the field).
    #[default]
    Block,
    /// Publish with the matches masked.
    Mask,
}

/// The publishing pipeline's settings (`appview.publish`).
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Largest image blob (painting thumbnails), bytes.
    pub max_image_bytes: u64,
    /// Largest video blob (tapes), bytes.
    pub max_video_bytes: u64,
    /// What matching text does.
    pub text_policy: TextPolicy,
}

impl Default for PublishConfig {
    fn default() -> PublishConfig {
        PublishConfig {
            max_image_bytes: 1 << 20,
            max_video_bytes: 50 << 20,
            text_policy: TextPolicy::Block,
        }
    }
}

/// The publishing pipeline.
#[derive(Debug)]
pub struct Publisher {}

impl Publisher {
    /// Appends the publishing metrics to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        let _ = out;
    }
}

/// The publishing routes.
pub fn routes<S: Clone + Send + Sync + 'static>(publisher: Arc<Publisher>) -> Router<S> {
    let _ = publisher;
    Router::new()
}
