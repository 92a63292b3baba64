//! A deterministic generator of realistic personnel notices (任免通知), for benchmarks and
//! scale tests.
//!
//! The generator simulates the staffing of several county-level jurisdictions (临湘市,
//! 岳阳县, 云溪区 …) over years and writes each change as a notice in the seed's genre
//! (`seeds/linxiang-gazette-2023-no2.md`): issuer and `关于X等同志职务任免的通知` title,
//! document number `(临政人〔2023〕4号)`, addressees, `经市人民政府研究决定：`, one clause per
//! line ending in `；` (the last in `。`), the 公司法 remark when a company post is involved,
//! then issuer and date.
//!
//! Because it keeps a model of who holds which seat, every notice is *consistent* with the
//! ones before it, the way a real registry's history is:
//! - appointments go into vacant seats only (head posts — 局长, 主任, 董事长, 总经理,
//!   总会计师 … — have one seat, deputy posts several), or into a head seat whose holder is
//!   removed in the same notice (a succession);
//! - removals (`免去…职务`) name current holders only, possibly two at once
//!   (`免去A、B同志…职务`) or two posts at once (`…副局长、总会计师职务`);
//! - 兼 posts (`任…（兼）`, `兼任…`, `任A局局长兼B中心主任`) are extra holdings of people
//!   who keep their main post;
//! - `（试用期一年）` appointments are followed, in the jurisdiction's first notice a year or
//!   more later, by `X同志试用期满，正式任…` unless the person left the post first;
//! - dates never decrease; document numbers count up per jurisdiction and year.
//!
//! The registry's projection of the generated history therefore raises no warnings, and
//! [`Generator::snapshot`] tells what the registry must answer for who holds what at the end.
//!
//! Names are drawn from common surnames and given-name characters, unique within a
//! jurisdiction but deliberately shared across jurisdictions now and then (same-name
//! collisions, as in real data). The generator is pure: no IO, no clock, no global state; a
//! seed fixes the output byte for byte ([`SplitMix64`] is ours, not a crate's).
//!
//! Size: a notice has 4–44 facts (mean ≈ 24), so 40 000 notices ≈ 1 000 000 events.

mod rng;
mod vocab;

use std::collections::BTreeSet;

use chrono::{Datelike, Days, Months, NaiveDate};

pub use rng::SplitMix64;
use vocab::{JurisdictionDef, OrgKind, FEMALE_GIVEN, JURISDICTIONS, MALE_GIVEN, ORGS, SURNAMES};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Fixes the output: the same config always yields the same notices.
    pub seed: u64,
    /// Number of notices.
    pub notices: usize,
    /// How many of the built-in jurisdictions issue them (1 ..= [`max_jurisdictions`]).
    pub jurisdictions: usize,
    /// Years the notices span; they end on `last_date`.
    pub years: u32,
    pub last_date: NaiveDate,
}

impl WorkloadConfig {
    /// `notices` notices from every built-in jurisdiction, ending 2024-12-31, spread over as
    /// many years as gives each jurisdiction about 30 notices a year (2 to 30 years), so a
    /// probation's confirmation comes a year or so after the appointment, as in real life.
    pub fn new(seed: u64, notices: usize) -> Self {
        let jurisdictions = JURISDICTIONS.len();
        let per_year = jurisdictions * 30;
        let years = u32::try_from(notices.div_ceil(per_year)).unwrap_or(30);
        Self {
            seed,
            notices,
            jurisdictions,
            years: years.clamp(2, 30),
            last_date: NaiveDate::from_ymd_opt(2024, 12, 31).expect("valid date"),
        }
    }
}

/// Number of built-in jurisdictions.
pub fn max_jurisdictions() -> usize {
    JURISDICTIONS.len()
}

/// One generated notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedNotice {
    /// `000042-linxiang-2023-7.txt`: sorts in generation (= date) order.
    pub file_name: String,
    /// The notice, exactly as a gazette would print it.
    pub text: String,
    /// Events ingesting it must append: one `NoticeRecorded` plus one per (person, post).
    pub expected_events: usize,
    /// People this notice names for the first time in its jurisdiction whose name another
    /// jurisdiction already uses for someone else: a registry that tells people apart by
    /// name and jurisdiction may flag each as a possible same person (同名).
    pub shared_names: Vec<String>,
    /// The issuing jurisdiction (`临湘市`).
    pub jurisdiction: &'static str,
    /// `临政人〔2023〕7号`.
    pub document_number: String,
    pub issued_on: NaiveDate,
}

/// Who holds a post at the end of what has been generated so far.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PostSnapshot {
    /// Canonical organization, as the registry names it (`临湘市财政局`).
    pub organization: String,
    pub post: &'static str,
    /// Names, sorted.
    pub holders: Vec<String>,
}

