//! The parser's output: structured notices and diagnostics, serialised exactly as
//! `renmian parse` prints them (the JSON shape is a public contract, see README).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Everything the parser found in one input: the personnel notices, in input order, and
/// diagnostics about text it could not (fully) understand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseOutput {
    pub notices: Vec<Notice>,
    pub diagnostics: Vec<Diagnostic>,
}

/// One appointment/removal notice (任免通知) as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// 文号, e.g. `临政人〔2023〕4号`, normalised to 〔〕 brackets; `None` when the text has none.
    pub document_number: Option<String>,
    /// The signing body (落款), e.g. `临湘市人民政府`; `None` if it cannot be determined.
    pub issuer: Option<String>,
    /// The full title, with a title split over two lines joined, e.g.
    /// `临湘市人民政府关于袁飞龙等同志职务任免的通知`.
    pub title: String,
    /// The date of the signature line.
    pub issued_on: Option<NaiveDate>,
    /// Sentences of the body that are not personnel clauses but belong to the notice
    /// (e.g. `董事长、总经理、副总经理的任免，按《中华人民共和国公司法》有关规定办理。`).
    pub remarks: Vec<String>,
    /// One event per (person, post), in the order of the text.
    pub events: Vec<ParsedEvent>,
    /// Document numbers of earlier notices this one revokes (关于撤销…的通知); empty for an
    /// ordinary notice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revokes: Vec<String>,
    /// 1-based line of the input where the notice starts (its title).
    #[serde(skip)]
    pub line: usize,
    /// The notice's own text (title through date line) exactly as it appears in the input,
    /// used for the idempotency hash and stored with the notice. Not part of `parse` output.
    #[serde(skip)]
    pub source_text: String,
}

/// What a clause does to a person's tenure of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// 任 / 任命…为 / 兼任 / 聘任…为 / 挂职.
    Appointment,
    /// 免去 / 免去其 / 不再担任 / 解聘 / 终止试用期.
    Removal,
    /// 试用期满…正式任职: a probation ended well.
    Confirmation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Female,
    Male,
}

/// One fact of one clause: a person, a post at an organization, and what happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedEvent {
    pub kind: EventKind,
    /// The name only: no 同志, no （女）, inner spaces removed.
    pub person: String,
    pub gender: Option<Gender>,
    /// The organization as written in the notice (`市人力资源和社会保障局`).
    pub organization: String,
    /// `市`/`县`/`区` qualified by the issuer's jurisdiction and aliases resolved
    /// (`临湘市人力资源和社会保障局`).
    pub organization_canonical: String,
    /// Other names of the same body found in this notice or the alias table, canonical form
    /// (`市国防动员办公室（市人民防空办公室）` gives `临湘市人民防空办公室`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organization_aliases: Vec<String>,
    pub post: String,
    /// （兼）, 兼, 兼任.
    pub concurrent: bool,
    /// （试用期一年） gives 12.
    pub probation_months: Option<u32>,
    /// 1-based input line where the clause starts.
    pub line: usize,
    /// The clause as written, without its trailing `；`/`。`.
    pub clause: String,
    /// Anything else the clause says: 聘任, 挂职, 退休, 另有任用, 终止试用期 …
    pub note: Option<String>,
    /// An explicit effective date of this clause or of the whole notice (自2023年5月1日起),
    /// keeping its precision: `2023-05-01`, `2023-05` or `2023`. `None`: the issue date applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_on: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

/// Something in the input the parser could not fully understand; never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// 1-based line of the input.
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}
