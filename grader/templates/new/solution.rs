//! {{slug}}: the reference solution (the contract is in
//! tasks/{{slug}}.md). It is built against the starter's Cargo.toml and
//! Cargo.lock, like every submission.

use std::io::{self, BufRead, Write};

/// The line as the program prints it.
fn answer(line: &str) -> String {
    line.to_ascii_uppercase()
}

fn main() -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    let mut count: u64 = 0;
    for line in io::stdin().lock().lines() {
        let line = line?;
        count += 1;
        writeln!(stdout, "{}", answer(&line))?;
        stdout.flush()?;
    }
    writeln!(stdout, "bye {count}")?;
    stdout.flush()
}
