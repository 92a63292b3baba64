//! The clause grammar: one sentence of a notice's body (`刘辉同志任A主任（兼），免去其B
//! 董事长职务`) to the actions it states.
//!
//! Input is the clause's compact form (see [`super::text`]): no whitespace, full-width
//! punctuation, enumeration and terminator removed. A clause is split at top-level `，`
//! into *parts*; each part is an action with its own verb, a modifier of the previous
//! action (`试用期一年`), or a note (`退休`, `另有任用`). The person named first is the
//! clause's *subject*: later parts without a name (`免去其…`, `兼任…`) act on it.
//!
//! Part shapes, tried in this order (strong verbs first, because a verb glued to a name
//! — `免去张三` — would otherwise read as a four-character name):
//!
//! * `免去 P同志 OP职务`, `免去其 OP职务`, `免去 P的 OP职务` — removal;
//!   `解聘 …` — removal, note 解聘; `撤销 P同志 OP职务` — removal, note 撤销职务;
//!   `终止 P同志 OP试用期` — removal, note 终止试用期;
//! * `任命 P(同志)为 OP` — appointment; `聘任 P(同志)为 OP` — appointment, note 聘任;
//! * `P同志 <predicate>` where the predicate is `任/担任/任命为 OP`, `兼任/兼 OP`
//!   (concurrent), `挂职(任)/挂任 OP` (note 挂职), `不再担任 OP` (removal), `免去(其) OP`;
//! * a predicate alone, acting on the subject; `P <predicate>` without 同志 for names of
//!   two to four characters;
//! * `试用期一年` (probation of the previous action), `兼`, anything else: a note.
//!
//! `…试用期满，正式任职` / `…试用期满，正式任 OP` is a confirmation and is recognised on
//! the whole clause. OP is an organization-post list, see [`parse_op`]. Parenthesised
//! modifiers after a post apply to that post, after `职务` to the whole list: `（兼）` is
//! concurrent, `（试用期一年）` a probation, anything else (`挂职`, `退休`) a note.

use super::date::{find_effective, probation_months};
use super::model::{EventKind, Gender};
use super::posts::split_post;
use super::text::is_han;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Person {
    pub name: String,
    pub gender: Option<Gender>,
}

/// One organization-post pair of a clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub organization: String,
    pub post: String,
    pub concurrent: bool,
    pub probation: Option<u32>,
    pub notes: Vec<String>,
}

/// What one part of a clause does to its persons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Action {
    pub kind: EventKind,
    pub persons: Vec<Person>,
    pub items: Vec<Item>,
    pub concurrent: bool,
    pub probation: Option<u32>,
    pub notes: Vec<String>,
}

/// A parsed clause.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Clause {
    pub actions: Vec<Action>,
    /// `自2023年5月1日起` rendered with its precision.
    pub effective: Option<String>,
}

enum Part {
    Action(Action),
    /// A subject with no action yet (`张三同志退休`), plus notes for the next action.
    Subject(Vec<Person>, Vec<String>),
    Probation(u32),
    Concurrent,
    Note(String),
}

type Res<T> = Result<T, String>;

const NOTE_PREDICATES: [&str; 8] = [
    "退休",
    "已到龄退休",
    "到龄退休",
    "另有任用",
    "另有安排",
    "辞职",
    "调离",
    "免职",
];

/// Words in front of a part that carry nothing (`并免去…`, `同时…`, `现任命…`).
const FILLERS: [&str; 8] = ["并且", "同时", "决定", "并", "另", "且", "现", "拟"];

