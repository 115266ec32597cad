//! The terminal report: headline figures, latencies, cost, top models and tools, recent alerts,
//! within 100 columns.

use std::io::{self, Write};

use agentobs::{Dashboard, DashboardFilter};

use super::fmt::{int, ms, pct, usd, usd_f};
use super::{describe_filter, format_time};
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

    if !d.by_model.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            st.bold(&format!(
                "{:<32} {:>9} {:>16} {:>11} {:>11} {:>9}",
                "Top models", "calls", "cost", "p50", "p95", "unpriced"
            ))
        )?;
        for m in d.by_model.iter().take(10) {
            writeln!(
                out,
                "{:<32} {:>9} {:>16} {:>11} {:>11} {:>9}",
                truncate(&esc(&m.model), 32),
                int(m.calls),
                usd(m.cost_picousd),
                ms(m.p50_latency_ms),
                ms(m.p95_latency_ms),
                int(m.unpriced_calls)
            )?;
        }
    }
    if !d.by_tool.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            st.bold(&format!(
                "{:<32} {:>9} {:>9} {:>8} {:>11} {:>11}",
                "Top tools", "calls", "errors", "rate", "p50", "p95"
            ))
        )?;
        for t in d.by_tool.iter().take(10) {
            writeln!(
                out,
                "{:<32} {:>9} {:>9} {:>8} {:>11} {:>11}",
                truncate(&esc(&t.tool), 32),
                int(t.calls),
                int(t.errors),
                pct(t.error_rate),
                ms(t.p50_latency_ms),
                ms(t.p95_latency_ms)
            )?;
        }
    }
    if !d.recent_alerts.is_empty() {
        writeln!(out)?;
        writeln!(out, "{}", st.bold("Recent alerts"))?;
        for a in &d.recent_alerts {
            writeln!(
                out,
                "{}  {:<28} {} = {} > {}",
                format_time(a.fired_at),
                truncate(&esc(&a.run_id), 28),
                a.metric,
                trim_float(a.value),
                trim_float(a.threshold)
            )?;
        }
    }
    Ok(())
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}
