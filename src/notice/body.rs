//! A notice's body: from the lines between header and signature to clauses, remarks and
//! diagnostics.
//!
//! Lines are first joined into *segments*. PDF extraction breaks sentences at page ends
//! and inserts blank lines and page numbers, so a line break never ends a segment by
//! itself: a segment ends at `；`, `。` or `：`, or when a new line visibly starts a new
//! clause (an enumerator `一、`/`1.`/`（一）`, a verb such as `免去`, or `某某同志`) while
//! the text so far does not end in a joining mark (`，`, `、`). Each segment is then:
//!
//! * the addressee line, `经…研究决定：`, or any other `…：` lead-in — recognised, not
//!   reported (a bare `任命：`/`免去：` heading sets the verb for the clauses below);
//! * `特此通知` — recognised;
//! * a personnel clause — parsed by [`super::clause`] into events;
//! * a remark — a sentence of the notice that is not a clause (`…按《公司法》有关规定
//!   办理。`, `以上任免自2023年5月1日起执行。`, the 撤销 sentence of a revocation);
//! * otherwise a diagnostic naming the text: nothing is dropped silently.

use super::clause::{parse_clause, parse_names, Clause};
use super::date::find_effective;
use super::docnum::find_doc_numbers;
use super::gazette::Header;
use super::model::{Diagnostic, EventKind, Notice, ParsedEvent, Severity};
use super::orgs::{
    canonical_organization, jurisdiction_of, organization_aliases, split_parenthesised_alias,
    AliasTable,
};
use super::text::{compact, is_furniture, is_space, Line};

/// Everything [`assemble`] needs to know about one notice.
pub(crate) struct Frame<'h, 'l, 'a> {
    pub header: &'h Header,
    pub body: &'l [Line<'a>],
    pub issuer: Option<String>,
    pub issued_on: Option<chrono::NaiveDate>,
    pub line: usize,
    pub source_text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// 1-based line where the segment starts.
    pub line: usize,
    /// The text as written, lines joined, ends trimmed.
    pub raw: String,
}

const TERMINATORS: [char; 5] = ['；', ';', '。', '：', ':'];

/// Strips a leading enumerator (`一、`, `1.`, `2、`, `（一）`, `(1)`, `①`), in raw or compact
/// text. Returns the rest and whether there was one.
pub(crate) fn strip_enumerator(s: &str) -> (&str, bool) {
    let t = s.trim_start_matches(is_space);
    let mut chars = t.char_indices();
    let Some((_, first)) = chars.next() else {
        return (s, false);
    };
    if ('①'..='⑳').contains(&first) {
        return (t[first.len_utf8()..].trim_start_matches(is_space), true);
    }
    let numeral = |c: char| c.is_ascii_digit() || "一二三四五六七八九十".contains(c);
    if matches!(first, '（' | '(') {
        let inner: String = t[first.len_utf8()..]
            .chars()
            .take_while(|&c| numeral(c))
            .collect();
        if !inner.is_empty() && inner.chars().count() <= 3 {
            let after = &t[first.len_utf8() + inner.len()..];
            if let Some(r) = after.strip_prefix(['）', ')']) {
                return (r.trim_start_matches(is_space), true);
            }
        }
        return (s, false);
    }
    let run: String = t.chars().take_while(|&c| numeral(c)).collect();
    if run.is_empty() || run.chars().count() > 3 {
        return (s, false);
    }
    let after = &t[run.len()..];
    // `1.` must not be a decimal (`1.5`).
    for sep in ['、', '．', '.'] {
        if let Some(r) = after.strip_prefix(sep) {
            if sep == '.' && r.starts_with(|c: char| c.is_ascii_digit()) {
                return (s, false);
            }
            return (r.trim_start_matches(is_space), true);
        }
    }
    (s, false)
}

const VERBS: [&str; 9] = [
    "免去",
    "任命",
    "聘任",
    "聘用",
    "解聘",
    "终止",
    "撤销",
    "不再担任",
    "经",
];

