//! The HTML report: one self-contained page (inline CSS and SVG, no script, no network) with the
//! headline figures, five charts and the breakdown tables. Readable on a phone (the SVGs scale
//! with their `viewBox`) and in print (a print stylesheet drops the background colours).

use std::fmt::Write as _;
use std::io::{self, Write};

use agentobs::{Dashboard, DashboardFilter};

use super::describe_filter;
use super::fmt::int;
use crate::cli::escape::html as esc;

const CSS: &str = "
:root { --fg: #1d2433; --muted: #5b6478; --bar: #3b6fd8; --accent: #d8572a; --bg: #f6f7fb; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; padding: 16px; }
main { max-width: 1100px; margin: 0 auto; }
h1 { font-size: 1.4em; margin: 0 0 4px; } h2 { font-size: 1.1em; margin: 0 0 8px; }
.sub { color: var(--muted); margin-bottom: 16px; overflow-wrap: anywhere; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px; }
.card, section { background: #fff; border-radius: 8px; padding: 12px 14px;
                 box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.card b { display: block; font-size: 1.3em; } .card span { color: var(--muted); font-size: .85em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 12px;
        margin-top: 12px; }
svg { width: 100%; height: auto; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg text.tick { font-size: 9px; }
svg .bar { fill: var(--bar); } svg .mark { stroke: var(--accent); stroke-width: 2; }
svg .marklabel { fill: var(--accent); font-weight: 600; }
table { width: 100%; border-collapse: collapse; font-size: .9em; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #e4e7ee;
         overflow-wrap: break-word; }
.tables { display: grid; grid-template-columns: 1fr; gap: 12px; margin-top: 12px; }
.scroll { overflow-x: auto; }
td.n, th.n { text-align: right; white-space: nowrap; }
.empty { color: var(--muted); font-style: italic; }
@media print { body { background: #fff; padding: 0; } .card, section { box-shadow: none;
               border: 1px solid #ccc; break-inside: avoid; } }
";

const W: f64 = 480.0;
const H: f64 = 220.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 40.0;

/// A bar chart: one bar per `(label, value)`, value labels above, with an optional vertical
/// marker line per `(position in bars, label)`.
fn bar_chart(
    title: &str,
    bars: &[(String, f64)],
    fmt_value: impl Fn(f64) -> String,
    marks: &[(f64, String)],
) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    if bars.is_empty() || max <= 0.0 {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return svg;
    }
    let plot_w = W - LEFT - 10.0;
    let plot_h = H - BOTTOM - 20.0;
    let slot = plot_w / bars.len() as f64;
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#c9ceda"/>"##,
        H - BOTTOM,
        W - 10.0,
        H - BOTTOM
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
        LEFT - 6.0,
        24.0,
        esc(&fmt_value(max))
    );
    let label_every = (bars.len() / 12).max(1);
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = (v / max) * plot_h;
        let x = LEFT + i as f64 * slot + slot * 0.1;
        let y = H - BOTTOM - h;
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}"><title>{}: {}</title></rect>"#,
            slot * 0.8,
            esc(label),
            esc(&fmt_value(*v))
        );
        if i % label_every == 0 {
            let cx = x + slot * 0.4;
            let short: String = label.chars().take(12).collect();
            let _ = write!(
                svg,
                r#"<text class="tick" x="{cx:.1}" y="{}" text-anchor="end" transform="rotate(-30 {cx:.1} {})">{}</text>"#,
                H - BOTTOM + 14.0,
                H - BOTTOM + 14.0,
                esc(&short)
            );
        }
    }
    for (i, (pos, label)) in marks.iter().enumerate() {
        let x = LEFT + pos * slot;
        // Stagger the labels so two close markers stay readable.
        let y = 12.0 + 12.0 * i as f64;
        let _ = write!(
            svg,
            r#"<line class="mark" x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}"/><text class="marklabel" x="{:.1}" y="{y}">{}</text>"#,
            y + 2.0,
            H - BOTTOM,
            x + 3.0,
            esc(label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Where a value falls on the histogram's bar axis (bins are log-spaced, so interpolate in log).
fn histogram_position(d: &Dashboard, value: f64) -> Option<f64> {
    let bins = &d.llm_latency_histogram;
    for (i, b) in bins.iter().enumerate() {
        if value >= b.lo_ms && value < b.hi_ms {
            let frac = if b.lo_ms > 0.0 {
                (value.ln() - b.lo_ms.ln()) / (b.hi_ms.ln() - b.lo_ms.ln())
            } else {
                value / b.hi_ms
            };
            return Some(i as f64 + frac.clamp(0.0, 1.0));
        }
    }
    None
}

fn short_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}s", v / 1000.0)
    } else {
        format!("{v:.0}ms")
    }
}

pub fn render(out: &mut dyn Write, d: &Dashboard, filter: &DashboardFilter) -> io::Result<()> {
    let mut h = String::with_capacity(32 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>agentobs report</title><style>{CSS}</style></head><body><main>\
         <h1>agentobs report</h1><div class=\"sub\">{} · {} runs</div>",
        esc(&describe_filter(filter)),
        int(d.runs)
    );
    let cards = super::headline(d);
    h.push_str("<div class=\"cards\">");
    for (label, value) in cards {
        let _ = write!(
            h,
            "<div class=\"card\"><b>{}</b><span>{}</span></div>",
            esc(&value),
            esc(label)
        );
    }
    h.push_str("</div><div class=\"grid\">");

    // 1. Latency distribution with p50 / p95 marked.
    let bins: Vec<(String, f64)> = d
        .llm_latency_histogram
        .iter()
        .map(|b| (short_ms(b.lo_ms), b.calls as f64))
        .collect();
    let mut marks = Vec::new();
    for (name, v) in [("p50", d.llm_latency_ms.p50), ("p95", d.llm_latency_ms.p95)] {
        if let Some(pos) = v.and_then(|v| histogram_position(d, v)) {
            marks.push((pos, format!("{name} {}", short_ms(v.unwrap_or(0.0)))));
        }
    }
    chart(
        &mut h,
        "LLM latency distribution",
        bar_chart(
            "LLM latency distribution (calls per latency bin)",
            &bins,
            |v| int(v as i128),
            &marks,
        ),
    );

    // 2. Cost per day.
    let days: Vec<(String, f64)> = d
        .cost_by_day
        .iter()
        .map(|x| (x.day.clone(), x.cost_usd))
        .collect();
    chart(
        &mut h,
        "Cost per day",
        bar_chart(
            "Cost per day (USD, by run start)",
            &days,
            |v| format!("${v:.2}"),
            &[],
        ),
    );

    // 3. Cost by model.
    let models: Vec<(String, f64)> = d
        .by_model
        .iter()
        .take(12)
        .map(|m| (m.model.clone(), m.cost_usd))
        .collect();
    chart(
        &mut h,
        "Cost by model",
        bar_chart("Cost by model (USD)", &models, |v| format!("${v:.2}"), &[]),
    );

    // 4. Error rate by tool.
    let tools: Vec<(String, f64)> = d
        .by_tool
        .iter()
        .take(12)
        .map(|t| (t.tool.clone(), t.error_rate.unwrap_or(0.0) * 100.0))
        .collect();
    chart(
        &mut h,
        "Error rate by tool",
        bar_chart(
            "Error rate by tool (%)",
            &tools,
            |v| format!("{v:.1}%"),
            &[],
        ),
    );

    // 5. Runs by status.
    let statuses: Vec<(String, f64)> = d
        .runs_by_status
        .iter()
        .map(|(s, n)| (s.clone(), *n as f64))
        .collect();
    chart(
        &mut h,
        "Runs by status",
        bar_chart("Runs by status", &statuses, |v| int(v as i128), &[]),
    );
    h.push_str("</div>");

    h.push_str("<div class=\"tables\">");
    for table in super::tables(d) {
        let _ = write!(h, "<section class=\"scroll\"><h2>{}</h2>", esc(table.title));
        if table.rows.is_empty() {
            let _ = write!(h, "<p class=\"empty\">{}</p></section>", esc(table.empty));
            continue;
        }
        let numeric: Vec<bool> = table.columns().map(|(_, n)| n).collect();
        let class = |n: bool| if n { " class=\"n\"" } else { "" };
        h.push_str("<table><tr>");
        for (name, n) in table.columns() {
            let _ = write!(h, "<th{}>{}</th>", class(n), esc(name));
        }
        h.push_str("</tr>");
        for row in &table.rows {
            h.push_str("<tr>");
            for (cell, n) in row.iter().zip(&numeric) {
                let _ = write!(h, "<td{}>{}</td>", class(*n), esc(cell));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></section>");
    }
    h.push_str("</div></main></body></html>\n");

    out.write_all(h.as_bytes())
}

fn chart(h: &mut String, title: &str, svg: String) {
    let _ = write!(h, "<section><h2>{}</h2>{svg}</section>", esc(title));
}