/// Parses one clause (compact form). `section` is the verb of an enclosing heading such as
/// `一、任命：`, used when a part has no verb of its own.
pub(crate) fn parse_clause(s: &str, section: Option<EventKind>) -> Res<Clause> {
    let mut owned = s.to_string();
    let mut effective = None;
    if let Some((d, r)) = find_effective(&owned) {
        effective = Some(d.render());
        owned.replace_range(r, "");
    }
    let s = owned.as_str();
    if let Some(c) = confirmation(s)? {
        return Ok(Clause { effective, ..c });
    }
    let mut subject: Option<Vec<Person>> = None;
    let mut actions: Vec<Action> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for raw in split_top(s, &['，']) {
        let part = strip_fillers(raw);
        if part.is_empty() {
            continue;
        }
        // `经市人民政府研究决定，` in front of the first action.
        if part.starts_with('经') && ["决定", "研究", "同意"].iter().any(|w| part.ends_with(w))
        {
            continue;
        }
        match parse_part(part, subject.as_deref(), section)? {
            Part::Action(mut a) => {
                subject = Some(a.persons.clone());
                let mut notes = std::mem::take(&mut pending);
                notes.append(&mut a.notes);
                a.notes = notes;
                actions.push(a);
            }
            Part::Subject(p, notes) => {
                subject = Some(p);
                pending.extend(notes);
            }
            Part::Probation(m) => match actions.last_mut() {
                Some(a) => a.probation = Some(m),
                None => return Err(format!("probation “{part}” before any appointment")),
            },
            Part::Concurrent => match actions.last_mut() {
                Some(a) => a.concurrent = true,
                None => return Err(format!("“{part}” before any appointment")),
            },
            Part::Note(t) => match actions.last_mut() {
                Some(a) => a.notes.push(t),
                None => pending.push(t),
            },
        }
    }
    if actions.is_empty() {
        return Err("no appointment or removal found".to_string());
    }
    if let Some(a) = actions.last_mut() {
        a.notes.append(&mut pending);
    }
    Ok(Clause { actions, effective })
}

fn strip_fillers(mut s: &str) -> &str {
    loop {
        let before = s.len();
        for f in FILLERS {
            if let Some(r) = s.strip_prefix(f) {
                // 现/拟/另 are also surnames: strip only before a verb.
                if matches!(f, "现" | "拟" | "另" | "且") && !starts_with_verb(r) {
                    continue;
                }
                s = r;
                break;
            }
        }
        if s.len() == before {
            return s;
        }
    }
}

fn starts_with_verb(s: &str) -> bool {
    [
        "免去",
        "任命",
        "聘任",
        "聘用",
        "解聘",
        "撤销",
        "终止",
        "兼任",
        "任",
        "不再担任",
        "挂职",
    ]
    .iter()
    .any(|v| s.starts_with(v))
}

fn parse_part(part: &str, subject: Option<&[Person]>, section: Option<EventKind>) -> Res<Part> {
    if let Some(r) = part.strip_prefix("免去") {
        return removal(r, subject, Vec::new()).map(Part::Action);
    }
    if let Some(r) = part.strip_prefix("解聘") {
        return removal(r, subject, vec!["解聘".into()]).map(Part::Action);
    }
    if let Some(r) = part.strip_prefix("撤销") {
        if r.contains("职务") && (r.contains("同志") || r.starts_with('其')) {
            return removal(r, subject, vec!["撤销职务".into()]).map(Part::Action);
        }
    }
    if let Some(r) = part.strip_prefix("终止") {
        if r.contains("试用期") {
            return termination(r, subject);
        }
    }
    if let Some(r) = part.strip_prefix("任命") {
        return appoint_with_wei(r, subject, Vec::new()).map(Part::Action);
    }
    for v in ["聘任", "聘用", "聘请"] {
        if let Some(r) = part.strip_prefix(v) {
            return appoint_with_wei(r, subject, vec!["聘任".into()]).map(Part::Action);
        }
    }
    // `P同志 <predicate>`.
    if let Some(idx) = part.find("同志") {
        if let Some(persons) = parse_names(&part[..idx]) {
            return predicate(&part[idx + "同志".len()..], persons, section);
        }
    }
    // A predicate acting on the clause's subject (`免去其…` is handled above).
    if let Some(subj) = subject {
        let r = part.strip_prefix('其').unwrap_or(part);
        if starts_with_predicate(r) {
            return predicate(r, subj.to_vec(), section);
        }
    }
    // `张三任…` without 同志: try short name prefixes.
    for (n, (i, _)) in part.char_indices().enumerate().skip(2) {
        if n > 4 {
            break;
        }
        let (name, rest) = part.split_at(i);
        if starts_with_predicate(rest) && !rest.starts_with("任命") {
            if let Some(persons) = parse_names(name) {
                // Without 同志 the "name" may be ordinary words (`另有任用`): only a
                // predicate that parses makes it a name.
                if let Ok(p) = predicate(rest, persons, section) {
                    return Ok(p);
                }
            }
        }
    }
    if part.starts_with("试用期") {
        return Ok(match probation_months(part) {
            Some(m) => Part::Probation(m),
            None => Part::Note(part.to_string()),
        });
    }
    if matches!(part, "兼" | "兼任" | "兼职") {
        return Ok(Part::Concurrent);
    }
    Ok(Part::Note(part.to_string()))
}