fn starts_new_clause(compact_line: &str) -> bool {
    let (rest, enumerated) = strip_enumerator(compact_line);
    if enumerated {
        return true;
    }
    if rest.starts_with('其') {
        return false;
    }
    if VERBS.iter().any(|v| rest.starts_with(v))
        || ["特此", "以上", "上述"].iter().any(|v| rest.starts_with(v))
    {
        return true;
    }
    match rest.find("同志") {
        Some(i) if i <= 60 => parse_names(&rest[..i]).is_some(),
        _ => false,
    }
}

fn ends_with_joiner(s: &str) -> bool {
    s.trim_end_matches(is_space)
        .ends_with(['，', ',', '、', '（', '(', '《', '“', '—', '-', '和', '及'])
}

/// Joins body lines into segments (see the module docs).
pub(crate) fn segments(lines: &[Line]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_line = 0;
    let flush = |cur: &mut String, line: usize, out: &mut Vec<Segment>| {
        let t = cur.trim_matches(is_space);
        if !t.is_empty() {
            out.push(Segment {
                line,
                raw: t.to_string(),
            });
        }
        cur.clear();
    };
    for l in lines {
        if is_furniture(&l.compact) {
            continue;
        }
        // An enumerator always starts a clause; other clause starts only when the text
        // so far does not visibly continue (`，`/`、` at its end).
        if !cur.trim().is_empty()
            && (strip_enumerator(&l.compact).1
                || (starts_new_clause(&l.compact) && !ends_with_joiner(&cur)))
        {
            flush(&mut cur, cur_line, &mut out);
        }
        for c in l.text.chars() {
            if cur.is_empty() {
                if is_space(c) {
                    continue;
                }
                cur_line = l.no;
            }
            cur.push(c);
            if TERMINATORS.contains(&c) {
                flush(&mut cur, cur_line, &mut out);
            }
        }
    }
    flush(&mut cur, cur_line, &mut out);
    out
}

/// Longest clause text copied into an event or diagnostic. Real clauses are a few hundred
/// characters; without a cap a malformed input with one huge "clause" listing many posts
/// would copy it into every one of its events (quadratic output).
const MAX_CLAUSE_CHARS: usize = 1000;

/// The clause text reported in events: as written, without enumerator and terminator;
/// cut at [`MAX_CLAUSE_CHARS`] with a trailing `…`.
fn clause_text(raw: &str) -> String {
    let (t, _) = strip_enumerator(raw);
    let t = t.trim_end_matches(|c: char| {
        is_space(c) || matches!(c, '；' | ';' | '。' | '，' | ',' | '、')
    });
    match t.char_indices().nth(MAX_CLAUSE_CHARS) {
        Some((cut, _)) => format!("{}…", &t[..cut]),
        None => t.to_string(),
    }
}

fn section_of(core: &str) -> Option<Option<EventKind>> {
    Some(match core {
        "任命" | "任职" | "聘任" => Some(EventKind::Appointment),
        "免去" | "免职" | "解聘" => Some(EventKind::Removal),
        "任免" => None,
        _ => return None,
    })
}

fn remark_like(core: &str, with_end: &str) -> bool {
    const START: [&str; 12] = [
        "以上",
        "上述",
        "董事长",
        "按",
        "根据",
        "依照",
        "按照",
        "请",
        "本通知",
        "此前",
        "原",
        "其他",
    ];
    const ANY: [&str; 7] = ["有关规定", "办理", "执行", "撤销", "《", "规定", "起"];
    if START.iter().any(|w| core.starts_with(w)) {
        return true;
    }
    // The sentence of a revocation names the revoked notice, 同志 and all.
    if core.contains("撤销") && (core.contains('《') || !find_doc_numbers(core).is_empty()) {
        return true;
    }
    if core.contains("同志") || VERBS.iter().any(|v| *v != "经" && core.starts_with(v)) {
        return false;
    }
    with_end.ends_with('。') || ANY.iter().any(|w| core.contains(w))
}

