//! The terminal report: headline figures, latencies, cost, top models and tools, recent alerts,
//! within 100 columns.

use std::io::{self, Write};

use agentobs::{Dashboard, DashboardFilter};

use super::describe_filter;
use super::fmt::{int, ms, pct, usd, usd_f};
use crate::cli::escape::{text as esc, truncate};

struct Style {
    colour: bool,
}

impl Style {
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
    fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

pub fn render(
    out: &mut dyn Write,
    d: &Dashboard,
    filter: &DashboardFilter,
    colour: bool,
) -> io::Result<()> {
    let st = Style { colour };
    let statuses: Vec<String> = d
        .runs_by_status
        .iter()
        .map(|(s, n)| format!("{} {}", int(*n), truncate(&esc(s), 20)))
        .collect();
    writeln!(
        out,
        "{}",
        st.bold(&format!(
            "agentobs report · {} runs · {}",
            int(d.runs),
            truncate(&esc(&describe_filter(filter)), 50)
        ))
    )?;
    if !statuses.is_empty() {
        writeln!(out, "{}", st.dim(&truncate(&statuses.join(" · "), 100)))?;
    }
    writeln!(out, "{}", "─".repeat(72))?;
    writeln!(
        out,
        "{:<10}total {}   avg/run {}",
        "Cost",
        usd(d.total_cost_picousd),
        usd_f(d.avg_cost_usd)
    )?;
    if d.unpriced_calls > 0 {
        let line = format!(
            "{:<10}{} calls ({} tokens) not in the total: their models have no price",
            "Unpriced",
            int(d.unpriced_calls),
            int(d.unpriced_tokens)
        );
        writeln!(out, "{}", st.red(&line))?;
    }
    let error_rate = pct(d.tool_error_rate);
    let error_rate = if d.tool_error_rate.unwrap_or(0.0) > 0.05 {
        st.red(&error_rate)
    } else {
        error_rate
    };
    writeln!(
        out,
        "{:<10}LLM {} (cache hits {})   tools {} (errors {})",
        "Calls",
        int(d.llm_calls),
        pct(d.cache_hit_rate),
        int(d.tool_calls),
        error_rate
    )?;
    writeln!(
        out,
        "{:<10}in {}   out {}",
        "Tokens",
        int(d.input_tokens),
        int(d.output_tokens)
    )?;
    writeln!(
        out,
        "{:<10}LLM p50 {} p95 {} · tool p50 {} p95 {}",
        "Latency",
        ms(d.llm_latency_ms.p50),
        ms(d.llm_latency_ms.p95),
        ms(d.tool_latency_ms.p50),
        ms(d.tool_latency_ms.p95),
    )?;
    writeln!(
        out,
        "{:<10}duration p50 {} p95 {}",
        "Runs",
        ms(d.run_duration_ms.p50),
        ms(d.run_duration_ms.p95)
    )?;
    writeln!(out, "{:<10}{} fired", "Alerts", int(d.alerts))?;

    for table in super::tables(d) {
        if table.rows.is_empty() {
            continue;
        }
        let rows: Vec<Vec<String>> = table
            .rows
            .iter()
            .take(10)
            .map(|r| r.iter().map(|c| esc(c)).collect())
            .collect();
        // The first column takes what the others leave of 100 columns.
        let widths: Vec<usize> = table
            .columns()
            .enumerate()
            .map(|(i, (name, _))| {
                let widest = rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
                // Recorded strings can be any length: no column but the first exceeds 28.
                widest.max(name.chars().count()).min(28)
            })
            .collect();
        let rest: usize = widths.iter().skip(1).map(|w| w + 2).sum();
        let first = 99usize
            .saturating_sub(rest)
            .clamp(table.title.chars().count(), 40);
        let line = |cells: Vec<String>| {
            cells
                .iter()
                .zip(table.columns())
                .enumerate()
                .map(|(i, (c, (_, numeric)))| {
                    let w = if i == 0 { first } else { widths[i] };
                    let c = truncate(c, w);
                    if numeric {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        writeln!(out)?;
        let mut header: Vec<String> = table.columns().map(|(n, _)| n.to_string()).collect();
        header[0] = table.title.to_string();
        writeln!(out, "{}", st.bold(line(header).trim_end()))?;
        for row in rows {
            writeln!(out, "{}", line(row).trim_end())?;
        }
    }
    Ok(())
}
