//! Live logs of each app for `outpost tail`: request lines and guest
//! stdout/stderr, as JSON events. Nothing is formatted unless someone
//! listens.

use crate::RequestId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Events a slow listener may fall behind by before it misses some.
const TAIL_BUFFER: usize = 1024;

/// One event, serialized as a JSON object.
pub type TailEvent = Arc<str>;

/// The tails of all apps, by app name. They outlive app versions: a
/// listener keeps receiving across deploys and rollbacks.
#[derive(Clone, Default)]
pub(crate) struct Tails(Arc<Mutex<HashMap<String, broadcast::Sender<TailEvent>>>>);

impl Tails {
    pub(crate) fn of(&self, app: &str) -> Tail {
        let mut tails = self.0.lock().expect("tails lock");
        Tail(
            tails
                .entry(app.to_owned())
                .or_insert_with(|| broadcast::channel(TAIL_BUFFER).0)
                .clone(),
        )
    }
}

/// One app's tail.
#[derive(Clone)]
pub(crate) struct Tail(broadcast::Sender<TailEvent>);

impl Tail {
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<TailEvent> {
        self.0.subscribe()
    }

    pub(crate) fn is_watched(&self) -> bool {
        self.0.receiver_count() > 0
    }

    /// A line the guest wrote.
    pub(crate) fn guest_line(&self, request_id: RequestId, stream: &str, line: &str) {
        if self.is_watched() {
            let event = serde_json::json!({
                "type": "log",
                "request_id": request_id.to_string(),
                "stream": stream,
                "line": line,
            });
            let _ = self.0.send(event.to_string().into());
        }
    }

    /// A request the app answered (or failed).
    pub(crate) fn request(&self, request: &RequestSummary, status: u16, micros: u128) {
        let event = serde_json::json!({
            "type": "request",
            "request_id": request.id.to_string(),
            "method": request.method.as_str(),
            "path": request.path,
            "status": status,
            "duration_us": micros,
        });
        let _ = self.0.send(event.to_string().into());
    }
}

/// What the tail says about a request, captured only when someone listens.
pub(crate) struct RequestSummary {
    pub(crate) id: RequestId,
    pub(crate) method: http::Method,
    pub(crate) path: String,
}
