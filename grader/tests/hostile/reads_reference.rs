//! Hostile submission: tries to read the reference solution and the spec at
//! run time, directly and through the root directories of pid 1 and of its
//! parent (/proc/PID/root, which bypasses a private mount namespace). The
//! test fills in the placeholders (`"@NAME@"`, quotes included). What it
//! reads it prints as `LEAK: <first line>` on stdout and stderr.

const SOLUTION: &str = "@SOLUTION@";
const SPEC: &str = "@SPEC@";

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-peek\0".as_ptr()) };
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() };
    let mut roots = vec![String::new(), String::from("/proc/1/root")];
    if parent > 1 {
        roots.push(format!("/proc/{parent}/root"));
    }
    for root in &roots {
        for file in [SOLUTION, SPEC] {
            let path = format!("{root}{file}");
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let first = text.lines().next().unwrap_or("");
                    println!("LEAK: {first}");
                    eprintln!("LEAK: {first}");
                }
                Err(e) => {
                    println!("peek denied: {path}: {e}");
                    eprintln!("peek denied: {path}: {e}");
                }
            }
        }
    }
}
