//! The sending end of a queue between two stages, under the engine's [`Policy`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::Policy;

/// Anything that travels between stages, counted in frames when dropped.
pub(super) trait Frames {
    /// Frames this item carries.
    fn frames(&self) -> u64;
}

/// The next stage has stopped taking items.
#[derive(Debug)]
pub(super) struct Gone;

/// Sends into a bounded queue: waits for room ([`Policy::Block`]), or makes room by dropping
/// the oldest waiting item and counting its frames ([`Policy::DropOldest`]).
pub(super) struct Outlet<T> {
    tx: Sender<T>,
    /// Under `DropOldest`: a handle on the queue's far end, to take the oldest item out.
    oldest: Option<(Receiver<T>, Arc<AtomicU64>)>,
}

impl<T> Clone for Outlet<T> {
    fn clone(&self) -> Self {
        Outlet {
            tx: self.tx.clone(),
            oldest: self.oldest.clone(),
        }
    }
}

impl<T: Frames> Outlet<T> {
    /// An outlet into the queue `tx`/`rx`; drops are added to `dropped`.
    pub fn new(tx: Sender<T>, rx: &Receiver<T>, policy: Policy, dropped: &Arc<AtomicU64>) -> Self {
        let oldest = (policy == Policy::DropOldest).then(|| (rx.clone(), Arc::clone(dropped)));
        Outlet { tx, oldest }
    }

    /// Sends `item`. Under `DropOldest` this never waits, and the next stage stopping is not
    /// seen here (the outlet holds the queue open): the engine's abort flag covers that.
    pub fn send(&self, mut item: T) -> Result<(), Gone> {
        let Some((oldest, dropped)) = &self.oldest else {
            return self.tx.send(item).map_err(|_| Gone);
        };
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    if let Ok(old) = oldest.try_recv() {
                        dropped.fetch_add(old.frames(), Ordering::Relaxed);
                    }
                    item = back;
                }
                Err(TrySendError::Disconnected(_)) => return Err(Gone),
            }
        }
    }

    /// Items waiting in the queue.
    pub fn len(&self) -> usize {
        self.tx.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    impl Frames for u32 {
        fn frames(&self) -> u64 {
            1
        }
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_counts_the_rest() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = bounded::<u32>(2);
        let outlet = Outlet::new(tx, &rx, Policy::DropOldest, &dropped);
        for i in 0..5 {
            outlet.send(i).unwrap();
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn block_reports_a_stopped_receiver() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = bounded::<u32>(1);
        let outlet = Outlet::new(tx, &rx, Policy::Block, &dropped);
        outlet.send(1).unwrap();
        drop(rx);
        assert!(outlet.send(2).is_err());
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }
}
