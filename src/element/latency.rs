//! The latency the element adds, as it answers the latency query: the engine's estimate at
//! start, then the 95th percentile of what its frames really take from the sink pad until the
//! engine has composed them.
//!
//! Measured up to composition, not up to the push: a sink that synchronises holds each push
//! until the reported latency has passed, so the time a frame then waits for the source pad
//! grows with the reported latency itself, and counting it would raise the report without end.
//! The first window of frames sets the report (up or down from the estimate); each later window
//! may only raise it (the machine got busier), so that the pipeline's latency does not swing.

use std::time::Duration;

/// Frames in each measurement window.
const WINDOW: usize = 30;
/// How far the measured percentile may stray from the report before the report changes.
const SLACK: f64 = 1.1;

/// What the frames of the current window took, and the latency reported.
#[derive(Debug)]
pub struct LatencyWatch {
    window: Vec<Duration>,
    reported: Duration,
    /// Whether the first window has set the report.
    settled: bool,
}

impl LatencyWatch {
    /// A watch reporting `estimate` until the first frames say otherwise.
    pub fn new(estimate: Duration) -> Self {
        LatencyWatch {
            window: Vec::with_capacity(WINDOW),
            reported: estimate,
            settled: false,
        }
    }

    /// The latency to report.
    pub fn reported(&self) -> Duration {
        self.reported
    }

    /// Records one frame's latency (sink pad to composed); `true` when the reported latency
    /// changed and the pipeline should be told (a latency message).
    pub fn record(&mut self, latency: Duration) -> bool {
        self.window.push(latency);
        if self.window.len() < WINDOW {
            return false;
        }
        self.window.sort_unstable();
        let p95 = self.window[WINDOW * 95 / 100];
        self.window.clear();
        let (measured, reported) = (p95.as_secs_f64(), self.reported.as_secs_f64());
        let change = match self.settled {
            false => measured > reported * SLACK || measured * SLACK < reported,
            true => measured > reported * SLACK,
        };
        self.settled = true;
        if change {
            self.reported = p95;
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_window_sets_the_report_and_later_ones_only_raise_it() {
        let ms = Duration::from_millis;
        let mut watch = LatencyWatch::new(ms(60));
        let changed: Vec<bool> = (0..WINDOW as u64)
            .map(|i| watch.record(ms(10 + i)))
            .collect();
        assert_eq!(changed.iter().filter(|&&c| c).count(), 1, "changed once");
        assert!(changed[WINDOW - 1], "at the end of the window");
        assert_eq!(watch.reported(), ms(38), "down to its 95th percentile");
        assert!(
            (0..WINDOW).all(|_| !watch.record(ms(5))),
            "a quicker window does not lower it again"
        );
        assert!(
            (0..WINDOW).all(|_| !watch.record(ms(41))),
            "a slower one within the slack leaves it"
        );
        let raised: Vec<bool> = (0..WINDOW).map(|_| watch.record(ms(60))).collect();
        assert!(
            raised[WINDOW - 1] && watch.reported() == ms(60),
            "a busier machine raises it"
        );
        let mut steady = LatencyWatch::new(ms(40));
        assert!(
            (0..WINDOW).all(|_| !steady.record(ms(38))),
            "within the slack"
        );
        assert_eq!(steady.reported(), ms(40));
    }
}
