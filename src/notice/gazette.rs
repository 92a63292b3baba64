//! Finding notices in a document: a single notice file or a whole gazette issue (政报 /
//! 公报) with a table of contents and many unrelated documents.
//!
//! A document *header* is a title (one to four lines; the issuer often sits on its own
//! line above `关于…的通知`) ending in 通知/决定/意见/…, together with a document number
//! on the title line, the line after it or the line before it. A header whose line, or
//! whose number line, ends in a page reference (`..... (77)`, `……77`) is a table-of-
//! contents entry and is ignored.
//!
//! A header is a *personnel notice* when its title is of the genre (任免, 任职, 免职,
//! 任命, 聘任, 解聘, 职务, 挂职, 试用期, or a 撤销 of such a notice) and is not a
//! 印发/转发 cover letter, and it has a document number or a signature. Its body runs to
//! the first date-only line (the signature date) before the next header; the line
//! before the date is the issuer (落款) if it names a body. Every other document in the
//! input — plans, tables, speeches that happen to say `任组长` — is never looked at.

use super::body;
use super::date::{parse_date_line, parse_date_prefix};
use super::docnum::find_doc_numbers;
use super::model::{Diagnostic, Notice, Severity};
use super::orgs::AliasTable;
use super::text::{is_furniture, Line};

/// Title endings of documents (boundaries); personnel notices end in the first two.
const TITLE_ENDS: [&str; 9] = [
    "通知", "决定", "意见", "办法", "批复", "通报", "规定", "方案", "函",
];

const PERSONNEL_WORDS: [&str; 11] = [
    "任免",
    "任职",
    "免职",
    "任命",
    "免去",
    "聘任",
    "解聘",
    "聘用",
    "职务",
    "挂职",
    "试用期",
];

/// Endings of names of bodies that sign notices.
const ISSUER_ENDS: [&str; 16] = [
    "人民政府",
    "政府",
    "办公室",
    "委员会",
    "局",
    "部",
    "厅",
    "委",
    "院",
    "会",
    "处",
    "公司",
    "中心",
    "组",
    "室",
    "党组",
];

#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub title: String,
    pub number: Option<String>,
    /// Index (into lines) of the first line of the header (title or a number above it).
    pub first: usize,
    /// Index of the first title line.
    pub title_line: usize,
    /// Index of the last header line.
    pub last: usize,
    pub personnel: bool,
    pub revocation: bool,
}

struct LineInfo {
    title_part: String,
    number: Option<String>,
    toc: bool,
}

fn analyse(compact: &str) -> LineInfo {
    let (mut s, toc) = strip_toc_tail(compact);
    let mut number = None;
    if s.contains('号') {
        if let Some(last) = find_doc_numbers(s).pop() {
            let tail = &s[last.end..];
            if tail.is_empty() || matches!(tail, "）" | "]" | "］" | "〕" | "】") {
                number = Some(last.text);
                s = s[..last.start].trim_end_matches(['（', '[', '［', '〔', '【']);
            }
        }
    }
    LineInfo {
        title_part: s.to_string(),
        number,
        toc,
    }
}

/// Removes a table-of-contents page reference (`.....（77）`, `……77`) from the end.
fn strip_toc_tail(s: &str) -> (&str, bool) {
    let t = s.trim_end_matches(['）', ')']);
    let t2 = t.trim_end_matches(|c: char| c.is_ascii_digit());
    if t2.len() == t.len() {
        return (s, false);
    }
    let t3 = t2.trim_end_matches(['（', '(']);
    let t4 = t3.trim_end_matches(['.', '…', '·', '—', '-', '．', '⋯', '_']);
    let leader = &t3[t4.len()..];
    if leader.chars().count() >= 2 || leader.contains(['…', '⋯']) {
        (t4, true)
    } else {
        (s, false)
    }
}

fn ends_title(s: &str) -> bool {
    let n = s.chars().count();
    (4..=120).contains(&n)
        && TITLE_ENDS.iter().any(|e| s.ends_with(e))
        && !s.contains(['。', '；', '|', '：'])
}

fn is_fragment(l: &Line) -> bool {
    let c = &l.compact;
    !is_furniture(c)
        && c.chars().count() <= 40
        && !c.contains(['。', '；', '：', '|', '，'])
        && !TITLE_ENDS.iter().any(|e| c.ends_with(e))
        && !c.contains('号')
        && parse_date_line(c).is_none()
}

pub(crate) fn issuer_like(s: &str) -> bool {
    let n = s.chars().count();
    (3..=40).contains(&n)
        && ISSUER_ENDS.iter().any(|e| s.ends_with(e))
        && !s.contains(['，', '。', '；', '：', '、', '|', '《'])
}

fn genre(title: &str) -> (bool, bool) {
    if title.contains("印发") || title.contains("转发") {
        return (false, false);
    }
    let kw = PERSONNEL_WORDS.iter().any(|w| title.contains(w));
    let revocation = title.contains("撤销")
        && (kw
            || find_doc_numbers(title).iter().any(|d| {
                let prefix = &d.text[..d.text.find('〔').unwrap_or(0)];
                prefix.contains(['人', '干', '任'])
            }));
    (kw || revocation, revocation)
}

