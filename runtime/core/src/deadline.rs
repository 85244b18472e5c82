//! The wall-clock limit, at no cost for guests that finish in one poll.

use std::pin::Pin;
use std::task::Poll;

/// `future`'s output, or `None` if it takes longer than `limit`. The timer
/// is armed only when the first poll does not finish the future: most guests
/// answer within one poll, and then pay nothing for the wall-clock limit.
pub(crate) async fn within<F: Future>(limit: std::time::Duration, future: F) -> Option<F::Output> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut future = std::pin::pin!(future);
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}