/// `true` for head and specialist posts, which have exactly one seat.
pub fn is_single_seat(post: &str) -> bool {
    matches!(
        post,
        "局长" | "主任" | "董事长" | "总经理" | "总会计师" | "总工程师" | "校长" | "院长"
    )
}

/// Generates `config.notices` notices, lazily and in date order.
pub fn generate(config: &WorkloadConfig) -> Generator {
    let mut rng = SplitMix64::new(config.seed);
    let count = config.jurisdictions.clamp(1, JURISDICTIONS.len());
    let world = JURISDICTIONS[..count]
        .iter()
        .map(|def| Jurisdiction::new(def, &mut rng))
        .collect();
    let years = config.years.max(1);
    let first_date = config
        .last_date
        .checked_sub_months(Months::new(12 * years))
        .unwrap_or(config.last_date);
    let span_days = (config.last_date - first_date).num_days().max(1) as u64;
    Generator {
        config: config.clone(),
        rng,
        world,
        index: 0,
        all_names: NamePool::default(),
        first_date,
        span_days,
    }
}

/// The iterator [`generate`] returns; also exposes the simulated state.
pub struct Generator {
    config: WorkloadConfig,
    rng: SplitMix64,
    world: Vec<Jurisdiction>,
    index: usize,
    /// Every name ever given, for deliberate cross-jurisdiction collisions.
    all_names: NamePool,
    first_date: NaiveDate,
    span_days: u64,
}

impl Iterator for Generator {
    type Item = GeneratedNotice;

