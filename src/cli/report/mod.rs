//! `agentobs report`: the dashboard in text, JSON, Markdown or HTML. Every renderer formats the
//! one [`Dashboard`] value; none computes a figure of its own.

mod html;
mod markdown;
mod text;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use agentobs::{Dashboard, DashboardFilter};

use super::{output, parse_time_arg, Cli, CliResult, Failure};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Html,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The run filters shared by `report` and `export --all`.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Runs started at or after this time (RFC 3339 or epoch seconds).
    #[arg(long, value_parser = parse_time_arg)]
    pub since: Option<f64>,
    /// Runs started before this time (RFC 3339 or epoch seconds).
    #[arg(long, value_parser = parse_time_arg)]
    pub until: Option<f64>,
    /// Only runs with this status.
    #[arg(long)]
    pub status: Option<String>,
    /// Only runs whose metadata has KEY=VALUE (repeatable; all must match).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

impl FilterArgs {
    pub fn to_filter(&self) -> DashboardFilter {
        DashboardFilter {
            since: self.since,
            until: self.until,
            status: self.status.clone(),
            meta: self.meta.clone(),
        }
    }
}

/// Whether to colour text output: stdout is a terminal and `NO_COLOR` is unset.
fn use_colour(to_file: bool) -> bool {
    !to_file && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub fn run(cli: &Cli, args: &Args) -> CliResult {
    let pipeline = cli.open()?;
    let filter = args.filter.to_filter();
    let dashboard = pipeline.dashboard(&filter)?;
    let mut out = output(&args.out)?;
    render(
        &mut out,
        args.format,
        &dashboard,
        &filter,
        use_colour(args.out.is_some()),
    )?;
    out.flush()?;
    Ok(())
}

/// Renders `d` in `format` to `out`.
pub fn render(
    out: &mut dyn Write,
    format: Format,
    d: &Dashboard,
    filter: &DashboardFilter,
    colour: bool,
) -> Result<(), Failure> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, d).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        Format::Text => text::render(out, d, filter, colour)?,
        Format::Markdown => markdown::render(out, d, filter)?,
        Format::Html => html::render(out, d, filter)?,
    }
    Ok(())
}

/// `2026-12-04 16:28:00Z` for epoch seconds.
pub fn format_time(epoch_s: f64) -> String {
    chrono::DateTime::from_timestamp(epoch_s.floor() as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{epoch_s}"))
}

/// A short description of the filter for report headers (raw strings; callers escape).
pub fn describe_filter(f: &DashboardFilter) -> String {
    let mut parts = Vec::new();
    if let Some(s) = f.since {
        parts.push(format!("since {}", format_time(s)));
    }
    if let Some(u) = f.until {
        parts.push(format!("until {}", format_time(u)));
    }
    if let Some(s) = &f.status {
        parts.push(format!("status = {s}"));
    }
    for (k, v) in &f.meta {
        parts.push(format!("{k} = {v}"));
    }
    if parts.is_empty() {
        "all runs".to_string()
    } else {
        parts.join(", ")
    }
}

/// One breakdown table, as every format shows it: raw (unescaped) cell text, formatted from the
/// dashboard once; each renderer only lays it out and escapes it for its format.
pub struct Table {
    pub title: &'static str,
    /// Column headers; a leading `>` marks a right-aligned (numeric) column.
    pub headers: &'static [&'static str],
    pub rows: Vec<Vec<String>>,
    /// What to show when there are no rows.
    pub empty: &'static str,
}

impl Table {
    /// The header text and whether the column is numeric.
    pub fn columns(&self) -> impl Iterator<Item = (&'static str, bool)> + '_ {
        self.headers
            .iter()
            .map(|h| (h.trim_start_matches('>'), h.starts_with('>')))
    }
}

/// The headline figures, label and formatted value, in the order every format shows them.
pub fn headline(d: &Dashboard) -> Vec<(&'static str, String)> {
    use fmt::{int, ms, pct, usd, usd_f};
    let p50_p95 = |p: &agentobs::Percentiles| format!("{} / {}", ms(p.p50), ms(p.p95));
    vec![
        ("runs", int(d.runs)),
        ("LLM calls", int(d.llm_calls)),
        ("tool calls", int(d.tool_calls)),
        ("total cost", usd(d.total_cost_picousd)),
        ("avg cost per run", usd_f(d.avg_cost_usd)),
        ("unpriced calls", int(d.unpriced_calls)),
        ("tool error rate", pct(d.tool_error_rate)),
        ("cache hit rate", pct(d.cache_hit_rate)),
        ("LLM latency p50 / p95", p50_p95(&d.llm_latency_ms)),
        ("tool latency p50 / p95", p50_p95(&d.tool_latency_ms)),
        ("run duration p50 / p95", p50_p95(&d.run_duration_ms)),
        ("alerts", int(d.alerts)),
    ]
}

/// The breakdown tables of a dashboard: models, tools, recent alerts.
pub fn tables(d: &Dashboard) -> Vec<Table> {
    use fmt::{int, ms, pct, usd};
    vec![
        Table {
            title: "Models",
            headers: &["model", ">calls", ">cost", ">unpriced", ">p50", ">p95"],
            rows: d
                .by_model
                .iter()
                .map(|m| {
                    vec![
                        m.model.clone(),
                        int(m.calls),
                        usd(m.cost_picousd),
                        int(m.unpriced_calls),
                        ms(m.p50_latency_ms),
                        ms(m.p95_latency_ms),
                    ]
                })
                .collect(),
            empty: "no LLM calls",
        },
        Table {
            title: "Tools",
            headers: &["tool", ">calls", ">errors", ">rate", ">p50", ">p95"],
            rows: d
                .by_tool
                .iter()
                .map(|t| {
                    vec![
                        t.tool.clone(),
                        int(t.calls),
                        int(t.errors),
                        pct(t.error_rate),
                        ms(t.p50_latency_ms),
                        ms(t.p95_latency_ms),
                    ]
                })
                .collect(),
            empty: "no tool calls",
        },
        Table {
            title: "Recent alerts",
            headers: &["fired", "run", "metric", ">value", ">threshold"],
            rows: d
                .recent_alerts
                .iter()
                .map(|a| {
                    vec![
                        format_time(a.fired_at),
                        a.run_id.clone(),
                        a.metric.clone(),
                        a.value.to_string(),
                        a.threshold.to_string(),
                    ]
                })
                .collect(),
            empty: "none",
        },
    ]
}

/// Display helpers shared by the renderers.
pub mod fmt {
    /// `1234567` → `1,234,567`.
    pub fn int(n: impl Into<i128>) -> String {
        let n: i128 = n.into();
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            format!("-{out}")
        } else {
            out
        }
    }

    /// USD with 6 decimals (exact from pico-dollars).
    pub fn usd(picousd: i128) -> String {
        format!("${}", agentobs::format_picousd(picousd, 6))
    }

    /// An optional USD figure.
    pub fn usd_f(v: Option<f64>) -> String {
        v.map(|v| format!("${v:.6}")).unwrap_or_else(|| "–".into())
    }

    /// Milliseconds, or `–` for none.
    pub fn ms(v: Option<f64>) -> String {
        match v {
            None => "–".into(),
            Some(v) if v >= 100.0 => format!("{} ms", int(v.round() as i128)),
            Some(v) => format!("{v:.1} ms"),
        }
    }

    /// A rate as a percentage, or `–`.
    pub fn pct(v: Option<f64>) -> String {
        v.map(|v| format!("{:.1}%", v * 100.0))
            .unwrap_or_else(|| "–".into())
    }
}
