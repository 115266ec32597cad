//! The Markdown report: the same figures as tables, to paste into a chat or a pull request.

use std::io::{self, Write};

use agentobs::{Dashboard, DashboardFilter};

use super::describe_filter;
use super::fmt::{int, ms, pct, usd, usd_f};
use crate::cli::escape::markdown as esc;

pub fn render(out: &mut dyn Write, d: &Dashboard, filter: &DashboardFilter) -> io::Result<()> {
    writeln!(
        out,
        "## agentobs report: {}\n",
        esc(&describe_filter(filter))
    )?;
    writeln!(out, "| metric | value |")?;
    writeln!(out, "| --- | ---: |")?;
    let rows: Vec<(&str, String)> = vec![
        ("runs", int(d.runs)),
        ("LLM calls", int(d.llm_calls)),
        ("tool calls", int(d.tool_calls)),
        ("total cost", usd(d.total_cost_picousd)),
        ("avg cost per run", usd_f(d.avg_cost_usd)),
        ("unpriced calls", int(d.unpriced_calls)),
        ("tool error rate", pct(d.tool_error_rate)),
        ("cache hit rate", pct(d.cache_hit_rate)),
        (
            "LLM latency p50 / p95",
            format!(
                "{} / {}",
                ms(d.llm_latency_ms.p50),
                ms(d.llm_latency_ms.p95)
            ),
        ),
        (
            "tool latency p50 / p95",
            format!(
                "{} / {}",
                ms(d.tool_latency_ms.p50),
                ms(d.tool_latency_ms.p95)
            ),
        ),
        (
            "run duration p50 / p95",
            format!(
                "{} / {}",
                ms(d.run_duration_ms.p50),
                ms(d.run_duration_ms.p95)
            ),
        ),
        ("alerts", int(d.alerts)),
    ];
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
