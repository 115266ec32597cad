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
    if !d.by_model.is_empty() {
        writeln!(out, "\n### Models\n")?;
        writeln!(out, "| model | calls | cost | unpriced | p50 | p95 |")?;
        writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
        for m in &d.by_model {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                esc(&m.model),
                int(m.calls),
                usd(m.cost_picousd),
                int(m.unpriced_calls),
                ms(m.p50_latency_ms),
                ms(m.p95_latency_ms)
            )?;
        }
    }
    if !d.by_tool.is_empty() {
        writeln!(out, "\n### Tools\n")?;
        writeln!(out, "| tool | calls | errors | error rate | p50 | p95 |")?;
        writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
        for t in &d.by_tool {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                esc(&t.tool),
                int(t.calls),
                int(t.errors),
                pct(t.error_rate),
                ms(t.p50_latency_ms),
                ms(t.p95_latency_ms)
            )?;
        }
    }
    if !d.recent_alerts.is_empty() {
        writeln!(out, "\n### Recent alerts\n")?;
        writeln!(out, "| fired at | run | metric | value | threshold |")?;
        writeln!(out, "| --- | --- | --- | ---: | ---: |")?;
        for a in &d.recent_alerts {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                super::format_time(a.fired_at),
                esc(&a.run_id),
                esc(&a.metric),
                a.value,
                a.threshold
            )?;
        }
    }
    Ok(())
}
