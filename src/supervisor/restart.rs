//! The crash back-off (README, "Supervision"): pure arithmetic.

use std::time::Duration;

/// A dyno up this long before crashing starts its back-off afresh.
pub(crate) const RESET_AFTER: Duration = Duration::from_secs(10 * 60);

/// The wait before restarting a dyno that has crashed `crashes` times in a row before
/// this crash: 0 (the first restart is immediate), then 1 s, 2 s, 4 s ... up to `cap`.
pub(crate) fn delay(crashes: u32, cap: Duration) -> Duration {
    match crashes {
        0 => Duration::ZERO,
        n => Duration::from_secs(1u64.checked_shl(n - 1).unwrap_or(u64::MAX)).min(cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_up_to_the_cap() {
        let cap = Duration::from_secs(300);
        let got: Vec<u64> = (0..12).map(|n| delay(n, cap).as_secs()).collect();
        assert_eq!(got, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(delay(200, cap), cap);
        assert_eq!(delay(3, Duration::from_secs(3)), Duration::from_secs(3));
    }
}
