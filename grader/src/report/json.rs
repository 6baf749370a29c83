//! The JSON report: the result model as it is, for tools and CI.

use crate::result::Report;

pub fn render(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("the result model always serialises")
}
