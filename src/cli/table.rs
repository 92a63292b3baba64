//! Aligned plain-text tables for terminal output, measuring display width so that Chinese
//! text (two columns per character) lines up.

use unicode_width::UnicodeWidthStr;

/// Renders `rows` under `header`, columns separated by two spaces, padded to display width.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.width()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.width());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.width());
            text.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_are_padded_by_display_width() {
        let out = render(
            &["person", "post"],
            &[
                vec!["钟炎夫".into(), "副局长".into()],
                vec!["ab".into(), "x".into()],
            ],
        );
        assert_eq!(out, "person  post\n钟炎夫  副局长\nab      x\n");
    }
}
