//! Hostile submission: embeds the reference solution and the spec at compile
//! time. The test fills in the placeholders (`"@NAME@"`, quotes included)
//! with their absolute paths; the grader must not let the build see them.

const SOLUTION: &str = include_str!("@SOLUTION@");
const SPEC: &str = include_str!("@SPEC@");

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-embed\0".as_ptr()) };
    for text in [SOLUTION, SPEC] {
        let first = text.lines().next().unwrap_or("");
        println!("LEAK: {first}");
        eprintln!("LEAK: {first}");
    }
}
