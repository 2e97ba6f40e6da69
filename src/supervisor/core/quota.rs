//! What a memory sample means against a dyno's quota: Heroku's R14 and R15 (README,
//! "Supervision").

/// What a memory sample means against a quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// At or under the quota.
    Ok,
    /// Over the quota: Heroku's R14.
    OverQuota,
    /// At twice the quota or more: Heroku's R15.
    FarOverQuota,
}

/// Classifies `rss` bytes against `quota` bytes. Computed in u128 so `2 * quota` cannot
/// overflow.
pub(super) fn classify(rss: u64, quota: u64) -> Verdict {
    let (rss, quota) = (u128::from(rss), u128::from(quota));
    if rss >= 2 * quota {
        Verdict::FarOverQuota
    } else if rss > quota {
        Verdict::OverQuota
    } else {
        Verdict::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    #[test]
    fn verdicts_at_their_boundaries() {
        let quota = 512 * MB;
        assert_eq!(classify(0, quota), Verdict::Ok);
        assert_eq!(classify(quota, quota), Verdict::Ok);
        assert_eq!(classify(quota + 1, quota), Verdict::OverQuota);
        assert_eq!(classify(2 * quota - 1, quota), Verdict::OverQuota);
        assert_eq!(classify(2 * quota, quota), Verdict::FarOverQuota);
        assert_eq!(classify(u64::MAX, u64::MAX), Verdict::Ok);
        assert_eq!(classify(u64::MAX, u64::MAX / 2 + 1), Verdict::OverQuota);
    }
}
