//! Time is injected so that tests are deterministic.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A source of wall-clock time for tree head timestamps, and of the waits
/// measured in it (the sequencer's wait to re-sign an idle log's head).
pub trait Clock: Send + Sync {
    /// Returns milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Resolves once [`Clock::now_ms`] has reached `deadline_ms`.
    ///
    /// The default sleeps on the runtime's timer for the difference and
    /// checks again, so a clock stepped back by NTP makes the wait longer,
    /// never shorter; a test clock resolves when the test moves it.
    fn sleep_until_ms(&self, deadline_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let now = self.now_ms();
                if now >= deadline_ms {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(deadline_ms - now)).await;
            }
        })
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to, for tests: waits on it resolve
/// as soon as it is set at or past their deadline, with no timer involved.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: watch::Sender<u64>,
}

impl ManualClock {
    /// Returns a clock that reads `now_ms` until it is set.
    pub fn new(now_ms: u64) -> Self {
        ManualClock {
            now_ms: watch::Sender::new(now_ms),
        }
    }

    /// Sets the time, forwards or back.
    pub fn set_ms(&self, now_ms: u64) {
        self.now_ms.send_replace(now_ms);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now_ms
            .send_modify(|now| *now = now.saturating_add(by.as_millis() as u64));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        *self.now_ms.borrow()
    }

    fn sleep_until_ms(&self, deadline_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut now = self.now_ms.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, which outlives this future.
            let _ = now.wait_for(|&now| now >= deadline_ms).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_its_sleepers_when_set_past_their_deadline() {
        let clock = ManualClock::new(1_000);
        let mut wait = clock.sleep_until_ms(2_000);
        // Not yet: polled once, it is pending.
        assert!(futures_poll_once(&mut wait).await.is_none());
        clock.advance(Duration::from_millis(999));
        assert!(futures_poll_once(&mut wait).await.is_none());
        clock.set_ms(2_000);
        wait.await;
        assert_eq!(clock.now_ms(), 2_000);
    }

    /// Polls `fut` once; `Some` when it is ready.
    async fn futures_poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match Pin::new(&mut *fut).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
