//! Text plumbing shared by the rest of the parser: decoding bytes, cutting the input
//! into numbered lines, and the character-level normalisation every grammar rule relies
//! on.
//!
//! Notices reach us as PDF-to-markdown extractions, scanned-and-retyped files, or GB18030
//! files from older county websites. The grammar therefore never looks at raw text: it
//! looks at a *compact* form where all whitespace is gone (Chinese has no word spacing, so
//! `王  伟` is `王伟`), markdown decoration (`#`, `**`, `>`) is stripped, ASCII punctuation
//! is mapped to its full-width twin (`,` → `，`, `(` → `（`) and full-width digits are
//! ASCII. Everything that is reported "as written" (clause text, remarks) is taken from
//! the raw lines instead.

use std::fmt;

/// Why bytes could not be turned into notice text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes look like a binary file (NUL bytes or many control characters).
    Binary,
    /// The bytes are neither valid UTF-8 nor valid GB18030.
    Undecodable,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Binary => f.write_str("input looks like a binary file, not text"),
            DecodeError::Undecodable => {
                f.write_str("input is neither valid UTF-8 nor valid GB18030 text")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a notice file: UTF-8 (a BOM is stripped), UTF-16 with a BOM, or GB18030 (the
/// superset of GBK/GB2312 that Chinese government sites still publish in).
///
/// UTF-8 is tried first because a GB18030 decoder accepts many UTF-8 byte sequences as
/// (wrong) Chinese text, while valid GB18030 Chinese is almost never valid UTF-8.
pub fn decode(bytes: &[u8]) -> Result<String, DecodeError> {
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return decode_utf16(encoding_rs::UTF_16LE, rest);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return decode_utf16(encoding_rs::UTF_16BE, rest);
    }
    let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    if looks_binary(body) {
        return Err(DecodeError::Binary);
    }
    if let Ok(s) = std::str::from_utf8(body) {
        return Ok(s.to_owned());
    }
    encoding_rs::GB18030
        .decode_without_bom_handling_and_without_replacement(body)
        .map(|s| s.into_owned())
        .ok_or(DecodeError::Undecodable)
}

fn decode_utf16(enc: &'static encoding_rs::Encoding, body: &[u8]) -> Result<String, DecodeError> {
    let s = enc
        .decode_without_bom_handling_and_without_replacement(body)
        .ok_or(DecodeError::Undecodable)?;
    if looks_binary_text(&s) {
        return Err(DecodeError::Binary);
    }
    Ok(s.into_owned())
}

/// NUL bytes never occur in text files (outside UTF-16, handled before); more than a few
/// per mille of them, or a tenth of C0 control bytes, means we are looking at a binary.
fn looks_binary(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let nul = bytes.iter().filter(|&&b| b == 0).count();
    let ctrl = bytes
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C | 0x1B))
        .count();
    nul * 1000 > bytes.len() * 2 || nul >= 16 || ctrl * 10 > bytes.len()
}

fn looks_binary_text(s: &str) -> bool {
    let total = s.chars().count();
    let ctrl = s
        .chars()
        .filter(|&c| (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r' | '\u{0C}' | '\u{1B}'))
        .count();
    total > 0 && ctrl * 10 > total
}

/// A whitespace-insensitive normal form of a notice's text, for idempotency hashing:
/// the same notice re-extracted from a PDF with different line breaks, indentation or
/// markdown hard breaks hashes the same. Removes all Unicode whitespace, the BOM and
/// zero-width characters, and unifies line endings implicitly; nothing else changes.
pub fn normalize_for_hash(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !is_space(c) && !matches!(c, '\u{FEFF}' | '\u{200B}' | '\u{200C}' | '\u{200D}')
        })
        .collect()
}

/// Whitespace as it occurs in extracted notices: ASCII, the ideographic space U+3000,
/// NBSP and friends.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{FEFF}'
}

/// A CJK ideograph (the characters names and organisations are made of).
pub(crate) fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
        || c == '〇'
}

/// Maps one character to the form the grammar matches on (see the module docs).
pub(crate) fn norm_char(c: char) -> char {
    match c {
        ',' => '，',
        ';' => '；',
        '(' => '（',
        ')' => '）',
        ':' => '：',
        '!' => '！',
        '?' => '？',
        '．' => '.',
        '０'..='９' => char::from_u32(c as u32 - 0xFF10 + 0x30).unwrap_or(c),
        _ => c,
    }
}

/// The compact form of a piece of text: normalised characters, no whitespace, no markdown
/// emphasis markers.
pub(crate) fn compact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_space(c) || matches!(c, '\u{200B}' | '\u{200C}' | '\u{200D}') {
            continue;
        }
        out.push(norm_char(c));
    }
    // `**bold**` and `__bold__` never occur in Chinese official text itself.
    if out.contains("**") {
        out = out.replace("**", "");
    }
    if out.contains("__") {
        out = out.replace("__", "");
    }
    out
}

