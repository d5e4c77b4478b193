//! Reconnect delays: exponential back-off with full jitter.
//!
//! The n-th delay is drawn uniformly from `0 ..= min(cap, base * 2^n)`. Full jitter spreads a
//! fleet of agents that lost the server at the same moment over the whole window, instead of
//! having them all knock again in lock-step. [`Backoff::reset`] starts over (after a `Welcome`).

use std::time::Duration;

/// The delays between connection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    random: SplitMix64,
}

impl Backoff {
    /// From `base` up to `cap`; `seed` drives the jitter.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
            random: SplitMix64(seed),
        }
    }

    /// The protocol's back-off: from 1 s up to 60 s.
    pub fn for_reconnects(seed: u64) -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60), seed)
    }

    /// The longest the next delay may be.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        if ceiling < self.cap {
            self.attempt = self.attempt.saturating_add(1);
        }
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.random.next() % millis.saturating_add(1))
    }

    /// Start over from the base delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A small, fast generator: jitter needs spread, not secrecy.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_from_one_second_up_to_a_minute() {
        let mut backoff = Backoff::for_reconnects(7);
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            ceilings.push(backoff.ceiling().as_secs());
            backoff.next_delay();
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn every_delay_lies_between_zero_and_its_ceiling_and_they_spread() {
        let mut backoff = Backoff::for_reconnects(42);
        let mut at_cap = Vec::new();
        for _ in 0..200 {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay();
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            if ceiling == Duration::from_secs(60) {
                at_cap.push(delay);
            }
        }
        let low = at_cap
            .iter()
            .filter(|d| **d < Duration::from_secs(20))
            .count();
        let high = at_cap
            .iter()
            .filter(|d| **d > Duration::from_secs(40))
            .count();
        assert!(
            low > 20 && high > 20,
            "full jitter covers the window: {low} low, {high} high"
        );
    }

    #[test]
    fn reset_starts_over_from_the_base() {
        let mut backoff = Backoff::for_reconnects(1);
        for _ in 0..10 {
            backoff.next_delay();
        }
        assert_eq!(backoff.ceiling(), Duration::from_secs(60));
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn the_attempt_counter_never_overflows() {
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::MAX, 3);
        for _ in 0..100 {
            backoff.next_delay();
        }
        assert!(backoff.ceiling() > Duration::from_secs(1));
    }
}
