//! Per-sample latency of the memory sampler: 50 `sleep` dynos, each in its own process
//! group as hkrun starts them, sampled 200 times. Run with `cargo bench --bench sampler`.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hkrun::dyno::Slot;
use hkrun::os::memory::Sampler;
use nix::unistd::Pid;

const DYNOS: u32 = 50;
const SAMPLES: usize = 200;

struct Dynos(Vec<Child>);

impl Drop for Dynos {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn main() {
    let dynos = Dynos(
        (0..DYNOS)
            .map(|_| {
                Command::new("sleep")
                    .arg("1000")
                    .stdin(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .expect("spawn sleep")
            })
            .collect(),
    );
    let groups: Vec<(Slot, Pid)> = dynos
        .0
        .iter()
        .zip(1..)
        .map(|(child, n)| {
            (
                Slot::new("sleeper", n),
                Pid::from_raw(i32::try_from(child.id()).expect("pid")),
            )
        })
        .collect();
    let mut sampler = Sampler::default();
    let processes = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            })
            .count()
        })
        .unwrap_or(0);
    let mut times: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            let sample = sampler.sample(&groups);
            let took = start.elapsed();
            assert_eq!(sample.len(), groups.len());
            took
        })
        .collect();
    times.sort();
    let mean = times.iter().sum::<Duration>() / u32::try_from(SAMPLES).expect("fits");
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "sampler: {DYNOS} dynos, {processes} processes on the machine, {SAMPLES} samples: mean {:?}, p50 {:?}, p99 {:?}, max {:?}",
        mean,
        at(0.5),
        at(0.99),
        times[times.len() - 1]
    );
    println!(
        "at one sample a second that is {:.3}% of one core",
        mean.as_secs_f64() * 100.0
    );
}
