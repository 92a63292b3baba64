//! Document numbers (文号) such as `临政人〔2023〕4号`.
//!
//! The official form brackets the year with 六角括号 `〔〕`, but extractions and hand-typed
//! pages use `[]`, `［］`, `()`, `（）` or `【】`. We recognise all of them and normalise
//! to `〔〕`, with full-width digits and inner spaces removed. The issuing-agency prefix
//! (`临政人`, `岳组干`) is the run of ideographs right before the year bracket; because a
//! number is often embedded in running text (`撤销临政人〔2023〕5号文件`) the prefix stops
//! after connective words such as 撤销/根据/按照/的.

use super::text::{is_han, is_space};

/// A document number found in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DocNumber {
    /// Normalised text, e.g. `临政人〔2023〕4号`.
    pub text: String,
    /// Byte range of the number (prefix through 号) in the searched string.
    pub start: usize,
    pub end: usize,
}

const OPEN: [char; 6] = ['〔', '[', '［', '(', '（', '【'];
const CLOSE: [char; 6] = ['〕', ']', '］', ')', '）', '】'];

/// Words after which a number's prefix starts (they end running text, not the prefix).
const PREFIX_STOPS: [&str; 16] = [
    "撤销", "根据", "依据", "按照", "依照", "废止", "执行", "贯彻", "印发", "文件", "的", "和",
    "及", "与", "将", "即",
];

fn ascii_digit(c: char) -> Option<u32> {
    match c {
        '0'..='9' => Some(c as u32 - '0' as u32),
        '０'..='９' => Some(c as u32 - '０' as u32),
        _ => None,
    }
}

/// All document numbers in `s`, left to right. Linear in `s`: each bracket looks at a
/// bounded window around it.
pub(crate) fn find_doc_numbers(s: &str) -> Vec<DocNumber> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !OPEN.contains(&chars[i].1) {
            i += 1;
            continue;
        }
        if let Some((text, start_idx, end_idx)) = number_at(&chars, i) {
            let start = chars[start_idx].0;
            let end = chars.get(end_idx).map_or(s.len(), |c| c.0);
            out.push(DocNumber { text, start, end });
            i = end_idx;
        } else {
            i += 1;
        }
    }
    out
}

/// Tries to read a number whose year bracket opens at `chars[open]`. Returns the
/// normalised text and the char-index range `[start, end)`.
fn number_at(chars: &[(usize, char)], open: usize) -> Option<(String, usize, usize)> {
    let mut j = open + 1;
    let mut year = String::new();
    while j < chars.len() && year.len() < 4 {
        let c = chars[j].1;
        if is_space(c) {
            j += 1;
            continue;
        }
        let d = ascii_digit(c)?;
        year.push(char::from_digit(d, 10)?);
        j += 1;
    }
    while j < chars.len() && is_space(chars[j].1) {
        j += 1;
    }
    if year.len() != 4 || j >= chars.len() || !CLOSE.contains(&chars[j].1) {
        return None;
    }
    j += 1;
    let mut serial = String::new();
    while j < chars.len() && serial.len() <= 5 {
        let c = chars[j].1;
        if is_space(c) && serial.is_empty() {
            j += 1;
            continue;
        }
        match ascii_digit(c) {
            Some(d) => serial.push(char::from_digit(d, 10)?),
            None => break,
        }
        j += 1;
    }
    while j < chars.len() && is_space(chars[j].1) {
        j += 1;
    }
    if serial.is_empty() || serial.len() > 5 || j >= chars.len() || chars[j].1 != '号' {
        return None;
    }
    let end = j + 1;
    // Prefix: ideographs right before the bracket (spaces between tolerated).
    let mut k = open;
    while k > 0 && is_space(chars[k - 1].1) {
        k -= 1;
    }
    let mut start = k;
    while start > 0 && open - start < 14 && is_han(chars[start - 1].1) {
        start -= 1;
    }
    let mut prefix: String = chars[start..k].iter().map(|c| c.1).collect();
    // Cut off running text in front of the real prefix.
    let mut cut_chars = 0;
    for stop in PREFIX_STOPS {
        if let Some(pos) = prefix.rfind(stop) {
            let upto = prefix[..pos + stop.len()].chars().count();
            cut_chars = cut_chars.max(upto);
        }
    }
    if cut_chars > 0 {
        prefix = prefix.chars().skip(cut_chars).collect();
        start += cut_chars;
    }
    if prefix.is_empty() || prefix.chars().count() > 10 {
        return None;
    }
    let serial = serial.trim_start_matches('0');
    let serial = if serial.is_empty() { "0" } else { serial };
    Some((format!("{prefix}〔{year}〕{serial}号"), start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        find_doc_numbers(s).into_iter().map(|d| d.text).collect()
    }

    #[test]
    fn normalises_all_bracket_styles() {
        for s in [
            "临政人〔2023〕4号",
            "临政人[2023]4号",
            "临政人［2023］4号",
            "临政人(2023)4号",
            "临政人（2023）4号",
            "临政人【2023】4号",
            "临政人〔２０２３〕４号",
            "临政人 〔2023〕 4 号",
        ] {
            assert_eq!(texts(s), vec!["临政人〔2023〕4号".to_string()], "{s}");
        }
    }

    #[test]
    fn finds_numbers_in_running_text() {
        assert_eq!(
            texts("(临政人〔2023〕4号) ..... (77)"),
            vec!["临政人〔2023〕4号"]
        );
        assert_eq!(
            texts("撤销临政人〔2023〕5号文件"),
            vec!["临政人〔2023〕5号"]
        );
        assert_eq!(
            texts("根据岳组干[2022]12号和临政人(2022)3号"),
            vec!["岳组干〔2022〕12号", "临政人〔2022〕3号"]
        );
        let found = find_doc_numbers("（岳政人〔2023〕7号）");
        assert_eq!(found[0].start, "（".len());
    }

    #[test]
    fn rejects_non_numbers() {
        assert!(texts("(2023)").is_empty());
        assert!(texts("〔2023〕4号").is_empty());
        assert!(texts("临政人〔23〕4号").is_empty());
        assert!(texts("临政人〔2023〕号").is_empty());
        assert!(texts("（一）").is_empty());
    }
}