/// Every document header in the input, TOC entries excluded, in line order.
pub(crate) fn find_headers(lines: &[Line]) -> Vec<Header> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i]
            .compact
            .contains(TITLE_ENDS.map(|e| e.chars().last().unwrap_or('知')))
        {
            i += 1;
            continue;
        }
        let info = analyse(&lines[i].compact);
        if !ends_title(&info.title_part) {
            i += 1;
            continue;
        }
        let (title, title_line) = assemble_title(lines, i, &info.title_part);
        let mut number = info.number.clone();
        let mut toc = info.toc;
        let mut first = title_line;
        let mut last = i;
        if number.is_none() {
            // The number line below the title (blank lines allowed) …
            if let Some(j) = next_text_line(lines, i, 3) {
                let n = analyse(&lines[j].compact);
                if n.number.is_some() && n.title_part.is_empty() {
                    number = n.number;
                    toc |= n.toc;
                    last = j;
                }
            }
        }
        if number.is_none() && title_line > 0 {
            // … or above it, as 文号 are printed in the official layout.
            if let Some(j) = prev_text_line(lines, title_line, 3) {
                let n = analyse(&lines[j].compact);
                if n.number.is_some() && n.title_part.is_empty() {
                    number = n.number;
                    toc |= n.toc;
                    first = j;
                }
            }
        } else if !toc {
            // A TOC entry with the page reference on the line after the number.
            if let Some(j) = next_text_line(lines, last, 1) {
                toc |= strip_toc_tail(&lines[j].compact).1
                    && strip_toc_tail(&lines[j].compact).0.is_empty();
            }
        }
        if !toc {
            let (personnel, revocation) = genre(&title);
            // A title without number is a document boundary only if it is a notice of
            // our genre; plain `…方案` headings inside a plan are not documents.
            if number.is_some() || personnel {
                out.push(Header {
                    title,
                    number,
                    first,
                    title_line,
                    last,
                    personnel,
                    revocation,
                });
            }
        }
        i = last + 1;
    }
    out
}

fn next_text_line(lines: &[Line], from: usize, max: usize) -> Option<usize> {
    (from + 1..lines.len().min(from + 1 + max)).find(|&j| !lines[j].compact.is_empty())
}

fn prev_text_line(lines: &[Line], before: usize, max: usize) -> Option<usize> {
    (before.saturating_sub(max)..before)
        .rev()
        .find(|&j| !lines[j].compact.is_empty())
}

/// Joins a title split over lines: `临湘市人民政府` / `关于…的通知`, or
/// `…办公室` / `关于印发《…工作` / `任务分解》的通知`.
fn assemble_title(lines: &[Line], i: usize, last_part: &str) -> (String, usize) {
    let mut title = last_part.to_string();
    let mut start = i;
    let mut added = 0;
    while start > 0 && added < 3 {
        let prev = &lines[start - 1];
        if !is_fragment(prev) || (title.contains("关于") && !title.starts_with("关于")) {
            break;
        }
        if title.starts_with("关于") {
            if issuer_like(&prev.compact) && !prev.compact.contains("关于") {
                title.insert_str(0, &prev.compact);
                start -= 1;
            }
            break;
        }
        title.insert_str(0, &prev.compact);
        start -= 1;
        added += 1;
    }
    if !title.contains("关于") && start != i {
        return (last_part.to_string(), i);
    }
    (title, start)
}

/// A signature date line, possibly with the issuer in front (`临湘市人民政府 2023年4月24日`).
fn signature_date(compact: &str) -> Option<(chrono::NaiveDate, Option<String>)> {
    if let Some(d) = parse_date_line(compact) {
        return Some((d, None));
    }
    if compact.len() > 120 {
        return None;
    }
    // Issuer and date on one line: find where a four-digit year starts.
    for (i, _) in compact.char_indices().skip(3) {
        let (head, tail) = compact.split_at(i);
        if parse_date_prefix(tail).is_some() && issuer_like(head) {
            return parse_date_line(tail).map(|d| (d, Some(head.to_string())));
        }
    }
    None
}