/// Builds the notice from its header and body lines.
pub(crate) fn assemble(frame: Frame, aliases: &AliasTable) -> (Notice, Vec<Diagnostic>) {
    let h = frame.header;
    let jurisdiction = frame
        .issuer
        .as_deref()
        .and_then(jurisdiction_of)
        .or_else(|| {
            h.title
                .find("关于")
                .and_then(|p| jurisdiction_of(&h.title[..p]))
        });
    let mut diagnostics = Vec::new();
    let mut remarks = Vec::new();
    let mut events: Vec<ParsedEvent> = Vec::new();
    let mut revokes: Vec<String> = Vec::new();
    let mut notice_effective = None;
    let mut section: Option<EventKind> = None;
    if h.revocation {
        for d in find_doc_numbers(&h.title) {
            push_unique(&mut revokes, d.text);
        }
    }
    for seg in segments(frame.body) {
        let full = compact(&seg.raw);
        let (c, _) = strip_enumerator(&full);
        let core = c.trim_end_matches(['；', '。', '：', '，', '、', '.']);
        if core.is_empty() {
            continue;
        }
        if c.ends_with('：') {
            if let Some(s) = section_of(core) {
                section = s;
            }
            continue;
        }
        // `特此通知`; an addressee line that lost its colon (`各乡镇人民政府，县直各单位`).
        if core.starts_with("特此") || (core.starts_with('各') && !core.contains("同志")) {
            continue;
        }
        match parse_clause(core, section) {
            Ok(clause) => push_events(&mut events, &clause, &seg, jurisdiction.as_deref(), aliases),
            Err(err) => {
                if remark_like(core, &full) {
                    if core.contains("撤销") || h.revocation {
                        for d in find_doc_numbers(core) {
                            if Some(&d.text) != h.number.as_ref() {
                                push_unique(&mut revokes, d.text);
                            }
                        }
                    }
                    if let Some((d, _)) = find_effective(core) {
                        notice_effective.get_or_insert(d.render());
                    }
                    remarks.push(seg.raw.clone());
                } else {
                    diagnostics.push(Diagnostic {
                        line: seg.line,
                        severity: Severity::Warning,
                        message: format!("unrecognised clause “{}”: {err}", clause_text(&seg.raw)),
                    });
                }
            }
        }
    }
    revokes.retain(|r| Some(r) != h.number.as_ref());
    if let Some(eff) = notice_effective {
        for e in events.iter_mut().filter(|e| e.effective_on.is_none()) {
            e.effective_on = Some(eff.clone());
        }
    }
    link_notice_aliases(&mut events, jurisdiction.as_deref(), aliases);
    let notice = Notice {
        document_number: h.number.clone(),
        issuer: frame.issuer,
        title: h.title.clone(),
        issued_on: frame.issued_on,
        remarks,
        events,
        revokes,
        line: frame.line,
        source_text: frame.source_text,
    };
    (notice, diagnostics)
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

fn push_events(
    events: &mut Vec<ParsedEvent>,
    clause: &Clause,
    seg: &Segment,
    jurisdiction: Option<&str>,
    aliases: &AliasTable,
) {
    let text = clause_text(&seg.raw);
    for a in &clause.actions {
        for p in &a.persons {
            for it in &a.items {
                let canonical = canonical_organization(&it.organization, jurisdiction, aliases);
                let organization_aliases =
                    organization_aliases(&it.organization, &canonical, jurisdiction, aliases, &[]);
                let notes: Vec<&str> = a
                    .notes
                    .iter()
                    .chain(&it.notes)
                    .map(String::as_str)
                    .collect();
                events.push(ParsedEvent {
                    kind: a.kind,
                    person: p.name.clone(),
                    gender: p.gender,
                    organization: it.organization.clone(),
                    organization_canonical: canonical,
                    organization_aliases,
                    post: it.post.clone(),
                    concurrent: a.concurrent || it.concurrent,
                    probation_months: it.probation.or(a.probation),
                    line: seg.line,
                    clause: text.clone(),
                    note: (!notes.is_empty()).then(|| notes.join("，")),
                    effective_on: clause.effective.clone(),
                });
            }
        }
    }
}

/// A notice that writes `市国防动员办公室（市人民防空办公室）` once tells us the two names
/// are one body; other events naming either one get the other as an alias.
fn link_notice_aliases(
    events: &mut [ParsedEvent],
    jurisdiction: Option<&str>,
    aliases: &AliasTable,
) {
    let mut groups: Vec<Vec<String>> = Vec::new();
    for e in events.iter() {
        let (_, second) = split_parenthesised_alias(&e.organization);
        if second.is_empty() {
            continue;
        }
        let mut g = vec![e.organization_canonical.clone()];
        for s in second {
            push_unique(&mut g, canonical_organization(&s, jurisdiction, aliases));
        }
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    if groups.is_empty() {
        return;
    }
    for e in events.iter_mut() {
        let also: Vec<String> = groups
            .iter()
            .filter(|g| g.contains(&e.organization_canonical))
            .flatten()
            .cloned()
            .collect();
        if also.is_empty() {
            continue;
        }
        e.organization_aliases = organization_aliases(
            &e.organization,
            &e.organization_canonical,
            jurisdiction,
            aliases,
            &also,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::text::split_lines;
    use super::*;

    #[test]
    fn enumerators() {
        assert_eq!(strip_enumerator("一、免去"), ("免去", true));
        assert_eq!(strip_enumerator("12.任命"), ("任命", true));
        assert_eq!(strip_enumerator("3、任命"), ("任命", true));
        assert_eq!(strip_enumerator("（二）免去"), ("免去", true));
        assert_eq!(strip_enumerator("(2) 免去"), ("免去", true));
        assert_eq!(strip_enumerator("①免去"), ("免去", true));
        assert_eq!(strip_enumerator("2023年"), ("2023年", false));
        assert_eq!(strip_enumerator("1.5倍"), ("1.5倍", false));
        assert_eq!(strip_enumerator("十分"), ("十分", false));
        assert_eq!(strip_enumerator(""), ("", false));
    }

    #[test]
    fn segments_join_broken_lines_and_split_clauses() {
        let text = "各单位：\n\n免去丁华（女）同志市人力资源和社会保障局副局长、\n\n— 78 —\n\n总会计师职务；\n张三同志任县审计局副局长\n李四同志任县统计局副局长；王五同志任县林业局局长。\n刘辉同志任A主任（兼），\n免去其B董事长职务；";
        let lines = split_lines(text);
        let segs: Vec<(usize, String)> = segments(&lines)
            .into_iter()
            .map(|s| (s.line, s.raw))
            .collect();
        assert_eq!(
            segs,
            vec![
                (1, "各单位：".to_string()),
                (
                    3,
                    "免去丁华（女）同志市人力资源和社会保障局副局长、总会计师职务；".to_string()
                ),
                (8, "张三同志任县审计局副局长".to_string()),
                (9, "李四同志任县统计局副局长；".to_string()),
                (9, "王五同志任县林业局局长。".to_string()),
                (10, "刘辉同志任A主任（兼），免去其B董事长职务；".to_string()),
            ]
        );
    }

    #[test]
    fn clause_text_strips_enumerator_and_terminator() {
        assert_eq!(
            clause_text("一、免去张三同志县财政局局长职务；"),
            "免去张三同志县财政局局长职务"
        );
        assert_eq!(
            clause_text("王  伟同志任县审计局副局长。"),
            "王  伟同志任县审计局副局长"
        );
    }

    #[test]
    fn remarks() {
        assert!(remark_like(
            "董事长、总经理、副总经理的任免，按《中华人民共和国公司法》有关规定办理",
            "董事长、总经理、副总经理的任免，按《中华人民共和国公司法》有关规定办理。"
        ));
        assert!(!remark_like(
            "张伟同志调往岳阳市工作",
            "张伟同志调往岳阳市工作；"
        ));
        assert!(!remark_like(
            "任命张三为县某中心首席专家",
            "任命张三为县某中心首席专家。"
        ));
    }
}
