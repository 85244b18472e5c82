//! `GET /v1/apps/APP/tail`: an app's live events as server-sent events.

use super::AdminBody;
use bytes::Bytes;
use http::{Response, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use outpost_core::Runtime;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// A comment line this often keeps proxies from closing an idle stream and
/// tells us when the client is gone.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub(crate) fn tail(runtime: &Runtime, app: &str) -> Response<AdminBody> {
    let mut events = runtime.tail(app);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let app = app.to_owned();
    tokio::spawn(async move {
        // The first bytes tell the client the stream is live.
        if tx
            .send(Bytes::from(format!(": tailing {app}\n\n")))
            .await
            .is_err()
        {
            return;
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            let chunk = tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => Bytes::from(format!("data: {event}\n\n")),
                    Err(broadcast::error::RecvError::Lagged(missed)) => Bytes::from(format!(
                        "data: {{\"type\":\"lagged\",\"missed\":{missed}}}\n\n"
                    )),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-store")
        .body(SseBody(rx).boxed_unsync())
        .expect("static response parts are valid")
}

/// The body of an event stream: whatever the forwarding task sends.
struct SseBody(mpsc::Receiver<Bytes>);

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}