/// One input line with its position and derived forms.
#[derive(Debug, Clone)]
pub(crate) struct Line<'a> {
    /// 1-based line number.
    pub no: usize,
    /// Byte offset of the line start in the input.
    pub start: usize,
    /// Byte offset just past the line's last character (before `\r\n`/`\n`).
    pub end: usize,
    /// The line as written, minus markdown block decoration and surrounding whitespace.
    pub text: &'a str,
    /// [`compact`] of `text`.
    pub compact: String,
}

/// Splits the input into lines (`\n`, with a `\r` before it dropped), stripping markdown
/// heading/quote markers so a `# 标题` line reads as `标题`.
pub(crate) fn split_lines(input: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0usize;
    let mut no = 0usize;
    let bytes = input.as_bytes();
    while start <= input.len() {
        let nl = memchr_newline(&bytes[start..]).map(|i| start + i);
        let mut end = nl.unwrap_or(input.len());
        let next = nl.map(|i| i + 1);
        if end > start && bytes[end - 1] == b'\r' {
            end -= 1;
        }
        no += 1;
        let raw = &input[start..end];
        let text = strip_block_markup(raw);
        lines.push(Line {
            no,
            start,
            end,
            text,
            compact: compact(text),
        });
        match next {
            Some(n) => start = n,
            None => break,
        }
    }
    lines
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

fn strip_block_markup(raw: &str) -> &str {
    let mut t = raw.trim_matches(is_space);
    t = t.trim_start_matches('\u{FEFF}');
    loop {
        let before = t.len();
        t = t.trim_start_matches('#').trim_start_matches('>');
        t = t.trim_matches(is_space);
        if t.len() == before {
            break;
        }
    }
    t
}

/// Lines that carry no text of the document: blank lines, page numbers left by PDF
/// extraction (`— 78 —`, `- 78 -`, `78`), horizontal rules and HTML comments. They may sit
/// in the middle of a sentence and must be skipped without ending it.
pub(crate) fn is_furniture(compact: &str) -> bool {
    if compact.is_empty() {
        return true;
    }
    if compact.starts_with("<!--") && compact.ends_with("-->") {
        return true;
    }
    compact.chars().all(|c| {
        c.is_ascii_digit()
            || matches!(
                c,
                '-' | '—' | '－' | '–' | '*' | '_' | '=' | '·' | '|' | '：' | '+'
            )
    }) && compact.chars().filter(|c| c.is_ascii_digit()).count() <= 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_utf8_with_and_without_bom() {
        assert_eq!(decode("任免".as_bytes()).unwrap(), "任免");
        let mut b = vec![0xEF, 0xBB, 0xBF];
        b.extend_from_slice("任免".as_bytes());
        assert_eq!(decode(&b).unwrap(), "任免");
    }

    #[test]
    fn decodes_gb18030() {
        let (bytes, _, _) = encoding_rs::GB18030.encode("免去丁华（女）同志职务");
        assert!(std::str::from_utf8(&bytes).is_err());
        assert_eq!(decode(&bytes).unwrap(), "免去丁华（女）同志职务");
    }

    #[test]
    fn decodes_utf16_with_bom() {
        let mut b = vec![0xFF, 0xFE];
        for u in "任免通知".encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode(&b).unwrap(), "任免通知");
    }

    #[test]
    fn rejects_binary_and_garbage() {
        assert_eq!(decode(&[0u8; 64]), Err(DecodeError::Binary));
        assert_eq!(decode(&[1, 2, 3, 4, 5, 6, 7, 8]), Err(DecodeError::Binary));
        assert_eq!(
            decode(&[0xFF, 0xFF, 0x80, 0xFF]),
            Err(DecodeError::Undecodable)
        );
        assert_eq!(decode(b"").unwrap(), "");
    }

    #[test]
    fn hash_normal_form_ignores_whitespace_only() {
        let a = "临湘市人民政府  \n关于袁飞龙等同志职务任免的通知\r\n";
        let b = "临湘市人民政府关于袁飞龙等同志职务任免的通知";
        assert_eq!(normalize_for_hash(a), normalize_for_hash(b));
        assert_ne!(normalize_for_hash("任，"), normalize_for_hash("任；"));
    }

    #[test]
    fn compact_normalises_punctuation_and_spaces() {
        assert_eq!(compact("王  伟同志任A(兼),免去"), "王伟同志任A（兼），免去");
        assert_eq!(compact("**２０２３**"), "2023");
    }

    #[test]
    fn lines_are_numbered_and_stripped() {
        let l = split_lines("# 标题  \r\n\n正文");
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].text, "标题");
        assert_eq!(l[0].no, 1);
        assert_eq!(l[2].compact, "正文");
        assert_eq!(&"# 标题  \r\n\n正文"[l[2].start..l[2].end], "正文");
    }

    #[test]
    fn furniture() {
        assert!(is_furniture("—78—"));
        assert!(is_furniture("-3-"));
        assert!(is_furniture("---"));
        assert!(!is_furniture("2023年"));
        assert!(!is_furniture("免去"));
    }
}