fn starts_with_predicate(s: &str) -> bool {
    [
        "任",
        "担任",
        "出任",
        "兼任",
        "兼",
        "挂职",
        "挂任",
        "不再担任",
        "不再兼任",
        "为",
        "聘为",
    ]
    .iter()
    .any(|v| s.starts_with(v))
}

/// The predicate after `P同志`.
fn predicate(rest: &str, persons: Vec<Person>, section: Option<EventKind>) -> Res<Part> {
    use EventKind::*;
    let subject = Some(persons.as_slice());
    let table: [(&str, EventKind, bool, Option<&str>); 14] = [
        ("任命为", Appointment, false, None),
        ("挂职担任", Appointment, false, Some("挂职")),
        ("挂职任", Appointment, false, Some("挂职")),
        ("挂任", Appointment, false, Some("挂职")),
        ("挂职", Appointment, false, Some("挂职")),
        ("聘任为", Appointment, false, Some("聘任")),
        ("聘为", Appointment, false, Some("聘任")),
        ("不再担任", Removal, false, None),
        ("不再兼任", Removal, true, None),
        ("兼任", Appointment, true, None),
        ("担任", Appointment, false, None),
        ("出任", Appointment, false, None),
        ("兼", Appointment, true, None),
        ("任", Appointment, false, None),
    ];
    for (verb, kind, concurrent, note) in table {
        if let Some(r) = rest.strip_prefix(verb) {
            let mut a = action(kind, persons, r)?;
            a.concurrent |= concurrent;
            a.notes.extend(note.map(str::to_string));
            return Ok(Part::Action(a));
        }
    }
    if let Some(r) = rest.strip_prefix("免去") {
        return removal(r, subject, Vec::new()).map(Part::Action);
    }
    if let Some(r) = rest.strip_prefix("终止") {
        return termination(&format!("其{r}"), subject);
    }
    if let Some(r) = rest.strip_prefix('为') {
        let kind = section.unwrap_or(Appointment);
        return action(kind, persons, r).map(Part::Action);
    }
    if NOTE_PREDICATES.contains(&rest) {
        return Ok(Part::Subject(persons, vec![rest.to_string()]));
    }
    if let Some(kind) = section {
        if !rest.is_empty() {
            let r = rest.strip_prefix('的').unwrap_or(rest);
            return action(kind, persons, r).map(Part::Action);
        }
    }
    if rest.is_empty() {
        return Err("a name without an appointment or removal".to_string());
    }
    Err(format!("unknown verb in “{rest}”"))
}

fn action(kind: EventKind, persons: Vec<Person>, op: &str) -> Res<Action> {
    let items = parse_op(op)?;
    Ok(Action {
        kind,
        persons,
        items,
        concurrent: false,
        probation: None,
        notes: Vec::new(),
    })
}

/// After `免去`/`解聘`/`撤销`: the persons (`其`, `P同志`, `P的`, or the subject) then the
/// posts.
fn removal(r: &str, subject: Option<&[Person]>, notes: Vec<String>) -> Res<Action> {
    let (persons, rest) = persons_then_rest(r, subject)?;
    let mut rest = rest;
    for p in ["担任的", "所任的", "所任", "的"] {
        if let Some(x) = rest.strip_prefix(p) {
            rest = x;
            break;
        }
    }
    let mut concurrent = false;
    for p in ["兼任的", "所兼", "兼任"] {
        if let Some(x) = rest.strip_prefix(p) {
            rest = x;
            concurrent = true;
            break;
        }
    }
    let mut a = action(EventKind::Removal, persons, rest)?;
    a.concurrent |= concurrent;
    a.notes = notes;
    Ok(a)
}

fn persons_then_rest<'a>(r: &'a str, subject: Option<&[Person]>) -> Res<(Vec<Person>, &'a str)> {
    if let Some(rest) = r.strip_prefix('其') {
        let p = subject.ok_or("“其” without a person named before")?;
        return Ok((p.to_vec(), rest));
    }
    if let Some(idx) = r.find("同志") {
        if let Some(p) = parse_names(&r[..idx]) {
            return Ok((p, &r[idx + "同志".len()..]));
        }
    }
    if let Some(idx) = r.find('的') {
        if let Some(p) = parse_names(&r[..idx]) {
            return Ok((p, &r[idx..]));
        }
    }
    match subject {
        Some(p) => Ok((p.to_vec(), r)),
        None => Err(format!("cannot find the person in “{r}”")),
    }
}

