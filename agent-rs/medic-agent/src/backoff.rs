//! Reconnect delays: exponential back-off with full jitter, and a lower ceiling while an outage
//! is young.
//!
//! The n-th delay is drawn uniformly from `0 ..= min(cap, base * 2^n)`. Full jitter spreads a
//! fleet of agents that lost the server at the same moment over the whole window, instead of
//! having them all knock again in lock-step. [`Backoff::reset`] starts over (after a `Welcome`).
//!
//! Most outages are a server restart or a deploy: a few seconds. With one ceiling for every
//! outage, each attempt that fails during those seconds doubles an agent's next delay, and the
//! last agents of a fleet came back about a minute after the server did (measured: 10,000 agents,
//! all welcomed 28-46 s after the new server answered, 99% of them within 13 s). So while the
//! outage is younger than `young` (counted by the caller from the end of the last welcomed
//! stream, or from the agent's start), the ceiling stops at `young_cap`; older outages back off
//! up to `cap`, as before. A young outage costs the server's side one connection attempt per
//! agent every `young_cap / 2` on average: for 10,000 agents and a 10 s ceiling about 2,000
//! refused connects a second while nothing listens, which is what a closed port or a load
//! balancer answers cheaply.

use std::time::Duration;

/// How long an outage counts as young (a restart, a deploy), and the ceiling meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YoungOutage {
    /// Outages younger than this are young.
    pub lasting: Duration,
    /// The longest delay while the outage is young.
    pub cap: Duration,
}

/// The delays between connection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    young: YoungOutage,
    attempt: u32,
    random: SplitMix64,
}

impl Backoff {
    /// From `base` up to `cap` (up to `young.cap` while an outage is young); `seed` drives the
    /// jitter.
    pub fn new(base: Duration, cap: Duration, young: YoungOutage, seed: u64) -> Self {
        Self {
            base,
            cap,
            young,
            attempt: 0,
            random: SplitMix64(seed),
        }
    }

    /// The protocol's back-off: from 1 s up to 10 s during the first two minutes of an outage,
    /// then up to 60 s.
    pub fn for_reconnects(seed: u64) -> Self {
        let young = YoungOutage {
            lasting: Duration::from_secs(120),
            cap: Duration::from_secs(10),
        };
        Self::new(Duration::from_secs(1), Duration::from_secs(60), young, seed)
    }

    /// The longest the next delay may be, `outage` into an outage.
    pub fn ceiling(&self, outage: Duration) -> Duration {
        let cap = if outage < self.young.lasting {
            self.young.cap.min(self.cap)
        } else {
            self.cap
        };
        self.doubled().min(cap)
    }

    /// `base * 2^attempt`, saturating.
    fn doubled(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor)
    }

    /// The next delay, `outage` into an outage (how long ago the last welcomed stream ended, or
    /// the agent started).
    pub fn next_delay(&mut self, outage: Duration) -> Duration {
        let ceiling = self.ceiling(outage);
        // The counter keeps growing up to the long ceiling even while a young outage caps the
        // delay, so an outage that outlives `young.lasting` goes on from where doubling is.
        if self.doubled() < self.cap {
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

    const OLD: Duration = Duration::from_secs(600);
    const YOUNG: Duration = Duration::from_secs(5);

    #[test]
    fn ceilings_double_from_one_second_up_to_a_minute() {
        let mut backoff = Backoff::for_reconnects(7);
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            ceilings.push(backoff.ceiling(OLD).as_secs());
            backoff.next_delay(OLD);
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_young_outage_caps_the_delay_at_ten_seconds_and_an_old_one_goes_on_doubling() {
        let mut backoff = Backoff::for_reconnects(7);
        let mut ceilings = Vec::new();
        for _ in 0..7 {
            ceilings.push(backoff.ceiling(YOUNG).as_secs());
            assert!(backoff.next_delay(YOUNG) <= Duration::from_secs(10));
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 10, 10, 10]);
        // Two minutes in, the same agent is back on the long ceiling where doubling got to.
        assert_eq!(backoff.ceiling(Duration::from_secs(120)).as_secs(), 60);
        assert_eq!(backoff.ceiling(Duration::from_secs(119)).as_secs(), 10);
    }

    #[test]
    fn every_delay_lies_between_zero_and_its_ceiling_and_they_spread() {
        let mut backoff = Backoff::for_reconnects(42);
        let mut at_cap = Vec::new();
        for _ in 0..200 {
            let ceiling = backoff.ceiling(OLD);
            let delay = backoff.next_delay(OLD);
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
            backoff.next_delay(OLD);
        }
        assert_eq!(backoff.ceiling(OLD), Duration::from_secs(60));
        backoff.reset();
        assert_eq!(backoff.ceiling(OLD), Duration::from_secs(1));
        assert!(backoff.next_delay(OLD) <= Duration::from_secs(1));
    }

    #[test]
    fn the_attempt_counter_never_overflows() {
        let young = YoungOutage {
            lasting: Duration::ZERO,
            cap: Duration::MAX,
        };
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::MAX, young, 3);
        for _ in 0..100 {
            backoff.next_delay(OLD);
        }
        assert!(backoff.ceiling(OLD) > Duration::from_secs(1));
    }
}
