//! The HTML report (charts come with the report issue).

use std::io::{self, Write};

use agentobs::{Dashboard, DashboardFilter};

use crate::cli::escape::html as esc;

pub fn render(out: &mut dyn Write, d: &Dashboard, filter: &DashboardFilter) -> io::Result<()> {
    writeln!(
        out,
        "<!doctype html><title>agentobs report</title><p>{} runs: {}</p>",
        d.runs,
        esc(&super::describe_filter(filter))
    )
}
