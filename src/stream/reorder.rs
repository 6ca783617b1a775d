//! Putting frames back in sequence order after parallel workers may have swapped them.

use std::collections::BTreeMap;

use crate::video::Frame;

/// Holds frames that arrived early until their predecessors come.
#[derive(Debug, Default)]
pub struct Reorder {
    next: u64,
    waiting: BTreeMap<u64, Frame>,
}

impl Reorder {
    /// Takes `frame`; returns the frames now ready, in order.
    pub fn push(&mut self, frame: Frame) -> Vec<Frame> {
        self.waiting.insert(frame.seq, frame);
        let mut ready = Vec::new();
        while let Some(frame) = self.waiting.remove(&self.next) {
            ready.push(frame);
            self.next += 1;
        }
        ready
    }

    /// Whatever is still waiting (after an upstream failure left gaps), in order.
    pub fn drain(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.waiting).into_values().collect()
    }
}
