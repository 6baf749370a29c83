//! Deadlines, and polling for conditions the kernel cannot notify us of.

use std::time::{Duration, Instant};

/// A point in time after which a wait gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(budget: Duration) -> Deadline {
        Deadline(Instant::now() + budget)
    }

    pub fn after_ms(ms: u64) -> Deadline {
        Deadline::after(Duration::from_millis(ms))
    }

    pub fn at(when: Instant) -> Deadline {
        Deadline(when)
    }

    /// Time left, zero once passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    pub fn passed(self) -> bool {
        Instant::now() >= self.0
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        std::cmp::min(self, other)
    }
}

/// Polls `check` until it returns `Some`, or the deadline passes.
///
/// For conditions only visible by looking (a bit in `/proc/PID/status`, a
/// process group becoming empty). The interval starts at 50 µs and doubles up
/// to 5 ms, so a condition that is already true or soon true costs almost
/// nothing, and a long wait costs little CPU. This is pacing between looks,
/// not synchronisation: the result never depends on the interval.
pub fn poll_until<T>(deadline: Deadline, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let mut interval = Duration::from_micros(50);
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        let left = deadline.remaining();
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(interval.min(left));
        interval = (interval * 2).min(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_returns_as_soon_as_true() {
        let mut n = 0;
        let got = poll_until(Deadline::after_ms(1000), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, Some(3));
    }

    #[test]
    fn poll_gives_up_at_deadline() {
        let start = Instant::now();
        let got: Option<()> = poll_until(Deadline::after_ms(20), || None);
        assert!(got.is_none());
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
