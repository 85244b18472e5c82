//! Live logs of each app for `outpost tail`: request lines and guest
//! stdout/stderr, as JSON events. Nothing is formatted unless someone
//! listens.

use crate::RequestId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::broadcast;

/// Events a slow listener may fall behind by before it misses some.
const TAIL_BUFFER: usize = 1024;

/// One event, serialized as a JSON object.
pub type TailEvent = Arc<str>;

/// The tails of all apps, by app name. They outlive app versions: a
/// listener keeps receiving across deploys and rollbacks.
#[derive(Clone, Default)]
pub(crate) struct Tails(Arc<Mutex<HashMap<String, Tail>>>);

impl Tails {
    pub(crate) fn of(&self, app: &str) -> Tail {
        let mut tails = self.0.lock().expect("tails lock");
        tails.entry(app.to_owned()).or_default().clone()
    }
}

/// One app's tail. Its channel is made by the first listener: its buffer
/// is tens of KiB, too much to hold for each of 1,000 apps nobody tails.
#[derive(Clone, Default)]
pub(crate) struct Tail(Arc<OnceLock<broadcast::Sender<TailEvent>>>);

impl Tail {
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<TailEvent> {
        self.0
            .get_or_init(|| broadcast::channel(TAIL_BUFFER).0)
            .subscribe()
    }

    pub(crate) fn is_watched(&self) -> bool {
        self.0.get().is_some_and(|tx| tx.receiver_count() > 0)
    }

    fn send(&self, event: serde_json::Value) {
        if let Some(tx) = self.0.get() {
            let _ = tx.send(event.to_string().into());
        }
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
            self.send(event);
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
        self.send(event);
    }
}

/// What the tail says about a request, captured only when someone listens.
pub(crate) struct RequestSummary {
    pub(crate) id: RequestId,
    pub(crate) method: http::Method,
    pub(crate) path: String,
}
