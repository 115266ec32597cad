//! Making recorded strings safe for the format they land in. Anything a user recorded (run ids,
//! model and tool names, errors, metadata) may hold markup, pipes, newlines or terminal escape
//! sequences; each renderer passes every such string through the function for its format.

/// For a terminal: control characters (including ESC, so no escape sequence runs) and other
/// invisible format characters are shown as `\n`, `\t`, `\u{1b}` instead of being emitted.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible_format(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Bidirectional overrides and similar characters that reorder or hide what a terminal shows.
fn is_invisible_format(c: char) -> bool {
    matches!(c as u32, 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2069 | 0xFEFF)
}

/// For a Markdown table cell: as [`text`], then `|` escaped and Markdown punctuation that could
/// start markup or links neutralised.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in text(s).chars() {
        match c {
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// For HTML text and attribute values.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                out.push_str(&format!("&#x{:x};", c as u32).replace("&#x0;", "\u{fffd}"))
            }
            c => out.push(c),
        }
    }
    out
}

/// Shortens `s` to at most `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_strings_are_inert() {
        assert_eq!(text("a\x1b[31mred\nx"), "a\\u{1b}[31mred\\nx");
        assert_eq!(text("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(markdown("a|b\nc"), "a\\|b\\\\nc");
        assert_eq!(html("<script>x</script>"), "&lt;script&gt;x&lt;/script&gt;");
        assert_eq!(truncate("héllo", 3), "hé…");
    }
}
