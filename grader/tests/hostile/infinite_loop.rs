//! Hostile submission: a busy loop, never `ready`, that ends by itself after
//! LIFETIME.

use std::time::{Duration, Instant};

const LIFETIME: Duration = Duration::from_secs(60);

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-loop\0".as_ptr()) };
    let start = Instant::now();
    let mut spins: u64 = 0;
    while start.elapsed() < LIFETIME {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    println!("spun {spins} times");
}
