//! The latency the element adds, as it answers the latency query: the engine's estimate at
//! start, raised once to the 95th percentile of what its first frames really took, so that a
//! synchronised sink does not find frames late.
//!
//! Only once: a sink that synchronises holds each push until the reported latency has passed,
//! and the frames queued behind that push would raise it again, without end.

use std::time::Duration;

/// Frames the measurement takes.
const FIRST_FRAMES: usize = 30;
/// How much longer than the estimate frames must take for it to be raised.
const SLACK: f64 = 1.2;

/// What the first frames took from the sink pad to the source pad's task, and the latency
/// reported.
#[derive(Debug)]
pub struct LatencyWatch {
    first: Vec<Duration>,
    reported: Duration,
}

impl LatencyWatch {
    /// A watch reporting `estimate` until the first frames say otherwise.
    pub fn new(estimate: Duration) -> Self {
        LatencyWatch {
            first: Vec::with_capacity(FIRST_FRAMES),
            reported: estimate,
        }
    }

    /// The latency to report.
    pub fn reported(&self) -> Duration {
        self.reported
    }

    /// Records one frame's latency; `true` when the reported latency was raised and the
    /// pipeline should be told (a latency message).
    pub fn record(&mut self, latency: Duration) -> bool {
        if self.first.len() == FIRST_FRAMES {
            return false;
        }
        self.first.push(latency);
        if self.first.len() < FIRST_FRAMES {
            return false;
        }
        self.first.sort_unstable();
        let p95 = self.first[FIRST_FRAMES * 95 / 100];
        let raise = p95.as_secs_f64() > self.reported.as_secs_f64() * SLACK;
        if raise {
            self.reported = p95;
        }
        raise
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reported_latency_rises_once_to_what_the_first_frames_took() {
        let ms = Duration::from_millis;
        let mut watch = LatencyWatch::new(ms(10));
        let raised: Vec<bool> = (0..FIRST_FRAMES as u64)
            .map(|i| watch.record(ms(20 + i)))
            .collect();
        assert_eq!(raised.iter().filter(|&&r| r).count(), 1, "raised once");
        assert!(raised[FIRST_FRAMES - 1], "after the first frames");
        assert_eq!(watch.reported(), ms(48), "their 95th percentile");
        assert!(!watch.record(ms(500)), "then it stays");
        assert_eq!(watch.reported(), ms(48));
        let mut quick = LatencyWatch::new(ms(40));
        assert!(
            (0..FIRST_FRAMES).all(|_| !quick.record(ms(41))),
            "within the slack"
        );
    }
}
