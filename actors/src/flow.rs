//! Credits: the bound on every hop that carries data.
//!
//! ractor mailboxes are unbounded, so a sender first takes a credit from the
//! receiver's pool and sends it along with the message; the credit returns
//! to the pool when the receiver drops it, i.e. when the data has been dealt
//! with. A slow database therefore stops the reader after `n` batches
//! instead of letting memory grow.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone, Debug)]
pub struct Credits(Arc<Semaphore>);

/// One message's right to be in flight.
#[derive(Debug)]
pub struct Credit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Credits {
    pub fn new(n: usize) -> Self {
        Self(Arc::new(Semaphore::new(n.max(1))))
    }

    /// Waits until fewer than `n` messages are in flight.
    pub async fn take(&self) -> Credit {
        let permit = self
            .0
            .clone()
            .acquire_owned()
            .await
            .expect("the credit semaphore is never closed");
        Credit(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_sender_waits_for_a_returned_credit() {
        let credits = Credits::new(2);
        let a = credits.take().await;
        let _b = credits.take().await;
        let blocked = tokio::time::timeout(Duration::from_millis(50), credits.take()).await;
        assert!(blocked.is_err(), "third credit must wait");
        drop(a);
        let c = tokio::time::timeout(Duration::from_millis(50), credits.take()).await;
        assert!(c.is_ok());
    }
}
