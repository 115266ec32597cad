//! The HTML report (issue 7 fills in the charts).

use std::io::{self, Write};

use agentobs::{Dashboard, DashboardFilter};

pub fn render(out: &mut dyn Write, d: &Dashboard, filter: &DashboardFilter) -> io::Result<()> {
    let _ = (d, filter);
    writeln!(out, "<!doctype html><p>HTML report not built yet</p>")
}
