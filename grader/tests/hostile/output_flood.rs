//! Hostile submission: writes 1 GiB to stdout in 64 KiB chunks, all of it
//! one line (no newline: a reader that keeps whole lines keeps 1 GiB),
//! stopping at the first error (EPIPE once the reader is gone) or after
//! LIFETIME.

use std::time::{Duration, Instant};

const LIFETIME: Duration = Duration::from_secs(60);
const CHUNK: usize = 64 << 10;
const TOTAL: u64 = 1 << 30;

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-flood\0".as_ptr()) };
    let start = Instant::now();
    let chunk = vec![b'A'; CHUNK];
    let mut written: u64 = 0;
    let mut why = String::from("all written");
    'flood: while written < TOTAL {
        if start.elapsed() >= LIFETIME {
            why = String::from("out of time");
            break;
        }
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            // SAFETY: writes from a live buffer of rest.len() bytes.
            let n = unsafe { libc::write(1, rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                why = e.to_string();
                break 'flood;
            }
            written += n as u64;
            rest = &rest[n as usize..];
        }
    }
    eprintln!("flood stopped after {written} bytes: {why}");
}
