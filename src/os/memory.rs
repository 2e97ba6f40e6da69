//! Dyno memory: the sampler that reads /proc. It only measures; what a sample means
//! (R14, R15) is the core's decision (`supervisor::core::quota`).

use std::collections::HashMap;
use std::time::Duration;

use nix::unistd::Pid;
use tokio::sync::watch;

use super::proc::Snapshot;
use crate::dyno::Slot;

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
        let snapshot = Snapshot::read();
        // /proc unreadable: no sample, rather than zeros.
        if snapshot.processes().is_empty() {
            return Vec::new();
        }
        snapshot.memory(groups, &mut self.owners)
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
#[cfg_attr(
    target_env = "gnu",
    expect(unsafe_code, reason = "mallopt is glibc's, with no safe wrapper")
)]
pub fn keep_own_memory_small() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes two of the allocator's tuning values; it is safe to call
    // at any time, from any thread.
    unsafe {
        nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, ALLOCATOR_THRESHOLD);
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, ALLOCATOR_THRESHOLD);
    }
}

/// Gives what hkrun has freed back to the system, from every arena of the C library: a
/// drain's queue of megabytes is filled on one thread and emptied on another, and once it
/// has emptied its pages would otherwise stay in hkrun's resident size until the same
/// arena's top is free.
#[cfg_attr(
    target_env = "gnu",
    expect(unsafe_code, reason = "malloc_trim is glibc's, with no safe wrapper")
)]
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory to the system; it is safe to call at
    // any time, from any thread.
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
