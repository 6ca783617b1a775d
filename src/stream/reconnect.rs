//! Keeping a live source going: when it falls silent or fails after frames have flowed,
//! it is restarted (a network source reconnects) every [`RETRY_EVERY`] until frames come back;
//! after [`Patience::reconnect`] without a frame the run ends cleanly. A source that never
//! delivered a frame is not retried: its error, or silence past [`Patience::first_frame`], is
//! the run's error.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Patience;
use crate::telemetry::SourceMeter;
use crate::video::FrameSource;
use crate::{Error, Result};

/// Longest pause between two reconnection attempts.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// What the source stage should do about a source that gave no frame.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Keep pulling.
    Wait,
    /// Give up: nothing for `silent`; `last_error` is what the source last reported.
    Lost {
        silent: Duration,
        last_error: Option<String>,
    },
}

/// The reconnection state of one live source.
pub(super) struct Reconnect {
    patience: Patience,
    retry_every: Duration,
    last_frame: Instant,
    last_attempt: Instant,
    seen_frame: bool,
    last_error: Option<String>,
    /// Counts the failures and reconnections.
    meter: Arc<SourceMeter>,
}

impl Reconnect {
    /// Waits as long as `patience` says; failures and reconnections are counted on `meter`.
    pub fn new(patience: Patience, meter: Arc<SourceMeter>) -> Self {
        let now = Instant::now();
        Reconnect {
            patience,
            retry_every: RETRY_EVERY.min(patience.reconnect / 2),
            last_frame: now,
            last_attempt: now,
            seen_frame: false,
            last_error: None,
            meter,
        }
    }

    /// A frame arrived.
    pub fn frame_arrived(&mut self) {
        if self.last_error.take().is_some() || self.last_attempt > self.last_frame {
            tracing::info!("the source is back");
        }
        self.last_frame = Instant::now();
        self.seen_frame = true;
    }

    /// Whether the source reported an error since its last frame.
    pub fn failing(&self) -> bool {
        self.last_error.is_some()
    }

    /// No frame came this time (`error` when the source failed, otherwise it was silent):
    /// reconnects when it is time, and says whether to go on.
    ///
    /// # Errors
    /// `error` itself before the first frame; an [`Error::Pipeline`] when no first frame comes
    /// in time.
    pub fn idle(&mut self, source: &mut FrameSource, error: Option<Error>) -> Result<Verdict> {
        if let Some(error) = error {
            self.meter.errors.fetch_add(1, Ordering::Relaxed);
            if !self.seen_frame {
                return Err(error);
            }
            if self.last_error.is_none() {
                tracing::warn!("the source failed: {error}; reconnecting");
            }
            self.last_error = Some(error.to_string());
        }
        let silent = self.last_frame.elapsed();
        if !self.seen_frame {
            if silent >= self.patience.first_frame {
                return Err(Error::Pipeline(format!(
                    "no frame from the source within {:.1} s (is it sending? --start-timeout waits longer)",
                    self.patience.first_frame.as_secs_f64()
                )));
            }
            return Ok(Verdict::Wait);
        }
        if silent >= self.patience.reconnect {
            return Ok(Verdict::Lost {
                silent,
                last_error: self.last_error.take(),
            });
        }
        if self.last_attempt.max(self.last_frame).elapsed() >= self.retry_every {
            tracing::info!(
                "no frame for {:.1} s: reconnecting the source",
                silent.as_secs_f64()
            );
            self.last_attempt = Instant::now();
            self.meter.reconnects.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = source.restart() {
                tracing::warn!("reconnecting failed: {error}");
                self.last_error = Some(error.to_string());
            }
        }
        Ok(Verdict::Wait)
    }
}