/// Finds and parses every personnel notice.
pub(crate) fn notices(
    input: &str,
    lines: &[Line],
    aliases: &AliasTable,
) -> (Vec<Notice>, Vec<Diagnostic>) {
    let headers = find_headers(lines);
    let mut notices = Vec::new();
    let mut diagnostics = Vec::new();
    for (hi, h) in headers.iter().enumerate() {
        if !h.personnel {
            continue;
        }
        let limit = headers.get(hi + 1).map_or(lines.len(), |n| n.first);
        let mut date = None;
        for (k, line) in lines.iter().enumerate().take(limit).skip(h.last + 1) {
            if let Some((d, issuer)) = signature_date(&line.compact) {
                date = Some((k, d, issuer));
                break;
            }
        }
        if h.number.is_none() && date.is_none() {
            continue;
        }
        // A table of contents without page references repeats title and number; an
        // unsigned occurrence followed by the same header later is such an entry.
        if date.is_none()
            && headers[hi + 1..]
                .iter()
                .any(|o| o.number.is_some() && o.number == h.number && o.title == h.title)
        {
            continue;
        }
        let mut body_stop = date.as_ref().map_or(limit, |d| d.0);
        let mut issuer = date.as_ref().and_then(|d| d.2.clone());
        if let (Some((k, _, None)), None) = (&date, &issuer) {
            let mut j = *k;
            while j > h.last + 1 && is_furniture(&lines[j - 1].compact) {
                j -= 1;
            }
            if j > h.last + 1 && issuer_like(&lines[j - 1].compact) {
                issuer = Some(lines[j - 1].compact.clone());
                body_stop = j - 1;
            }
        }
        if issuer.is_none() {
            issuer = h
                .title
                .find("关于")
                .map(|p| h.title[..p].to_string())
                .filter(|p| issuer_like(p));
        }
        let end_line = date.as_ref().map_or(body_stop.max(h.last + 1) - 1, |d| d.0);
        let end_line = end_line.min(lines.len() - 1).max(h.last);
        let source_text = input[lines[h.first].start..lines[end_line].end].to_string();
        if date.is_none() {
            diagnostics.push(Diagnostic {
                line: lines[h.title_line].no,
                severity: Severity::Warning,
                message: format!("notice “{}” has no signature date", h.title),
            });
        }
        let (notice, mut diags) = body::assemble(
            body::Frame {
                header: h,
                body: &lines[h.last + 1..body_stop.max(h.last + 1)],
                issuer,
                issued_on: date.map(|d| d.1),
                line: lines[h.title_line].no,
                source_text,
            },
            aliases,
        );
        diagnostics.append(&mut diags);
        notices.push(notice);
    }
    (notices, diagnostics)
}

#[cfg(test)]
mod tests {
    use super::super::text::split_lines;
    use super::*;

    #[test]
    fn toc_tails() {
        assert_eq!(
            strip_toc_tail("（临政人〔2023〕4号）.....（77）"),
            ("（临政人〔2023〕4号）", true)
        );
        assert_eq!(strip_toc_tail("关于…的通知……77"), ("关于…的通知", true));
        assert_eq!(
            strip_toc_tail("（临政人〔2023〕4号）"),
            ("（临政人〔2023〕4号）", false)
        );
    }

    #[test]
    fn header_with_split_title_and_number_below() {
        let text = "表格\n\n临湘市人民政府  \n关于袁飞龙等同志职务任免的通知  \n(临政人〔2023〕4号)\n\n各单位：\n";
        let lines = split_lines(text);
        let h = find_headers(&lines);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].title, "临湘市人民政府关于袁飞龙等同志职务任免的通知");
        assert_eq!(h[0].number.as_deref(), Some("临政人〔2023〕4号"));
        assert_eq!((h[0].title_line, h[0].last), (2, 4));
        assert!(h[0].personnel);
    }

    #[test]
    fn toc_entries_are_not_headers() {
        let text = "临湘市人民政府关于袁飞龙等同志职务任免的通知  \n(临政人〔2023〕4号) ..... (77)\n\n岳阳县人民政府关于张三同志任职的通知……（12）\n";
        assert!(find_headers(&split_lines(text)).is_empty());
    }

    #[test]
    fn number_above_title_and_genre() {
        let text = "平政人〔2022〕9号\n\n平江县人民政府关于李四同志任职的通知\n";
        let h = find_headers(&split_lines(text));
        assert_eq!(h[0].number.as_deref(), Some("平政人〔2022〕9号"));
        assert_eq!(h[0].first, 0);
        assert_eq!(
            genre("临湘市人民政府办公室关于印发《干部任免办法》的通知"),
            (false, false)
        );
        assert_eq!(genre("关于撤销临政人〔2023〕5号文件的通知"), (true, true));
        assert_eq!(
            genre("关于撤销临政办发〔2023〕5号文件的通知"),
            (false, false)
        );
        assert_eq!(genre("关于王五等同志试用期满正式任职的通知"), (true, false));
    }

    #[test]
    fn toc_without_page_numbers_is_skipped() {
        let text = "临湘市人民政府关于张三同志任职的通知\n（临政人〔2023〕4号）\n\n临湘市人民政府\n关于张三同志任职的通知\n（临政人〔2023〕4号）\n各单位：\n张三同志任市审计局副局长。\n临湘市人民政府\n2023年4月24日\n";
        let lines = split_lines(text);
        let (n, d) = notices(text, &lines, &AliasTable::builtin());
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].line, 4);
        assert_eq!(n[0].events.len(), 1);
        assert!(d.is_empty());
    }

    #[test]
    fn signature_dates() {
        assert!(signature_date("2023年4月24日").is_some());
        let (_, who) = signature_date("临湘市人民政府2023年4月24日").unwrap();
        assert_eq!(who.as_deref(), Some("临湘市人民政府"));
        assert!(signature_date("2023年第2期").is_none());
    }
}
