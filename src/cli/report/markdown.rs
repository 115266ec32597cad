//! The Markdown report: the same figures as tables, to paste into a chat or a pull request.

use std::io::{self, Write};

use agentobs::{Dashboard, DashboardFilter};

use super::describe_filter;
use super::fmt::int;
use crate::cli::escape::markdown as esc;

pub fn render(out: &mut dyn Write, d: &Dashboard, filter: &DashboardFilter) -> io::Result<()> {
    writeln!(
        out,
        "## agentobs report: {}\n",
        esc(&describe_filter(filter))
    )?;
    writeln!(out, "| metric | value |")?;
    writeln!(out, "| --- | ---: |")?;
    let rows = super::headline(d);
    for (k, v) in rows {
        writeln!(out, "| {k} | {v} |")?;
    }
    if !d.runs_by_status.is_empty() {
        writeln!(out, "\n### Runs by status\n")?;
        writeln!(out, "| status | runs |")?;
        writeln!(out, "| --- | ---: |")?;
        for (s, n) in &d.runs_by_status {
            writeln!(out, "| {} | {} |", esc(s), int(*n))?;
        }
    }
    for table in super::tables(d) {
        if table.rows.is_empty() {
            continue;
        }
        writeln!(out, "\n### {}\n", table.title)?;
        let (names, aligns): (Vec<&str>, Vec<&str>) = table
            .columns()
            .map(|(name, numeric)| (name, if numeric { "---:" } else { "---" }))
            .unzip();
        writeln!(out, "| {} |", names.join(" | "))?;
        writeln!(out, "| {} |", aligns.join(" | "))?;
        for row in &table.rows {
            let cells: Vec<String> = row.iter().map(|c| esc(c)).collect();
            writeln!(out, "| {} |", cells.join(" | "))?;
        }
    }
    Ok(())
}