/// After `任命`/`聘任`: `P同志为OP`, `P为OP`, `其为OP` or `为OP`.
fn appoint_with_wei(r: &str, subject: Option<&[Person]>, notes: Vec<String>) -> Res<Action> {
    let (persons, op) = if let Some(op) = r.strip_prefix("其为").or_else(|| r.strip_prefix('为'))
    {
        let p = subject.ok_or("“为” without a person named before")?;
        (p.to_vec(), op)
    } else if let Some(idx) = r.find("同志为") {
        let p = parse_names(&r[..idx]).ok_or_else(|| format!("bad name in “{r}”"))?;
        (p, &r[idx + "同志为".len()..])
    } else {
        // 为 may occur inside a name (李为民): take the first 为 after a valid name list.
        let mut found = None;
        for (i, c) in r.char_indices() {
            if i > 120 {
                break;
            }
            if c == '为' {
                if let Some(p) = parse_names(&r[..i]) {
                    found = Some((p, &r[i + '为'.len_utf8()..]));
                    break;
                }
            }
        }
        found.ok_or_else(|| format!("cannot find “…为…” in “{r}”"))?
    };
    let mut a = action(EventKind::Appointment, persons, op)?;
    a.notes = notes;
    Ok(a)
}

/// `终止 P同志(的)OP(职务)试用期` (the leading 终止 already consumed).
fn termination(r: &str, subject: Option<&[Person]>) -> Res<Part> {
    let (persons, rest) = persons_then_rest(r, subject)?;
    let upto = rest.find("试用期").unwrap_or(rest.len());
    let mut op = &rest[..upto];
    for p in ["担任的", "任的", "的", "任"] {
        if let Some(x) = op.strip_prefix(p) {
            op = x;
            break;
        }
    }
    loop {
        let before = op.len();
        for s in ["的", "职务"] {
            op = op.strip_suffix(s).unwrap_or(op);
        }
        if op.len() == before {
            break;
        }
    }
    let note = vec!["终止试用期".to_string()];
    if op.is_empty() {
        return Ok(Part::Subject(persons, note));
    }
    let mut a = action(EventKind::Removal, persons, op)?;
    a.notes = note;
    Ok(Part::Action(a))
}

/// `P同志OP试用期满，正式任职` and `P同志试用期满，正式任OP`.
fn confirmation(s: &str) -> Res<Option<Clause>> {
    let Some((pos, len)) = ["试用期已满", "试用期届满", "试用期满"]
        .iter()
        .filter_map(|k| s.find(k).map(|p| (p, k.len())))
        .min()
    else {
        return Ok(None);
    };
    let before = &s[..pos];
    let after = &s[pos + len..];
    let idx = before.find("同志").ok_or("confirmation without “…同志”")?;
    let persons = parse_names(strip_fillers(&before[..idx]))
        .ok_or_else(|| format!("bad name in “{before}”"))?;
    let mut op = before[idx + "同志".len()..].trim_end_matches('，');
    for p in ["担任的", "所任", "任的", "担任", "任", "的"] {
        if let Some(x) = op.strip_prefix(p) {
            op = x;
            break;
        }
    }
    loop {
        let b = op.len();
        for suf in ["的", "职务"] {
            op = op.strip_suffix(suf).unwrap_or(op);
        }
        if op.len() == b {
            break;
        }
    }
    let op = if !op.is_empty() {
        op.to_string()
    } else {
        let mut found = None;
        for kw in ["正式任命为", "正式担任", "正式任", "任命为", "担任"] {
            if let Some(i) = after.find(kw) {
                let r = &after[i + kw.len()..];
                let r = split_top(r, &['，'])[0];
                if !r.is_empty() && !r.starts_with('职') {
                    found = Some(r.to_string());
                    break;
                }
            }
        }
        found.ok_or("confirmation without a post")?
    };
    let mut a = action(EventKind::Confirmation, persons, &op)?;
    a.concurrent = false;
    Ok(Some(Clause {
        actions: vec![a],
        effective: None,
    }))
}

