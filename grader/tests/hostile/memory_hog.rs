//! Hostile submission: reserves memory 64 MiB at a time, up to 4 GiB, stops
//! at the first reservation that fails, then touches everything it got and
//! holds it until LIFETIME is over.
//!
//! It says "allocation refused" as soon as the limit refuses (reserving is
//! what `RLIMIT_DATA` counts), before it touches a page: zeroing a GiB takes
//! seconds on a loaded machine, longer than a test waits for a line.

use std::time::{Duration, Instant};

const LIFETIME: Duration = Duration::from_secs(60);
const CHUNK: usize = 64 << 20;
const TOTAL: usize = 4 << 30;

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-mem\0".as_ptr()) };
    let start = Instant::now();
    let mut held: Vec<Vec<u8>> = Vec::new();
    while held.len() * CHUNK < TOTAL && start.elapsed() < LIFETIME {
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(CHUNK).is_err() {
            eprintln!("allocation refused");
            break;
        }
        held.push(chunk);
    }
    for chunk in &mut held {
        // SAFETY: the capacity is CHUNK bytes; memset writes every byte (so
        // every page is really there, and fast even in a debug build) before
        // they count as initialised.
        unsafe {
            std::ptr::write_bytes(chunk.as_mut_ptr(), 0xa5, CHUNK);
            chunk.set_len(CHUNK);
        }
    }
    eprintln!("holding {} MiB", held.len() * (CHUNK >> 20));
    while let Some(left) = LIFETIME.checked_sub(start.elapsed()) {
        std::hint::black_box(&held);
        std::thread::sleep(left.min(Duration::from_secs(1)));
    }
}
