//! Dyno memory (DESIGN section 4.4): the pure verdict on a sample, and the sampler that
//! reads /proc. The sampler only measures; the core decides.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nix::unistd::Pid;
use tokio::sync::watch;

use crate::supervisor::input::Slot;

/// What a memory sample means against a quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// At or under the quota.
    Ok,
    /// Over the quota: Heroku's R14.
    OverQuota,
    /// At twice the quota or more: Heroku's R15.
    FarOverQuota,
}

/// Classifies `rss` bytes against `quota` bytes. Computed in u128 so `2 * quota` cannot
/// overflow.
pub fn classify(rss: u64, quota: u64) -> Verdict {
    let (rss, quota) = (u128::from(rss), u128::from(quota));
    if rss >= 2 * quota {
        Verdict::FarOverQuota
    } else if rss > quota {
        Verdict::OverQuota
    } else {
        Verdict::Ok
    }
}

/// Heroku's `Process running mem=600M(117.2%)`.
pub fn usage_line(rss: u64, quota: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    // Precision loss is irrelevant at these magnitudes.
    #[expect(clippy::cast_precision_loss, reason = "megabytes for display")]
    let (mb, percent) = (rss as f64 / MB, rss as f64 * 100.0 / quota.max(1) as f64);
    format!("Process running mem={mb:.0}M({percent:.1}%)")
}

/// Remembers which dyno each process belongs to, so a descendant that left its group
/// (and was re-parented to hkrun) still counts for its dyno.
#[derive(Debug, Default)]
pub struct Sampler {
    owners: HashMap<i32, Slot>,
}

impl Sampler {
    /// Sums the resident memory of each dyno's processes: its process group, plus every
    /// process descended from it, now or when first seen.
    pub fn sample(&mut self, groups: &[(Slot, Pid)]) -> Vec<(Slot, u64)> {
        let page = procfs::page_size();
        let by_group: HashMap<i32, &Slot> = groups.iter().map(|(s, p)| (p.as_raw(), s)).collect();
        let Ok(all) = procfs::process::all_processes() else {
            return Vec::new();
        };
        let stats: Vec<procfs::process::Stat> = all.filter_map(|p| p.ok()?.stat().ok()).collect();
        let alive: HashSet<i32> = stats.iter().map(|s| s.pid).collect();
        self.owners.retain(|pid, _| alive.contains(pid));
        // Group members first, then anything whose parent is known, until nothing changes.
        for stat in &stats {
            if let Some(slot) = by_group.get(&stat.pgrp) {
                self.owners.insert(stat.pid, (*slot).clone());
            }
        }
        loop {
            let mut changed = false;
            for stat in &stats {
                if !self.owners.contains_key(&stat.pid) {
                    if let Some(slot) = self.owners.get(&stat.ppid).cloned() {
                        self.owners.insert(stat.pid, slot);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut totals: Vec<(Slot, u64)> = groups.iter().map(|(s, _)| (s.clone(), 0)).collect();
        for stat in &stats {
            if let Some(slot) = self.owners.get(&stat.pid) {
                if let Some((_, total)) = totals.iter_mut().find(|(s, _)| s == slot) {
                    *total += stat.rss * page;
                }
            }
        }
        totals
    }
}

/// How often dyno memory is sampled (Heroku: every 20 s; hkrun: every second).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// What the C library keeps of freed memory before giving it back, and the size from
/// which an allocation gets pages of its own (glibc's defaults, made fixed).
const ALLOCATOR_THRESHOLD: i32 = 128 * 1024;

/// Makes hkrun give freed memory back to the system as it goes. By default glibc raises
/// both thresholds each time a large block is freed, up to 32 MiB: after a stalled stdout
/// has had its 8 MiB of output queued and written, that memory stayed in hkrun's
/// resident size for good, although almost none of it was in use (the chaos soak saw
/// 7 MB become 25 MB; with fixed thresholds it stays near 3 MB).
#[allow(unsafe_code)]
pub fn keep_own_memory_small() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes two of the allocator's tuning values; it is safe to call
    // at any time, from any thread.
    unsafe {
        nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, ALLOCATOR_THRESHOLD);
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, ALLOCATOR_THRESHOLD);
    }
}

/// Samples the dynos in `groups` every `every` and hands each sample to `report`. Ends
/// when the sender of `groups` is dropped.
pub async fn run(
    mut groups: watch::Receiver<Vec<(Slot, Pid)>>,
    every: Duration,
    report: impl Fn(Vec<(Slot, u64)>),
) {
    let mut sampler = Sampler::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = groups.changed() => if changed.is_err() { return },
            _ = tick.tick() => {
                let list = groups.borrow().clone();
                if list.is_empty() {
                    continue;
                }
                // /proc is read on a blocking thread so the driver never waits on it.
                let Ok((back, samples)) = tokio::task::spawn_blocking(move || {
                    let samples = sampler.sample(&list);
                    (sampler, samples)
                })
                .await
                else {
                    return;
                };
                sampler = back;
                report(samples);
            }
        }
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

    #[test]
    fn heroku_usage_line() {
        assert_eq!(
            usage_line(600 * MB, 512 * MB),
            "Process running mem=600M(117.2%)"
        );
        assert_eq!(
            usage_line(1056 * MB, 512 * MB),
            "Process running mem=1056M(206.2%)"
        );
    }

    #[test]
    fn samples_this_process_group() {
        let me = Pid::this();
        let group = nix::unistd::getpgrp();
        let mut sampler = Sampler::default();
        let got = sampler.sample(&[(Slot::new("web", 1), group)]);
        assert_eq!(got.len(), 1);
        assert!(
            got[0].1 > MB,
            "the test process's own memory counts: {got:?} ({me})"
        );
    }
}
