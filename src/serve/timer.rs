//! The timer hyper uses for an HTTP/1 connection's header read timeout,
//! with one tokio sleep per connection, used again for every request.
//!
//! hyper asks its timer for a new sleep each time it starts reading a
//! request head, and drops it once the head is in. With hyper-util's
//! timer that is, per request: a tokio sleep made and boxed, registered in
//! the timer wheel (under the driver's lock) when the connection waits for
//! its next request, and taken out again (the lock again) when the request
//! arrives: a visible share of a keep-alive request answered from memory
//! (figures in docs/performance.md).
//!
//! Here the connection keeps its tokio sleep: a dropped sleep goes back to
//! the connection, and the next one moves the same registration to its new
//! deadline. Moving a deadline later is a compare-and-swap in tokio, not a
//! trip through the wheel. The cost is one wake-up of an idle connection's
//! task when an old deadline passes unneeded; its next poll finds nothing
//! to do.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

type TokioSleep = Pin<Box<tokio::time::Sleep>>;

/// One connection's timer (make one per connection).
#[derive(Clone, Default)]
pub struct ConnectionTimer {
    /// The tokio sleep no request is using now.
    spare: Arc<Mutex<Option<TokioSleep>>>,
}

impl ConnectionTimer {
    fn take_spare(&self) -> Option<TokioSleep> {
        // Nothing panics while this is locked; a poisoned slot is whole.
        self.spare.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let inner = match self.take_spare() {
            Some(mut s) => {
                s.as_mut().reset(deadline.into());
                s
            }
            None => Box::pin(tokio::time::sleep_until(deadline.into())),
        };
        Box::pin(Lent {
            inner: Some(inner),
            home: self.spare.clone(),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        if let Some(mut lent) = sleep.as_mut().downcast_mut_pin::<Lent>()
            && let Some(inner) = lent.inner.as_mut()
        {
            inner.as_mut().reset(new_deadline.into());
        }
    }

    fn now(&self) -> Instant {
        // tokio's clock, which tests can pause and advance.
        tokio::time::Instant::now().into()
    }
}

/// The connection's tokio sleep, lent to one request; given back on drop.
struct Lent {
    /// `Some` until dropped.
    inner: Option<TokioSleep>,
    home: Arc<Mutex<Option<TokioSleep>>>,
}

impl Future for Lent {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut().inner.as_mut() {
            Some(inner) => inner.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Sleep for Lent {}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            *self.home.lock().unwrap_or_else(|e| e.into_inner()) = Some(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// Whether `sleep` has fired, polled once.
    async fn fired(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_fires_at_its_deadline_and_not_before() {
        let timer = ConnectionTimer::default();
        let mut s = timer.sleep(Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!fired(&mut s).await);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(fired(&mut s).await);
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_reuses_the_connection_sleep_with_its_own_deadline() {
        let timer = ConnectionTimer::default();
        let mut first = timer.sleep(Duration::from_secs(30));
        let address = |s: &mut Pin<Box<dyn Sleep>>| {
            let lent = s.as_mut().downcast_mut_pin::<Lent>().expect("a Lent");
            lent.inner
                .as_ref()
                .map(|i| &**i as *const tokio::time::Sleep)
        };
        let used = address(&mut first);
        assert!(used.is_some());
        drop(first);
        tokio::time::advance(Duration::from_secs(20)).await;
        // The same tokio sleep, moved to the new request's deadline: the
        // first one's (30 s from the start) must not end it.
        let mut second = timer.sleep(Duration::from_secs(30));
        assert_eq!(address(&mut second), used);
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(!fired(&mut second).await, "fired at the old deadline");
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(fired(&mut second).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fired_sleep_can_be_lent_again() {
        let timer = ConnectionTimer::default();
        let mut s = timer.sleep(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(fired(&mut s).await);
        drop(s);
        let mut again = timer.sleep(Duration::from_secs(5));
        assert!(!fired(&mut again).await, "still fired from before");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(fired(&mut again).await);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_a_lent_sleep() {
        let timer = ConnectionTimer::default();
        let mut s = timer.sleep(Duration::from_secs(5));
        timer.reset(&mut s, timer.now() + Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!fired(&mut s).await);
        timer.reset(&mut s, timer.now() + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(fired(&mut s).await);
    }
}
