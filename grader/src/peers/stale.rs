//! placeholder (being written)

pub fn run(_args: &[String]) -> i32 {
    2
}
