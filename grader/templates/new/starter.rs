//! {{slug}}: the contract is in tasks/{{slug}}.md. `cargo grade {{id}}`
//! grades this crate; `cargo grade {{id}} --only NAME` runs one test.

use std::io::{self, BufRead, Write};

/// The line as the program prints it.
fn answer(line: &str) -> String {
    todo!("return {line:?} in upper case")
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
    todo!("at the end of input, print `bye {count}` and exit with status 0")
}