/// Splits at separators outside brackets and quotes.
pub(crate) fn split_top<'a>(s: &'a str, seps: &[char]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '（' | '《' | '〔' | '【' | '“' | '〈' => depth += 1,
            '）' | '》' | '〕' | '】' | '”' | '〉' => depth = depth.saturating_sub(1),
            _ if depth == 0 && seps.contains(&c) => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A list of names `孙丽华（女）、吴斌`: each two to four ideographs (longer with a
/// middle dot, for minority names), optionally followed by `（女）`/`（男）`.
pub(crate) fn parse_names(s: &str) -> Option<Vec<Person>> {
    let s = s.strip_suffix('等').unwrap_or(s);
    if s.is_empty() || s.len() > 400 {
        return None;
    }
    let mut out = Vec::new();
    for raw in split_top(s, &['、']) {
        let (name, gender) = match raw.find('（') {
            Some(open) => {
                let inner = raw[open..].strip_prefix('（')?.strip_suffix('）')?;
                let g = if inner.starts_with('女') {
                    Some(Gender::Female)
                } else if inner.starts_with('男') {
                    Some(Gender::Male)
                } else {
                    return None;
                };
                (&raw[..open], g)
            }
            None => (raw, None),
        };
        if !valid_name(name) {
            return None;
        }
        out.push(Person {
            name: name.to_string(),
            gender,
        });
    }
    Some(out)
}

fn valid_name(s: &str) -> bool {
    let n = s.chars().count();
    let dotted = s.contains(['·', '•', '.']);
    let chars_ok = s.chars().all(|c| is_han(c) || matches!(c, '·' | '•' | '.'));
    if !chars_ok || s.starts_with(['·', '•', '.']) || s.ends_with(['·', '•', '.']) {
        return false;
    }
    if dotted {
        (3..=20).contains(&n)
    } else {
        (2..=4).contains(&n) && !s.starts_with('其')
    }
}

enum Modifier {
    Concurrent,
    Probation(u32),
    Note(String),
}

fn classify(inner: &str) -> Modifier {
    if matches!(inner, "兼" | "兼任" | "兼职") {
        Modifier::Concurrent
    } else if inner.starts_with("试用期") {
        match probation_months(inner) {
            Some(m) => Modifier::Probation(m),
            None => Modifier::Note(inner.to_string()),
        }
    } else {
        Modifier::Note(inner.to_string())
    }
}

/// Removes one trailing `（…）` group, returning the rest and the group's content.
fn peel_paren(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_suffix('）')?;
    let mut depth = 0usize;
    for (i, c) in body.char_indices().rev() {
        match c {
            '）' => depth += 1,
            '（' if depth == 0 => return Some((&s[..i], &body[i + '（'.len_utf8()..])),
            '（' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Peels trailing modifiers and `职务` off `s`.
fn peel_all(mut s: &str, mods: &mut Vec<Modifier>) -> (String, bool) {
    let mut had_zhiwu = false;
    loop {
        if let Some(r) = s.strip_suffix("职务") {
            s = r;
            had_zhiwu = true;
            continue;
        }
        if let Some((r, inner)) = peel_paren(s) {
            // A parenthesised second name (`办公室（人民防空办公室）`) belongs to the
            // organization; it is never last once a post follows it.
            mods.push(classify(inner));
            s = r;
            continue;
        }
        break;
    }
    (s.to_string(), had_zhiwu)
}

/// An organization-post list: `市人社局副局长、总会计师`, `市A局副局长、市B大队大队长`,
/// `A局局长（兼）`.
pub(crate) fn parse_op(s: &str) -> Res<Vec<Item>> {
    // Modifiers after `职务` apply to the whole list.
    let mut global = Vec::new();
    let mut body = s.to_string();
    {
        let mut mods = Vec::new();
        let (rest, zhiwu) = peel_all(s, &mut mods);
        if zhiwu {
            global = mods;
            body = rest;
        }
    }
    let mut list_concurrent = false;
    let mut list_probation = None;
    let mut list_notes = Vec::new();
    for m in global.into_iter().rev() {
        match m {
            Modifier::Concurrent => list_concurrent = true,
            Modifier::Probation(p) => list_probation = Some(p),
            Modifier::Note(n) => list_notes.push(n),
        }
    }
    let mut items: Vec<Item> = Vec::new();
    let mut prev_org: Option<String> = None;
    for raw in split_top(&body, &['、']) {
        for (chunk, concurrent) in split_concurrent(raw) {
            let mut mods = Vec::new();
            let chunk = chunk.strip_prefix('的').unwrap_or(chunk);
            let (core, _) = peel_all(chunk, &mut mods);
            if core.is_empty() {
                return Err(format!("empty post in “{s}”"));
            }
            let (org, post) = split_post(&core)
                .ok_or_else(|| format!("no known post title at the end of “{core}”"))?;
            let org = if org.is_empty() {
                prev_org
                    .clone()
                    .ok_or_else(|| format!("post “{post}” without an organization"))?
            } else {
                org.to_string()
            };
            prev_org = Some(org.clone());
            let mut item = Item {
                organization: org,
                post: post.to_string(),
                concurrent: concurrent || list_concurrent,
                probation: list_probation,
                notes: Vec::new(),
            };
            for m in mods.into_iter().rev() {
                match m {
                    Modifier::Concurrent => item.concurrent = true,
                    Modifier::Probation(p) => item.probation = Some(p),
                    Modifier::Note(n) => item.notes.push(n),
                }
            }
            item.notes.extend(list_notes.iter().cloned());
            items.push(item);
        }
    }
    if items.is_empty() {
        return Err(format!("no post in “{s}”"));
    }
    Ok(items)
}

/// `A局局长兼B办主任` → (`A局局长`, false), (`B办主任`, true). A `兼` only splits where
/// the text before it ends with a post title.
fn split_concurrent(s: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut concurrent = false;
    let mut depth = 0usize;
    let mut i = 0;
    while i < s.len() {
        let c = s[i..].chars().next().unwrap_or(' ');
        match c {
            '（' => depth += 1,
            '）' => depth = depth.saturating_sub(1),
            '兼' if depth == 0 && i > start => {
                let head = &s[start..i];
                if split_post(head).is_some_and(|(_, p)| !p.is_empty()) {
                    let skip = if s[i..].starts_with("兼任") {
                        "兼任".len()
                    } else {
                        c.len_utf8()
                    };
                    if i + skip < s.len() {
                        out.push((head, concurrent));
                        start = i + skip;
                        concurrent = true;
                        i = start;
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += c.len_utf8();
    }
    out.push((&s[start..], concurrent));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (kind, person, organization, post, concurrent, probation, notes) per event.
    type Flat = (
        EventKind,
        String,
        String,
        String,
        bool,
        Option<u32>,
        Vec<String>,
    );

    fn events(s: &str) -> Vec<Flat> {
        let c = parse_clause(s, None).unwrap_or_else(|e| panic!("{s}: {e}"));
        let mut out = Vec::new();
        for a in c.actions {
            for p in &a.persons {
                for it in &a.items {
                    let mut notes = a.notes.clone();
                    notes.extend(it.notes.clone());
                    out.push((
                        a.kind,
                        p.name.clone(),
                        it.organization.clone(),
                        it.post.clone(),
                        a.concurrent || it.concurrent,
                        it.probation.or(a.probation),
                        notes,
                    ));
                }
            }
        }
        out
    }

    use EventKind::*;

    #[test]
    fn appointment_with_concurrent_and_removal_of_subject() {
        let e = events("刘辉同志任市国防动员办公室（市人民防空办公室）主任（兼），免去其岳阳惠临投资发展有限公司董事长职务");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, Appointment);
        assert_eq!(e[0].2, "市国防动员办公室（市人民防空办公室）");
        assert_eq!(e[0].3, "主任");
        assert!(e[0].4);
        assert_eq!(
            (e[1].0, e[1].1.as_str(), e[1].3.as_str(), e[1].4),
            (Removal, "刘辉", "董事长", false)
        );
    }

    #[test]
    fn removal_with_two_posts_and_list_concurrent() {
        let e = events("免去丁华（女）同志市人力资源和社会保障局副局长、总会计师职务");
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].2, "市人力资源和社会保障局");
        assert_eq!(e[1].3, "总会计师");
        let e = events("免去周伏同志市国防动员办公室（市人民防空办公室）主任职务（兼）");
        assert!(e[0].4);
        assert_eq!(e[0].2, "市国防动员办公室（市人民防空办公室）");
    }

    #[test]
    fn several_people_and_organizations() {
        let e = events("免去孙丽华（女）、吴斌同志县财政局副局长、县农业综合开发办公室主任职务");
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].1, "孙丽华");
        assert_eq!(e[2].1, "吴斌");
        assert_eq!(e[3].2, "县农业综合开发办公室");
        let c = parse_clause("免去孙丽华（女）、吴斌同志县财政局副局长职务", None).unwrap();
        assert_eq!(c.actions[0].persons[0].gender, Some(Gender::Female));
        assert_eq!(c.actions[0].persons[1].gender, None);
    }

    #[test]
    fn verbs() {
        assert_eq!(events("任命张建国同志为县教育局局长")[0].0, Appointment);
        assert_eq!(events("任命李为民为县教育局副局长")[0].1, "李为民");
        let e = events("聘任王芳同志为县城市建设投资有限公司总经理");
        assert_eq!(e[0].6, vec!["聘任"]);
        let e = events("解聘赵强同志县城市建设投资有限公司副总经理职务");
        assert_eq!(
            (e[0].0, e[0].6.clone()),
            (Removal, vec!["解聘".to_string()])
        );
        let e = events("李明同志兼任县应急管理局局长");
        assert!(e[0].4);
        let e = events("张三同志不再担任县水利局副局长职务");
        assert_eq!(e[0].0, Removal);
        let e = events("周强同志挂职任县发展和改革局副局长");
        assert_eq!(e[0].6, vec!["挂职"]);
        let e = events("免去陈刚同志县林业局局长职务，退休");
        assert_eq!(e[0].6, vec!["退休"]);
        let e = events("免去方芳（女）同志县自然资源局副局长职务，另有任用");
        assert_eq!(e[0].6, vec!["另有任用"]);
        let e = events("免去陈刚同志县林业局局长职务（另有任用）");
        assert_eq!(e[0].6, vec!["另有任用"]);
        let e = events("终止刘洋同志县统计局副局长试用期");
        assert_eq!(
            (e[0].0, e[0].6.clone()),
            (Removal, vec!["终止试用期".to_string()])
        );
        let e = events("张三任县审计局副局长");
        assert_eq!(e[0].1, "张三");
    }

    #[test]
    fn confirmation_forms() {
        let e = events("王磊同志县商务局副局长试用期满，正式任职");
        assert_eq!(
            (e[0].0, e[0].2.as_str(), e[0].3.as_str()),
            (Confirmation, "县商务局", "副局长")
        );
        let e = events("王磊同志试用期满，经考核合格，正式任县商务局副局长");
        assert_eq!((e[0].0, e[0].3.as_str()), (Confirmation, "副局长"));
    }

    #[test]
    fn probation_and_effective() {
        let e = events("谢纬霖同志任市黄盖湖自然保护区管理中心主任（试用期一年）");
        assert_eq!(e[0].5, Some(12));
        let e = events("阎炜同志任市库区移民服务中心副主任，试用期六个月");
        assert_eq!(e[0].5, Some(6));
        let c = parse_clause("张三同志自2023年5月1日起任县审计局副局长", None).unwrap();
        assert_eq!(c.effective.as_deref(), Some("2023-05-01"));
        assert_eq!(c.actions[0].items[0].post, "副局长");
    }

    #[test]
    fn concurrent_inside_list() {
        let e = events("李强同志任县财政局局长兼县国有资产事务中心主任");
        assert_eq!(e.len(), 2);
        assert!(!e[0].4);
        assert!(e[1].4);
        assert_eq!(e[1].2, "县国有资产事务中心");
    }

    #[test]
    fn failures_are_errors() {
        for s in [
            "张伟同志调往岳阳市工作",
            "免去其县财政局局长职务",
            "任命张三为县某中心首席专家",
            "同志",
            "",
            "免去",
            "（",
        ] {
            assert!(parse_clause(s, None).is_err(), "{s}");
        }
    }

    #[test]
    fn section_verbs() {
        let c = parse_clause("张三同志为县文化馆馆长", Some(Appointment)).unwrap();
        assert_eq!(c.actions[0].kind, Appointment);
        let c = parse_clause("李四同志县文化馆副馆长职务", Some(Removal)).unwrap();
        assert_eq!(c.actions[0].kind, Removal);
    }

    #[test]
    fn split_top_respects_brackets() {
        assert_eq!(
            split_top("a，b（c，d）e，f", &['，']),
            vec!["a", "b（c，d）e", "f"]
        );
        assert_eq!(parse_names("孙丽华（女）、吴斌").unwrap().len(), 2);
        assert!(parse_names("免去张三同志").is_none());
        assert!(parse_names("阿依古丽·买买提").is_some());
    }
}