    fn next(&mut self) -> Option<GeneratedNotice> {
        if self.index >= self.config.notices {
            return None;
        }
        let i = self.index;
        self.index += 1;
        let offset = (i as u64 * self.span_days) / self.config.notices.max(1) as u64;
        let date = self
            .first_date
            .checked_add_days(Days::new(offset))
            .unwrap_or(self.config.last_date);
        let j = self.rng.below(self.world.len());
        let notice = self.world[j].notice(date, &mut self.rng, &mut self.all_names);
        Some(GeneratedNotice {
            file_name: format!(
                "{i:06}-{}-{}-{}.txt",
                self.world[j].def.slug,
                date.year(),
                notice.number
            ),
            text: notice.text,
            shared_names: notice.shared_names,
            expected_events: 1 + notice.facts,
            jurisdiction: self.world[j].def.name,
            document_number: notice.document_number,
            issued_on: date,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.config.notices - self.index;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Generator {}

impl Generator {
    /// Names given to different people in different jurisdictions so far (same-name
    /// collisions), sorted. A registry keyed by name alone cannot tell these apart.
    pub fn shared_names(&self) -> Vec<String> {
        let mut seen: std::collections::BTreeMap<&str, usize> = Default::default();
        for j in &self.world {
            for name in &j.names {
                *seen.entry(name).or_default() += 1;
            }
        }
        seen.into_iter()
            .filter(|&(_, n)| n > 1)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Every post held by someone now, with its holders: what the registry's `holders`
    /// query must answer on the last generated notice's date.
    pub fn snapshot(&self) -> Vec<PostSnapshot> {
        let mut out = Vec::new();
        for j in &self.world {
            for slot in &j.slots {
                if slot.holders.is_empty() {
                    continue;
                }
                let mut holders: Vec<String> = slot
                    .holders
                    .iter()
                    .map(|&p| j.persons[p].name.clone())
                    .collect();
                holders.sort();
                out.push(PostSnapshot {
                    organization: j.orgs[slot.org].canonical.clone(),
                    post: slot.post,
                    holders,
                });
            }
        }
        out.sort();
        out
    }
}

/// Every name given in any jurisdiction.
#[derive(Default)]
struct NamePool {
    /// With the gender, to pick from (a name given twice appears twice).
    list: Vec<(String, bool)>,
    used: BTreeSet<String>,
}

type PersonId = usize;
type SlotId = usize;

struct Person {
    name: String,
    female: bool,
    holdings: Vec<Holding>,
    retired: bool,
}

#[derive(Debug, Clone, Copy)]
struct Holding {
    slot: SlotId,
    concurrent: bool,
    /// Start of a running probation (appointed `（试用期一年）`, not yet confirmed).
    probation_since: Option<NaiveDate>,
}

struct Slot {
    org: usize,
    post: &'static str,
    seats: usize,
    head: bool,
    holders: Vec<PersonId>,
}

struct Org {
    /// As notices write it: `市财政局`, `五里牌街道办事处`.
    written: String,
    /// An abbreviation the built-in alias table resolves (`市教体局`), used now and then.
    abbreviation: Option<String>,
    /// As the registry names it: `临湘市财政局`.
    canonical: String,
    kind: OrgKind,
}

struct Jurisdiction {
    def: &'static JurisdictionDef,
    orgs: Vec<Org>,
    slots: Vec<Slot>,
    persons: Vec<Person>,
    /// Names used in this jurisdiction: a name never means two people within it.
    names: BTreeSet<String>,
    /// People without a post who may be appointed again (另有任用).
    idle: Vec<PersonId>,
    /// Names of people introduced by the notice being written that other jurisdictions
    /// already use.
    shared: Vec<String>,
    year: i32,
    number: u32,
}

/// People kept for re-appointment; beyond this the longest-idle leave the jurisdiction.
const MAX_IDLE: usize = 40;

/// A notice under construction.
#[derive(Default)]
struct Draft {
    clauses: Vec<String>,
    facts: usize,
    persons: BTreeSet<PersonId>,
    slots: BTreeSet<SlotId>,
    named: usize,
    first: Option<String>,
    company: bool,
    appoints: bool,
    removes: bool,
}

impl Draft {
    fn name(&mut self, name: &str) {
        self.named += 1;
        if self.first.is_none() {
            self.first = Some(name.to_string());
        }
    }
}

struct Rendered {
    text: String,
    shared_names: Vec<String>,
    facts: usize,
    number: u32,
    document_number: String,
}

/// Removal notes for people leaving their last post: none, 另有任用, 退休.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaving {
    Plain,
    Reassigned,
    Retired,
}

impl Jurisdiction {
    fn new(def: &'static JurisdictionDef, rng: &mut SplitMix64) -> Self {
        let level = def.level.to_string();
        let mut orgs = Vec::new();
        for o in ORGS {
            orgs.push(Org {
                written: format!("{level}{}", o.stem),
                abbreviation: o.abbreviation.map(|a| format!("{level}{a}")),
                canonical: format!("{}{}", def.name, o.stem),
                kind: o.kind,
            });
        }
        for s in def.streets {
            let name = format!("{s}街道办事处");
            orgs.push(Org {
                written: name.clone(),
                abbreviation: None,
                canonical: name,
                kind: OrgKind::Office,
            });
        }
        let mut slots = Vec::new();
        for (i, org) in orgs.iter().enumerate() {
            let spec = ORGS.get(i).and_then(|o| o.specialist);
            let mut add = |post: &'static str, seats: usize, head: bool| {
                slots.push(Slot {
                    org: i,
                    post,
                    seats,
                    head,
                    holders: Vec::new(),
                })
            };
            match org.kind {
                OrgKind::Bureau => {
                    add("局长", 1, true);
                    add("副局长", rng.range(3, 4), false);
                }
                OrgKind::Office => {
                    add("主任", 1, true);
                    add("副主任", rng.range(2, 3), false);
                }
                OrgKind::Company => {
                    add("董事长", 1, true);
                    add("总经理", 1, true);
                    add("副总经理", rng.range(2, 3), false);
                }
                OrgKind::School => {
                    add("校长", 1, true);
                    add("副校长", 2, false);
                }
                OrgKind::Hospital => {
                    add("院长", 1, true);
                    add("副院长", 3, false);
                }
            }
            if let Some(post) = spec {
                add(post, 1, false);
            }
        }
        Self {
            def,
            orgs,
            slots,
            persons: Vec::new(),
            names: BTreeSet::new(),
            idle: Vec::new(),
            shared: Vec::new(),
            year: 0,
            number: 0,
        }
    }

    /// Writes the next notice of this jurisdiction, dated `date`, and applies it.
    fn notice(
        &mut self,
        date: NaiveDate,
        rng: &mut SplitMix64,
        all_names: &mut NamePool,
    ) -> Rendered {
        if date.year() != self.year {
            self.year = date.year();
            self.number = 0;
        }
        self.number += 1;
        let mut d = Draft::default();
        self.confirmations(date, rng, &mut d);
        let target = rng.range(4, 44);
        let mut attempts = 0;
        while d.facts < target && attempts < 4 * target {
            attempts += 1;
            let vacant: usize = self.slots.iter().map(|s| s.seats - s.holders.len()).sum();
            let seats: usize = self.slots.iter().map(|s| s.seats).sum();
            let ratio = vacant as f64 / seats as f64;
            let fill = if ratio > 0.35 {
                0.8
            } else if ratio < 0.12 {
                0.25
            } else {
                0.5
            };
            let r = rng.below(100);
            if rng.chance(fill) {
                match r {
                    0..55 => self.appoint_vacant(date, rng, all_names, &mut d),
                    55..75 => self.transfer(date, rng, &mut d),
                    75..88 => self.concurrent(rng, &mut d),
                    _ => self.compound(date, rng, all_names, &mut d),
                };
            } else if r < 55 {
                self.remove(rng, &mut d);
            } else {
                self.succession(date, rng, all_names, &mut d);
            }
        }
        if d.facts == 0 {
            // Every attempt found nothing to do (a tiny, saturated world): a removal always can.
            if !self.remove(rng, &mut d) {
                self.appoint_vacant(date, rng, all_names, &mut d);
            }
        }
        while self.idle.len() > MAX_IDLE {
            self.idle.remove(0);
        }
        self.render(date, rng, d)
    }

    fn render(&mut self, date: NaiveDate, rng: &mut SplitMix64, d: Draft) -> Rendered {
        let def = self.def;
        let level = def.level;
        let document_number = format!("{}〔{}〕{}号", def.prefix, date.year(), self.number);
        let number_line = match rng.below(10) {
            0..7 => format!("({document_number})"),
            7..9 => format!("（{document_number}）"),
            _ => document_number.clone(),
        };
        let first = d.first.clone().unwrap_or_default();
        let many = if d.named > 1 { "等" } else { "" };
        let kind = match (d.appoints, d.removes) {
            (true, false) if rng.chance(0.5) => "任职",
            (false, true) if rng.chance(0.5) => "免职",
            _ => "职务任免",
        };
        let addressees = match level {
            '县' => "各乡镇人民政府，县直各单位：".to_string(),
            l => format!("各镇人民政府、街道办事处，{l}直各单位："),
        };
        let mut text = String::with_capacity(64 * d.clauses.len() + 400);
        text.push_str(&format!(
            "{}  \n关于{first}{many}同志{kind}的通知\n{number_line}\n\n{addressees}\n\n经{level}人民政府研究决定：\n\n",
            def.issuer
        ));
        let last = d.clauses.len().saturating_sub(1);
        for (i, c) in d.clauses.iter().enumerate() {
            text.push_str(c);
            text.push_str(if i == last { "。\n\n" } else { "；\n\n" });
        }
        if d.company {
            text.push_str(
                "董事长、总经理、副总经理的任免，按《中华人民共和国公司法》有关规定办理。\n\n",
            );
        }
        let date_line = if rng.chance(0.15) {
            chinese_date(date)
        } else {
            format!("{}年{}月{}日", date.year(), date.month(), date.day())
        };
        text.push_str(&format!("{}\n\n{date_line}\n", def.issuer));
        Rendered {
            text,
            shared_names: std::mem::take(&mut self.shared),
            facts: d.facts,
            number: self.number,
            document_number,
        }
    }

    // --- the people ---------------------------------------------------------------------

    /// A new person with a name unused in this jurisdiction; now and then one already used
    /// in another jurisdiction (a same-name collision).
    fn new_person(&mut self, rng: &mut SplitMix64, all_names: &mut NamePool) -> PersonId {
        let mut chosen = None;
        if !all_names.list.is_empty() && rng.chance(0.05) {
            let (name, female) = rng.pick(&all_names.list).clone();
            if !self.names.contains(&name) {
                chosen = Some((name, female));
            }
        }
        let (name, female) = chosen.unwrap_or_else(|| loop {
            let female = rng.chance(0.3);
            let given = if female { FEMALE_GIVEN } else { MALE_GIVEN };
            let mut name = (*rng.pick(SURNAMES)).to_string();
            name.push_str(rng.pick::<&str>(given));
            if rng.chance(0.65) {
                name.push_str(rng.pick::<&str>(given));
            }
            if !self.names.contains(&name) {
                break (name, female);
            }
        });
        // Not new to this jurisdiction's names, so if known at all, then from another one.
        if !all_names.used.insert(name.clone()) {
            self.shared.push(name.clone());
        }
        all_names.list.push((name.clone(), female));
        self.names.insert(name.clone());
        self.persons.push(Person {
            name,
            female,
            holdings: Vec::new(),
            retired: false,
        });
        self.persons.len() - 1
    }

    /// Someone to appoint: a person waiting for a post (另有任用) or a new one.
    fn candidate(
        &mut self,
        rng: &mut SplitMix64,
        all_names: &mut NamePool,
        d: &Draft,
    ) -> (PersonId, bool) {
        if !self.idle.is_empty() && rng.chance(0.5) {
            let i = rng.below(self.idle.len());
            let p = self.idle[i];
            if !d.persons.contains(&p) {
                self.idle.swap_remove(i);
                return (p, false);
            }
        }
        (self.new_person(rng, all_names), true)
    }

    /// `张三` or `李红（女）`, as a clause names a person.
    fn who(&self, p: PersonId) -> String {
        let person = &self.persons[p];
        if person.female {
            format!("{}（女）", person.name)
        } else {
            person.name.clone()
        }
    }

    /// The organization as this clause writes it: usually the full name, sometimes the
    /// abbreviation the alias table resolves.
    fn org_text(&self, org: usize, rng: &mut SplitMix64) -> String {
        let o = &self.orgs[org];
        match &o.abbreviation {
            Some(a) if rng.chance(0.1) => a.clone(),
            _ => o.written.clone(),
        }
    }

    fn slot_text(&self, s: SlotId, rng: &mut SplitMix64) -> String {
        let slot = &self.slots[s];
        format!("{}{}", self.org_text(slot.org, rng), slot.post)
    }

    fn holding(&self, p: PersonId, s: SlotId) -> Option<Holding> {
        self.persons[p]
            .holdings
            .iter()
            .find(|h| h.slot == s)
            .copied()
    }

    fn take_seat(
        &mut self,
        p: PersonId,
        s: SlotId,
        concurrent: bool,
        probation: Option<NaiveDate>,
    ) {
        debug_assert!(self.slots[s].holders.len() < self.slots[s].seats);
        self.slots[s].holders.push(p);
        self.persons[p].holdings.push(Holding {
            slot: s,
            concurrent,
            probation_since: probation,
        });
    }

    fn leave_seat(&mut self, p: PersonId, s: SlotId) {
        self.slots[s].holders.retain(|&h| h != p);
        self.persons[p].holdings.retain(|h| h.slot != s);
    }

    /// After a person's last post ended: retired, or waiting for another (另有任用).
    fn after_leaving(&mut self, p: PersonId, how: Leaving) {
        if !self.persons[p].holdings.is_empty() {
            return;
        }
        if how == Leaving::Retired {
            self.persons[p].retired = true;
        } else if !self.persons[p].retired {
            self.idle.push(p);
        }
    }

    fn leaving(&self, p: PersonId, removed: usize, rng: &mut SplitMix64) -> Leaving {
        if self.persons[p].holdings.len() > removed {
            return Leaving::Plain;
        }
        match rng.below(10) {
            0..4 => Leaving::Retired,
            4..8 => Leaving::Reassigned,
            _ => Leaving::Plain,
        }
    }

    fn mark(&self, d: &mut Draft, s: SlotId) {
        d.slots.insert(s);
        if self.orgs[self.slots[s].org].kind == OrgKind::Company {
            d.company = true;
        }
    }

    /// A random slot satisfying `ok`, among a few random tries, not yet touched by `d`.
    fn find_slot(
        &self,
        rng: &mut SplitMix64,
        d: &Draft,
        ok: impl Fn(&Slot) -> bool,
    ) -> Option<SlotId> {
        for _ in 0..24 {
            let s = rng.below(self.slots.len());
            if !d.slots.contains(&s) && ok(&self.slots[s]) {
                return Some(s);
            }
        }
        None
    }

    // --- clauses ------------------------------------------------------------------------

    /// `X同志试用期满，正式任…` for every probation a year old or more.
    fn confirmations(&mut self, date: NaiveDate, rng: &mut SplitMix64, d: &mut Draft) {
        let due = date.checked_sub_months(Months::new(12)).unwrap_or(date);
        let mut found = Vec::new();
        for (s, slot) in self.slots.iter().enumerate() {
            for &p in &slot.holders {
                if let Some(h) = self.holding(p, s) {
                    if h.probation_since.is_some_and(|since| since <= due) {
                        found.push((p, s));
                    }
                }
            }
        }
        for (p, s) in found {
            if d.persons.contains(&p) {
                continue;
            }
            let who = self.who(p);
            let post = self.slot_text(s, rng);
            d.clauses.push(if rng.chance(0.6) {
                format!("{who}同志试用期满，正式任{post}")
            } else {
                format!("{who}同志{post}试用期满，正式任职")
            });
            d.facts += 1;
            d.appoints = true;
            d.persons.insert(p);
            self.mark(d, s);
            d.name(&self.persons[p].name);
            if let Some(h) = self.persons[p].holdings.iter_mut().find(|h| h.slot == s) {
                h.probation_since = None;
            }
        }
    }

    /// `X同志任市A局副局长（试用期一年）`, or two posts of one body at once
    /// (`任市财政局副局长、总会计师`).
    fn appoint_vacant(
        &mut self,
        date: NaiveDate,
        rng: &mut SplitMix64,
        all_names: &mut NamePool,
        d: &mut Draft,
    ) -> bool {
        let Some(s) = self.find_slot(rng, d, |s| s.holders.len() < s.seats) else {
            return false;
        };
        let (p, new) = self.candidate(rng, all_names, d);
        let who = self.who(p);
        let org = self.slots[s].org;
        // A deputy who is also the body's 总会计师/总工程师, when that seat is free too.
        let second = (!self.slots[s].head && self.slots[s].seats > 1 && rng.chance(0.3))
            .then(|| {
                (0..self.slots.len()).find(|&t| {
                    t != s
                        && self.slots[t].org == org
                        && self.slots[t].seats == 1
                        && !self.slots[t].head
                        && self.slots[t].holders.is_empty()
                        && !d.slots.contains(&t)
                })
            })
            .flatten();
        let clause = if let Some(t) = second {
            let text = format!(
                "{who}同志任{}{}、{}",
                self.org_text(org, rng),
                self.slots[s].post,
                self.slots[t].post
            );
            self.take_seat(p, s, false, None);
            self.take_seat(p, t, false, None);
            self.mark(d, t);
            d.facts += 2;
            text
        } else {
            let probation = rng.chance(if new { 0.6 } else { 0.2 });
            let text = format!(
                "{who}同志任{}{}",
                self.slot_text(s, rng),
                if probation {
                    "（试用期一年）"
                } else {
                    ""
                }
            );
            self.take_seat(p, s, false, probation.then_some(date));
            d.facts += 1;
            text
        };
        self.mark(d, s);
        d.persons.insert(p);
        d.name(&self.persons[p].name);
        d.appoints = true;
        d.clauses.push(clause);
        true
    }

    /// Moves `p` from seat `from` to seat `to` and returns the clause that says so:
    /// `X同志任<to>[（试用期一年）]，免去其<from>职务`. The caller marks `to` when needed.
    #[allow(clippy::too_many_arguments)]
    fn move_person(
        &mut self,
        p: PersonId,
        from: SlotId,
        to: SlotId,
        probation: bool,
        date: NaiveDate,
        rng: &mut SplitMix64,
        d: &mut Draft,
    ) -> String {
        let clause = format!(
            "{}同志任{}{}，免去其{}职务",
            self.who(p),
            self.slot_text(to, rng),
            if probation {
                "（试用期一年）"
            } else {
                ""
            },
            self.slot_text(from, rng)
        );
        self.leave_seat(p, from);
        self.take_seat(p, to, false, probation.then_some(date));
        self.mark(d, from);
        d.persons.insert(p);
        d.name(&self.persons[p].name);
        clause
    }

    /// `X同志任市B局副局长，免去其市A局副局长职务`: a move into a free seat.
    fn transfer(&mut self, date: NaiveDate, rng: &mut SplitMix64, d: &mut Draft) -> bool {
        let Some(from) = self.find_slot(rng, d, |s| !s.holders.is_empty()) else {
            return false;
        };
        let p = *rng.pick(&self.slots[from].holders);
        let held = self.holding(p, from).expect("holder holds the seat");
        if held.concurrent || d.persons.contains(&p) {
            return false;
        }
        let Some(to) = self.find_slot(rng, d, |s| {
            s.holders.len() < s.seats && !s.holders.contains(&p)
        }) else {
            return false;
        };
        if to == from {
            return false;
        }
        let probation = self.slots[to].head && rng.chance(0.3);
        let clause = self.move_person(p, from, to, probation, date, rng, d);
        self.mark(d, to);
        d.facts += 2;
        d.appoints = true;
        d.removes = true;
        d.clauses.push(clause);
        true
    }

    /// `X同志任市C中心主任（兼）` / `X同志兼任…`: a head of one body also heads another.
    fn concurrent(&mut self, rng: &mut SplitMix64, d: &mut Draft) -> bool {
        let Some(main) = self.find_slot(rng, d, |s| {
            s.head && s.holders.len() == 1 && self.orgs[s.org].kind == OrgKind::Bureau
        }) else {
            return false;
        };
        let p = self.slots[main].holders[0];
        if d.persons.contains(&p) || self.holding(p, main).is_none_or(|h| h.concurrent) {
            return false;
        }
        let Some(extra) = self.find_slot(rng, d, |s| {
            s.head
                && s.holders.is_empty()
                && matches!(self.orgs[s.org].kind, OrgKind::Office | OrgKind::Company)
        }) else {
            return false;
        };
        let who = self.who(p);
        let post = self.slot_text(extra, rng);
        let clause = if rng.chance(0.6) {
            format!("{who}同志任{post}（兼）")
        } else {
            format!("{who}同志兼任{post}")
        };
        self.take_seat(p, extra, true, None);
        self.mark(d, extra);
        d.persons.insert(p);
        d.name(&self.persons[p].name);
        d.facts += 1;
        d.appoints = true;
        d.clauses.push(clause);
        true
    }

    /// `X同志任县财政局局长兼县国有资产事务中心主任`: two free head seats at once, the
    /// second concurrent.
    fn compound(
        &mut self,
        date: NaiveDate,
        rng: &mut SplitMix64,
        all_names: &mut NamePool,
        d: &mut Draft,
    ) -> bool {
        let Some(a) = self.find_slot(rng, d, |s| {
            s.head && s.holders.is_empty() && self.orgs[s.org].kind == OrgKind::Bureau
        }) else {
            return self.appoint_vacant(date, rng, all_names, d);
        };
        let Some(b) = self.find_slot(rng, d, |s| {
            s.head && s.holders.is_empty() && self.orgs[s.org].kind == OrgKind::Office
        }) else {
            return self.appoint_vacant(date, rng, all_names, d);
        };
        let (p, _) = self.candidate(rng, all_names, d);
        let clause = format!(
            "{}同志任{}兼{}",
            self.who(p),
            self.slot_text(a, rng),
            self.slot_text(b, rng)
        );
        self.take_seat(p, a, false, None);
        self.take_seat(p, b, true, None);
        self.mark(d, a);
        self.mark(d, b);
        d.persons.insert(p);
        d.name(&self.persons[p].name);
        d.facts += 2;
        d.appoints = true;
        d.clauses.push(clause);
        true
    }

    /// `免去X同志…职务`, `免去A、B同志…职务`, `免去X同志…副局长、总会计师职务`,
    /// `…职务（兼）`, with `，另有任用` / `，退休` for people leaving their last post.
    fn remove(&mut self, rng: &mut SplitMix64, d: &mut Draft) -> bool {
        let Some(s) = self.find_slot(rng, d, |s| !s.holders.is_empty()) else {
            return false;
        };
        let holders: Vec<PersonId> = self.slots[s]
            .holders
            .iter()
            .copied()
            .filter(|p| !d.persons.contains(p))
            .collect();
        if holders.is_empty() {
            return false;
        }
        let p = *rng.pick(&holders);
        let concurrent = self.holding(p, s).is_some_and(|h| h.concurrent);
        let org = self.slots[s].org;
        // Two people leaving the same deputy post together.
        let partner = (!concurrent && holders.len() > 1 && rng.chance(0.3))
            .then(|| {
                holders
                    .iter()
                    .copied()
                    .find(|&q| q != p && self.holding(q, s).is_some_and(|h| !h.concurrent))
            })
            .flatten();
        if let Some(q) = partner {
            let clause = format!(
                "免去{}、{}同志{}职务",
                self.who(p),
                self.who(q),
                self.slot_text(s, rng)
            );
            for x in [p, q] {
                let how = self.leaving(x, 1, rng);
                self.leave_seat(x, s);
                self.after_leaving(x, how);
                d.persons.insert(x);
                d.name(&self.persons[x].name);
            }
            self.mark(d, s);
            d.facts += 2;
            d.removes = true;
            d.clauses.push(clause);
            return true;
        }
        // The same person's other post at the same body (副局长 and 总会计师).
        let sibling = (!concurrent)
            .then(|| {
                self.persons[p].holdings.iter().find(|h| {
                    h.slot != s
                        && !h.concurrent
                        && self.slots[h.slot].org == org
                        && !d.slots.contains(&h.slot)
                })
            })
            .flatten()
            .map(|h| h.slot);
        let mut slots = vec![s];
        slots.extend(sibling);
        let how = self.leaving(p, slots.len(), rng);
        let posts: Vec<&str> = slots.iter().map(|&x| self.slots[x].post).collect();
        let mut clause = format!(
            "免去{}同志{}{}职务",
            self.who(p),
            self.org_text(org, rng),
            posts.join("、")
        );
        if concurrent {
            clause.push_str("（兼）");
        }
        match how {
            Leaving::Retired => clause.push_str("，退休"),
            Leaving::Reassigned => clause.push_str("，另有任用"),
            Leaving::Plain => {}
        }
        for &x in &slots {
            self.leave_seat(p, x);
            self.mark(d, x);
        }
        self.after_leaving(p, how);
        d.persons.insert(p);
        d.name(&self.persons[p].name);
        d.facts += slots.len();
        d.removes = true;
        d.clauses.push(clause);
        true
    }

    /// A head seat changes hands in one notice: the successor is appointed (promoted from a
    /// deputy seat of the same body, back from 另有任用, or new), the predecessor removed.
    fn succession(
        &mut self,
        date: NaiveDate,
        rng: &mut SplitMix64,
        all_names: &mut NamePool,
        d: &mut Draft,
    ) -> bool {
        let Some(s) = self.find_slot(rng, d, |s| s.seats == 1 && s.holders.len() == 1) else {
            return false;
        };
        let q = self.slots[s].holders[0];
        if d.persons.contains(&q) {
            return false;
        }
        let org = self.slots[s].org;
        // A deputy of the same body, if one is free to move.
        let deputy = rng
            .chance(0.4)
            .then(|| {
                self.slots.iter().enumerate().find_map(|(t, slot)| {
                    (slot.org == org && slot.seats > 1 && !d.slots.contains(&t))
                        .then(|| {
                            slot.holders.iter().copied().find(|&x| {
                                x != q
                                    && !d.persons.contains(&x)
                                    && self.holding(x, t).is_some_and(|h| !h.concurrent)
                            })
                        })
                        .flatten()
                        .map(|x| (x, t))
                })
            })
            .flatten();
        let predecessor_concurrent = self.holding(q, s).is_some_and(|h| h.concurrent);
        // Predecessor first in the model, so the seat is free for the successor.
        let how = self.leaving(q, 1, rng);
        let mut removal = format!("免去{}同志{}职务", self.who(q), self.slot_text(s, rng));
        if predecessor_concurrent {
            removal.push_str("（兼）");
        }
        match how {
            Leaving::Retired => removal.push_str("，退休"),
            Leaving::Reassigned => removal.push_str("，另有任用"),
            Leaving::Plain => {}
        }
        self.leave_seat(q, s);
        let appointment = if let Some((p, from)) = deputy {
            let probation = rng.chance(0.3);
            let text = self.move_person(p, from, s, probation, date, rng, d);
            d.facts += 2;
            text
        } else {
            d.persons.insert(q);
            let (p, new) = self.candidate(rng, all_names, d);
            let probation = rng.chance(if new { 0.6 } else { 0.2 });
            let text = format!(
                "{}同志任{}{}",
                self.who(p),
                self.slot_text(s, rng),
                if probation {
                    "（试用期一年）"
                } else {
                    ""
                }
            );
            self.take_seat(p, s, false, probation.then_some(date));
            d.persons.insert(p);
            d.name(&self.persons[p].name);
            d.facts += 1;
            text
        };
        self.after_leaving(q, how);
        self.mark(d, s);
        d.persons.insert(q);
        d.name(&self.persons[q].name);
        d.facts += 1;
        d.appoints = true;
        d.removes = true;
        d.clauses.push(appointment);
        d.clauses.push(removal);
        true
    }
}

/// `二〇二三年四月二十四日`.
fn chinese_date(date: NaiveDate) -> String {
    const DIGITS: [char; 10] = ['〇', '一', '二', '三', '四', '五', '六', '七', '八', '九'];
    let year: String = date
        .year()
        .to_string()
        .chars()
        .map(|c| DIGITS[c.to_digit(10).unwrap_or(0) as usize])
        .collect();
    let small = |n: u32| -> String {
        match n {
            0..=9 => DIGITS[n as usize].to_string(),
            10 => "十".to_string(),
            11..=19 => format!("十{}", DIGITS[(n % 10) as usize]),
            _ if n % 10 == 0 => format!("{}十", DIGITS[(n / 10) as usize]),
            _ => format!(
                "{}十{}",
                DIGITS[(n / 10) as usize],
                DIGITS[(n % 10) as usize]
            ),
        }
    };
    format!("{year}年{}月{}日", small(date.month()), small(date.day()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(config: &WorkloadConfig) -> Vec<String> {
        generate(config).map(|n| n.text).collect()
    }

    #[test]
    fn same_seed_same_notices() {
        let c = WorkloadConfig::new(42, 60);
        assert_eq!(texts(&c), texts(&c));
        let a: Vec<_> = generate(&c).collect();
        let b: Vec<_> = generate(&c).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn different_seed_different_notices() {
        let a = texts(&WorkloadConfig::new(1, 30));
        let b = texts(&WorkloadConfig::new(2, 30));
        assert_ne!(a, b);
        assert_eq!(a.len(), 30);
    }

    #[test]
    fn dates_never_decrease_and_numbers_count_up_per_jurisdiction_and_year() {
        let notices: Vec<_> = generate(&WorkloadConfig::new(3, 400)).collect();
        assert!(notices.windows(2).all(|w| w[0].issued_on <= w[1].issued_on));
        let mut last: std::collections::BTreeMap<(&str, i32), u32> = Default::default();
        for n in &notices {
            let number: u32 = n
                .document_number
                .rsplit('〕')
                .next()
                .and_then(|s| s.strip_suffix('号'))
                .and_then(|s| s.parse().ok())
                .expect("number");
            let prev = last.insert((n.jurisdiction, n.issued_on.year()), number);
            assert_eq!(prev.unwrap_or(0) + 1, number, "{}", n.document_number);
        }
    }

    #[test]
    fn notices_have_the_genre_shape_and_the_reference_size() {
        let notices: Vec<_> = generate(&WorkloadConfig::new(5, 300)).collect();
        let events: usize = notices.iter().map(|n| n.expected_events).sum();
        let mean = events as f64 / notices.len() as f64;
        assert!(
            (18.0..32.0).contains(&mean),
            "mean events per notice {mean}"
        );
        for n in &notices {
            assert!(n.text.contains("同志"), "{}", n.text);
            assert!(n.text.contains("人民政府研究决定："));
            assert!(n.text.contains(&n.document_number));
            assert!(n.expected_events >= 2);
        }
        let all: String = notices.iter().map(|n| n.text.as_str()).collect();
        for shape in [
            "（试用期一年）",
            "试用期满",
            "（兼）",
            "免去其",
            "、",
            "另有任用",
            "退休",
        ] {
            assert!(all.contains(shape), "no {shape} in 300 notices");
        }
    }

    #[test]
    fn one_seat_posts_never_have_two_holders() {
        let mut g = generate(&WorkloadConfig::new(9, 500));
        for _ in g.by_ref() {}
        for post in g.snapshot() {
            if is_single_seat(post.post) {
                assert_eq!(post.holders.len(), 1, "{post:?}");
            }
        }
    }

    #[test]
    fn chinese_dates() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(chinese_date(d(2023, 4, 24)), "二〇二三年四月二十四日");
        assert_eq!(chinese_date(d(2010, 10, 10)), "二〇一〇年十月十日");
        assert_eq!(chinese_date(d(2024, 12, 31)), "二〇二四年十二月三十一日");
    }
}
