//! Fault injection, driven by a seed.
//!
//! Every random choice a test makes (the gaps between the signals of a
//! storm, and later pauses, kills and short writes) comes from an RNG seeded
//! with the run's seed and the test's name, so `--seed N --only TEST` replays
//! exactly what a full run did in that test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::cgroup::Census;
use crate::signals;

/// The RNG of one test: a function of the run's seed and the test's name.
pub fn test_rng(seed: u64, test: &str) -> fastrand::Rng {
    // FNV-1a: a stable hash (std's DefaultHasher may change across releases,
    // and seeds must replay across grader builds).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in test.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fastrand::Rng::with_seed(h)
}

/// A burst of `count` signals to one process, spread over about `spread`.
#[derive(Debug, Clone)]
pub struct SignalStorm {
    pub pid: Pid,
    pub signal: Signal,
    pub count: u32,
    /// The seeded gap before each signal.
    gaps: Vec<Duration>,
}

impl SignalStorm {
    pub fn new(
        pid: Pid,
        signal: Signal,
        count: u32,
        spread: Duration,
        rng: &mut fastrand::Rng,
    ) -> SignalStorm {
        let mean_us = spread.as_micros() as u64 / u64::from(count.max(1));
        let gaps = (0..count)
            .map(|_| {
                if mean_us == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_micros(rng.u64(0..=2 * mean_us))
                }
            })
            .collect();
        SignalStorm {
            pid,
            signal,
            count,
            gaps,
        }
    }

    /// What the storm does, for reports.
    pub fn describe(&self, spread_ms: u64) -> String {
        let name = signals::name(self.signal);
        match (self.count, spread_ms) {
            (1, _) => format!("sent {name}"),
            (n, 0) => format!("sent {name} ×{n}, back to back"),
            (n, ms) => format!("sent {name} ×{n}, spread over ~{ms} ms with seeded gaps"),
        }
    }

    /// Sends the signals; stops early when `stop` is set or the process is
    /// gone. Returns how many were delivered to the kernel.
    pub fn run(&self, stop: &AtomicBool) -> u32 {
        let mut sent = 0;
        for gap in &self.gaps {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            pace(*gap);
            if nix::sys::signal::kill(self.pid, self.signal).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    }

    /// Runs the storm on a thread of its own.
    pub fn spawn(self, stop: Arc<AtomicBool>) -> JoinHandle<u32> {
        in_background("signal-storm", move || self.run(&stop))
    }
}

