//! Hostile submission: fills its working directory with 64 MiB files
//! (`cgh-fill-N`), up to 1 GiB, stops at the first error, and holds until
//! LIFETIME is over. Says where it wrote (`fill dir: PATH`).

use std::io::Write;
use std::time::{Duration, Instant};

const LIFETIME: Duration = Duration::from_secs(60);
const FILE: usize = 64 << 20;
const TOTAL: usize = 1 << 30;
const BLOCK: usize = 1 << 20;

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-disk\0".as_ptr()) };
    let start = Instant::now();
    let cwd = std::env::current_dir().unwrap_or_default();
    println!("fill dir: {}", cwd.display());
    eprintln!("fill dir: {}", cwd.display());
    let block = vec![b'F'; BLOCK];
    let mut written = 0;
    'fill: for i in 0..TOTAL / FILE {
        let mut file = match std::fs::File::create(format!("cgh-fill-{i}")) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("cannot create cgh-fill-{i}: {e}");
                break;
            }
        };
        for _ in 0..FILE / BLOCK {
            if start.elapsed() >= LIFETIME {
                break 'fill;
            }
            if let Err(e) = file.write_all(&block) {
                eprintln!("write refused after {written} bytes: {e}");
                break 'fill;
            }
            written += BLOCK;
        }
    }
    eprintln!("wrote {written} bytes");
    while let Some(left) = LIFETIME.checked_sub(start.elapsed()) {
        std::thread::sleep(left.min(Duration::from_secs(1)));
    }
}
