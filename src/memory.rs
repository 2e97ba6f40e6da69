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
/// Samples between two trims of hkrun's own free memory (`trim_own`).
const TRIM_EVERY: u32 = 10;

/// Gives the memory hkrun has freed back to the system. The C library keeps freed memory
/// in each thread's arena for reuse; after a stalled stdout has had 8 MiB of output
/// queued, that stays in hkrun's resident size, though almost none of it is in use.
#[allow(unsafe_code)]
pub fn trim_own() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas; it is
    // safe to call from any thread at any time.
    unsafe {
        nix::libc::malloc_trim(0);
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
    let mut samples_taken: u32 = 0;
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
                samples_taken = samples_taken.wrapping_add(1);
                let trim = samples_taken % TRIM_EVERY == 0;
                let Ok((back, samples)) = tokio::task::spawn_blocking(move || {
                    let samples = sampler.sample(&list);
                    if trim {
                        trim_own();
                    }
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