/// The CPUs this process may run on.
pub fn available_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a cpu_set_t we own; zeroed is empty.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` is a valid, writable cpu_set_t of `size` bytes.
    if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
        return vec![0];
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: reads a bit of an initialised set, index in range.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// A seeded CPU placement for one round: half the time every CPU, half the
/// time a single one, where processes interleave only by preemption (a
/// different schedule, and different races, from true parallelism).
pub fn cpu_placement(available: &[usize], rng: &mut fastrand::Rng) -> Vec<usize> {
    if available.len() > 1 && rng.bool() {
        available.to_vec()
    } else {
        vec![available[rng.usize(..available.len().max(1))]]
    }
}

pub fn describe_cpus(cpus: &[usize], available: usize) -> String {
    if cpus.len() == available && available > 1 {
        format!("processes spread over all {available} CPUs (seeded placement)")
    } else {
        format!(
            "every process pinned to CPU {} (seeded placement: interleaving by preemption only)",
            cpus.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}

/// The live processes `leader` forked that are still in its process group
/// (found through the round's `census` when it has one).
pub fn children_of(leader: Pid, census: Option<&Census>) -> Vec<Pid> {
    crate::harness::procfs::live_group_members(leader, census)
        .into_iter()
        .filter(|(pid, state)| *pid != leader && *state != 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// A seeded choice; `items` must not be empty.
pub fn pick<T: Copy>(items: &[T], rng: &mut fastrand::Rng) -> (usize, T) {
    let i = rng.usize(..items.len());
    (i, items[i])
}

/// Seeded pauses: SIGSTOP a process (or one of its children), hold it for a
/// seeded time, SIGCONT. A paused process that holds a lock, or is half-way
/// through an update, widens every race window around it.
#[derive(Debug, Clone)]
pub struct Pauses {
    leader: Pid,
    children: bool,
    census: Option<Census>,
    /// (gap before, hold, seed for the choice of child) per pause.
    plan: Vec<(Duration, Duration, u64)>,
    max_hold: Duration,
}

impl Pauses {
    /// `census`: the round's, where the children are looked for.
    pub fn new(
        leader: Pid,
        children: bool,
        census: Option<Census>,
        count: u32,
        spread: Duration,
        max_hold: Duration,
        rng: &mut fastrand::Rng,
    ) -> Pauses {
        let mean_us = spread.as_micros() as u64 / u64::from(count.max(1));
        let max_us = max_hold.as_micros().max(1) as u64;
        let plan = (0..count)
            .map(|_| {
                let gap = Duration::from_micros(rng.u64(0..=2 * mean_us));
                let hold = Duration::from_micros(rng.u64(1..=max_us));
                (gap, hold, rng.u64(..))
            })
            .collect();
        Pauses {
            leader,
            children,
            census,
            plan,
            max_hold,
        }
    }

    pub fn describe(&self) -> String {
        let whom = if self.children {
            "a seeded child of the process"
        } else {
            "the process"
        };
        format!(
            "paused {whom} {} times (SIGSTOP, up to {} ms, then SIGCONT) at seeded moments",
            self.plan.len(),
            self.max_hold.as_millis()
        )
    }

    /// Runs the pauses; stops at once when `halt` is halted (a pause being
    /// held ends with its SIGCONT then). A pause whose target is gone is
    /// skipped. Every SIGSTOP is followed by its SIGCONT.
    pub fn run(&self, halt: &Halt) -> u32 {
        let mut done = 0;
        for &(gap, hold, choice) in &self.plan {
            if halt.wait(gap) {
                break;
            }
            let target = if self.children {
                let kids = children_of(self.leader, self.census.as_ref());
                if kids.is_empty() {
                    continue;
                }
                kids[(choice % kids.len() as u64) as usize]
            } else {
                self.leader
            };
            if nix::sys::signal::kill(target, Signal::SIGSTOP).is_err() {
                continue;
            }
            let halted = halt.wait(hold);
            let _ = nix::sys::signal::kill(target, Signal::SIGCONT);
            done += 1;
            if halted {
                break;
            }
        }
        done
    }

    /// Runs the pauses on a thread of its own, until `halt` is halted or
    /// the plan is done.
    pub fn spawn(self, halt: Arc<Halt>) -> JoinHandle<u32> {
        in_background("pauses", move || self.run(&halt))
    }
}

/// Stops a run of pauses from another thread, waking it from its wait:
/// pauses only widen race windows while a program works, so once the test
/// waits for the program to end (or the round ends) the rest of the plan
/// is dropped, rather than waited out (in task3's stress test the workers
/// are done in about 30 ms of a 150 ms plan, and each round waited for the
/// rest).
#[derive(Debug, Default)]
pub struct Halt {
    halted: Mutex<bool>,
    wake: Condvar,
}

impl Halt {
    pub fn halt(&self) {
        *self.halted.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Waits `d`, or until halted; true if halted. This is the pacing of
    /// the faults (the seeded gap and hold), never a wait for the program.
    pub fn wait(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut halted = self.halted.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *halted {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            halted = self
                .wake
                .wait_timeout(halted, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A background fault injection's thread, returning how many faults it
/// delivered.
fn in_background(name: &str, run: impl FnOnce() -> u32 + Send + 'static) -> JoinHandle<u32> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .expect("spawn a fault injection thread")
}

/// Waits out a seeded gap between injected faults. This is pacing, the point
/// of the fault (spreading a storm over a flood of output), never a way to
/// wait for the program: those waits are conditions with deadlines.
fn pace(gap: Duration) {
    if !gap.is_zero() {
        std::thread::sleep(gap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_gaps_other_seed_other_gaps() {
        let pid = Pid::this();
        let storm = |seed| {
            SignalStorm::new(
                pid,
                Signal::SIGINT,
                50,
                Duration::from_millis(10),
                &mut test_rng(seed, "t"),
            )
            .gaps
        };
        assert_eq!(storm(7), storm(7));
        assert_ne!(storm(7), storm(8));
        assert_ne!(test_rng(1, "a").u64(..), test_rng(1, "b").u64(..));
    }
}
