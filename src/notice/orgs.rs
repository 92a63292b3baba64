//! Organizations: the alias table, canonical names and jurisdictions.
//!
//! Notices name bodies relative to the issuer: a 临湘市人民政府 notice says `市教育体育局`
//! and means 临湘市教育体育局. They also use everyday abbreviations (`市教体局`,
//! `市人社局`) and occasionally give a body's second name in parentheses
//! (`市国防动员办公室（市人民防空办公室）`: one office, two plaques). The registry needs a
//! single canonical name per body, so:
//!
//! 1. the parenthesised second name is split off (it becomes an alias);
//! 2. an abbreviation is replaced by its full form from the [`AliasTable`];
//! 3. a leading `市`/`县`/`区`/`省` is replaced by the issuer's jurisdiction of that level
//!    (`市` in a 临湘市 notice → `临湘市`); names of other levels are left alone because a
//!    county notice saying `市…` refers to its parent city, which we cannot know.

use std::collections::HashMap;
use std::fmt;

use super::text::compact;

/// Characters that begin a jurisdiction-relative name (`市教体局`).
const LEVELS: [char; 4] = ['市', '县', '区', '省'];

/// An error in an alias TSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasTableError {
    /// 1-based line of the TSV.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for AliasTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "alias table line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for AliasTableError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Abbreviation,
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    abbreviation: String,
    full: String,
    /// Both sides start with the same level character: matched relative to a jurisdiction.
    relative: bool,
}

/// Abbreviation ⇄ full-name pairs (see `seeds/organization-aliases.tsv` for the format).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasTable {
    entries: Vec<Entry>,
    /// Relative entries, keyed by either side without its level character.
    stems: HashMap<String, Vec<(usize, Side)>>,
    /// Absolute entries, keyed by either side.
    exact: HashMap<String, Vec<(usize, Side)>>,
}

static BUILTIN_TSV: &str = include_str!("../../seeds/organization-aliases.tsv");

impl AliasTable {
    /// The table shipped in `seeds/organization-aliases.tsv`.
    pub fn builtin() -> Self {
        static TABLE: std::sync::OnceLock<AliasTable> = std::sync::OnceLock::new();
        TABLE
            .get_or_init(|| AliasTable::from_tsv(BUILTIN_TSV).unwrap_or_default())
            .clone()
    }

    /// Parses `abbreviation<TAB>full name` lines; `#` comment lines and blank lines are
    /// skipped.
    pub fn from_tsv(tsv: &str) -> Result<Self, AliasTableError> {
        let mut table = AliasTable::default();
        for (i, line) in tsv.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let err = |message: &str| AliasTableError {
                line: i + 1,
                message: message.to_string(),
            };
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != 2 {
                return Err(err("expected `abbreviation<TAB>full name`"));
            }
            let abbreviation = compact(fields[0]);
            let full = compact(fields[1]);
            if abbreviation.is_empty() || full.is_empty() {
                return Err(err("empty name"));
            }
            if abbreviation == full {
                return Err(err("abbreviation equals the full name"));
            }
            table.push(abbreviation, full);
        }
        Ok(table)
    }

    fn push(&mut self, abbreviation: String, full: String) {
        let a0 = abbreviation.chars().next();
        let relative = a0.is_some_and(|c| LEVELS.contains(&c)) && full.chars().next() == a0;
        let idx = self.entries.len();
        let (map, ka, kf) = if relative {
            let ka = abbreviation[a0.map_or(0, char::len_utf8)..].to_string();
            let kf = full[a0.map_or(0, char::len_utf8)..].to_string();
            (&mut self.stems, ka, kf)
        } else {
            (&mut self.exact, abbreviation.clone(), full.clone())
        };
        map.entry(ka).or_default().push((idx, Side::Abbreviation));
        map.entry(kf).or_default().push((idx, Side::Full));
        self.entries.push(Entry {
            abbreviation,
            full,
            relative,
        });
    }

    /// Every entry `name` matches, with the jurisdiction prefix to put in front of the
    /// entry's other side (empty for exact entries; `临湘市` for a relative match of
    /// `临湘市教体局`).
    fn hits(&self, name: &str) -> Vec<(String, usize, Side)> {
        let mut out = Vec::new();
        if let Some(v) = self.exact.get(name) {
            out.extend(v.iter().map(|&(i, s)| (String::new(), i, s)));
        }
        // A level character within the first few characters starts the relative part;
        // bounded so a long string costs a constant number of lookups.
        for (n, (k, c)) in name.char_indices().enumerate() {
            if n > 16 {
                break;
            }
            if !LEVELS.contains(&c) {
                continue;
            }
            let stem = &name[k + c.len_utf8()..];
            if let Some(v) = self.stems.get(stem) {
                let prefix = &name[..k + c.len_utf8()];
                out.extend(v.iter().map(|&(i, s)| (prefix.to_string(), i, s)));
            }
        }
        out
    }

    fn render(&self, prefix: &str, idx: usize, side: Side) -> String {
        let e = &self.entries[idx];
        let s = match side {
            Side::Abbreviation => &e.abbreviation,
            Side::Full => &e.full,
        };
        if e.relative {
            let first = s.chars().next().map_or(0, char::len_utf8);
            format!("{prefix}{}", &s[first..])
        } else {
            s.clone()
        }
    }

    /// The full form of an abbreviation (`市教体局` → `市教育体育局`, `临湘市人社局` →
    /// `临湘市人力资源和社会保障局`), or `None` if `name` is not a known abbreviation.
    pub fn full_form(&self, name: &str) -> Option<String> {
        let name = compact(name);
        self.hits(&name)
            .into_iter()
            .find(|h| h.2 == Side::Abbreviation)
            .map(|(p, i, _)| self.render(&p, i, Side::Full))
    }

    /// All names a query string may mean: itself, the full form of an abbreviation, and
    /// every abbreviation of that full form (or of the query, if it is a full name).
    /// Jurisdiction-relative: `临湘市教体局` gives `临湘市教育体育局`.
    pub fn expand(&self, name: &str) -> Vec<String> {
        let name = compact(name);
        let mut out = vec![name.clone()];
        let mut fulls: Vec<(String, usize)> = Vec::new();
        for (p, i, side) in self.hits(&name) {
            fulls.push((p.clone(), i));
            if side == Side::Abbreviation {
                push_unique(&mut out, self.render(&p, i, Side::Full));
            }
        }
        // Siblings: every abbreviation of each full form reached.
        for (p, i) in fulls {
            let full = self.render(&p, i, Side::Full);
            for (p2, j, side) in self.hits(&full) {
                if side == Side::Full {
                    push_unique(&mut out, self.render(&p2, j, Side::Abbreviation));
                }
            }
        }
        out
    }

    /// Number of alias pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// Splits `市国防动员办公室（市人民防空办公室）` into the primary name and the
/// parenthesised second names. Parentheses elsewhere (`中共…委员会（…）办公室`) are
/// part of the name and left alone.
pub(crate) fn split_parenthesised_alias(name: &str) -> (String, Vec<String>) {
    let name = compact(name);
    if let Some(open) = name.find('（') {
        if open > 0 && name.ends_with('）') && name[open..].matches('（').count() == 1 {
            let inner = &name[open + '（'.len_utf8()..name.len() - '）'.len_utf8()];
            let aliases = inner
                .split(['、', '，'])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            return (name[..open].to_string(), aliases);
        }
    }
    (name, Vec::new())
}

/// Qualifies a jurisdiction-relative name: `市教育体育局` in 临湘市 → `临湘市教育体育局`.
fn qualify(name: &str, jurisdiction: Option<&str>) -> String {
    let Some(j) = jurisdiction.filter(|j| !j.is_empty()) else {
        return name.to_string();
    };
    if let Some(rest) = name.strip_prefix('本') {
        if let Some(level) = j.chars().last().filter(|l| rest.starts_with(*l)) {
            return format!("{j}{}", &rest[level.len_utf8()..]);
        }
    }
    let Some(first) = name.chars().next() else {
        return name.to_string();
    };
    let rest = &name[first.len_utf8()..];
    // 市场监督管理局, 区域…, 县域… begin with a level character but are words of their own.
    let word = rest.starts_with('场') || rest.starts_with('域') || rest.is_empty();
    if LEVELS.contains(&first) && j.ends_with(first) && !word && !name.starts_with(j) {
        format!("{j}{rest}")
    } else {
        name.to_string()
    }
}

/// The canonical name of an organization as written in a notice: parenthesised second
/// name dropped, abbreviation resolved to the full form, then a leading `市`/`县`/`区`
/// qualified by the issuer's jurisdiction (`市教体局`, 临湘市 → `临湘市教育体育局`).
pub fn canonical_organization(
    as_written: &str,
    jurisdiction: Option<&str>,
    aliases: &AliasTable,
) -> String {
    let (primary, _) = split_parenthesised_alias(as_written);
    let full = aliases.full_form(&primary).unwrap_or(primary);
    qualify(&full, jurisdiction)
}

/// The other canonical names of the body named `as_written`: its parenthesised second
/// names, `also` (names the notice itself equates with it), and every alias-table name of
/// any of those (qualified the same way).
pub(crate) fn organization_aliases(
    as_written: &str,
    canonical: &str,
    jurisdiction: Option<&str>,
    aliases: &AliasTable,
    also: &[String],
) -> Vec<String> {
    let (_, second) = split_parenthesised_alias(as_written);
    let mut out = Vec::new();
    for s in second {
        let c = canonical_organization(&s, jurisdiction, aliases);
        if c != canonical {
            push_unique(&mut out, c);
        }
    }
    for a in also {
        if a != canonical {
            push_unique(&mut out, a.clone());
        }
    }
    let base: Vec<String> = std::iter::once(canonical.to_string())
        .chain(out.clone())
        .collect();
    for name in base {
        for a in aliases.expand(&name).into_iter().skip(1) {
            if a != canonical {
                push_unique(&mut out, a);
            }
        }
    }
    out
}

/// The jurisdiction an issuing body belongs to: `临湘市人民政府` → `临湘市`,
/// `岳阳县人民政府` → `岳阳县`, `湖南省人民政府` → `湖南省`, `岳阳市云溪区人民政府` →
/// `云溪区`, `临湘市教育体育局` → `临湘市`. `None` if no place name can be found.
pub fn jurisdiction_of(issuer: &str) -> Option<String> {
    let s = compact(issuer);
    let s = s
        .strip_prefix("中国共产党")
        .or_else(|| s.strip_prefix("中共"))
        .unwrap_or(&s);
    const GOVERNMENT: [&str; 6] = [
        "人民政府",
        "人民代表大会",
        "人大常委会",
        "政府",
        "委员会",
        "人民法院",
    ];
    let gov_cut = GOVERNMENT.iter().filter_map(|g| s.find(g)).min();
    // Place names are chains of `<name><level>` segments; the last one is the most
    // specific (湖南省岳阳市 → 岳阳市).
    let levels: &[char] = if gov_cut.is_some() {
        &['省', '市', '县', '区', '州', '旗', '盟', '镇', '乡']
    } else {
        &['省', '市', '县', '区', '州', '旗', '盟']
    };
    let place = &s[..gov_cut.unwrap_or(s.len())];
    let mut segments: Vec<&str> = Vec::new();
    let mut seg_start = 0;
    let mut seg_chars = 0;
    for (i, c) in place.char_indices() {
        // 乡/镇 inside a name (宁乡市, 湘乡市) is not a level: a level char follows it.
        let inside_name = matches!(c, '乡' | '镇')
            && place[i + c.len_utf8()..]
                .chars()
                .next()
                .is_some_and(|next| matches!(next, '市' | '县' | '区' | '州' | '旗'));
        if levels.contains(&c) && seg_chars >= 1 && !inside_name {
            segments.push(&place[seg_start..i + c.len_utf8()]);
            seg_start = i + c.len_utf8();
            seg_chars = 0;
            continue;
        }
        seg_chars += 1;
        // Place names are short (临湘市, 云溪区); a longer run is an organization name
        // (教育局城区分局), where the chain ends.
        if seg_chars >= 4 {
            break;
        }
    }
    segments
        .last()
        .filter(|s| s.chars().count() >= 2)
        .map(|s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_loads() {
        let t = AliasTable::builtin();
        assert!(t.len() >= 20);
        assert_eq!(AliasTable::from_tsv(BUILTIN_TSV).unwrap(), t);
    }

    #[test]
    fn expand_both_directions_and_relative() {
        let t = AliasTable::builtin();
        assert_eq!(t.expand("市教体局"), vec!["市教体局", "市教育体育局"]);
        assert_eq!(t.expand("市教育体育局"), vec!["市教育体育局", "市教体局"]);
        assert_eq!(
            t.expand("临湘市教体局"),
            vec!["临湘市教体局", "临湘市教育体育局"]
        );
        assert_eq!(
            t.expand("平江县人社局"),
            vec!["平江县人社局", "平江县人力资源和社会保障局"]
        );
        assert_eq!(t.expand("市财政局"), vec!["市财政局"]);
        assert_eq!(
            t.expand("惠临公司"),
            vec!["惠临公司", "岳阳惠临投资发展有限公司", "岳阳惠临公司"]
        );
        assert_eq!(
            t.expand("临湘市市场监管局"),
            vec!["临湘市市场监管局", "临湘市市场监督管理局"]
        );
    }

    #[test]
    fn tsv_errors() {
        assert!(AliasTable::from_tsv("# c\n\nA\tB\n").is_ok());
        let e = AliasTable::from_tsv("A\tB\nonlyone\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(AliasTable::from_tsv("A\tA").is_err());
        assert!(AliasTable::from_tsv("A\tB\tC").is_err());
    }

    #[test]
    fn canonical_names() {
        let t = AliasTable::builtin();
        let c = |s: &str, j: Option<&str>| canonical_organization(s, j, &t);
        assert_eq!(c("市教体局", Some("临湘市")), "临湘市教育体育局");
        assert_eq!(
            c("市人力资源和社会保障局", Some("临湘市")),
            "临湘市人力资源和社会保障局"
        );
        assert_eq!(
            c("市国防动员办公室（市人民防空办公室）", Some("临湘市")),
            "临湘市国防动员办公室"
        );
        assert_eq!(c("县教育局", Some("岳阳县")), "岳阳县教育局");
        assert_eq!(c("市教育局", Some("岳阳县")), "市教育局");
        assert_eq!(c("区住建局", Some("云溪区")), "云溪区住房和城乡建设局");
        assert_eq!(
            c("市市场监督管理局", Some("临湘市")),
            "临湘市市场监督管理局"
        );
        assert_eq!(c("市场服务中心", Some("临湘市")), "市场服务中心");
        assert_eq!(
            c("岳阳惠临投资发展有限公司", Some("临湘市")),
            "岳阳惠临投资发展有限公司"
        );
        assert_eq!(c("惠临公司", Some("临湘市")), "岳阳惠临投资发展有限公司");
        assert_eq!(c("临湘市财政局", Some("临湘市")), "临湘市财政局");
        assert_eq!(c("市财政局", None), "市财政局");
    }

    #[test]
    fn aliases_of_an_organization() {
        let t = AliasTable::builtin();
        let w = "市国防动员办公室（市人民防空办公室）";
        let c = canonical_organization(w, Some("临湘市"), &t);
        let a = organization_aliases(w, &c, Some("临湘市"), &t, &[]);
        assert_eq!(
            a,
            vec!["临湘市人民防空办公室", "临湘市国动办", "临湘市人防办"]
        );
    }

    #[test]
    fn jurisdictions() {
        assert_eq!(jurisdiction_of("临湘市人民政府").as_deref(), Some("临湘市"));
        assert_eq!(jurisdiction_of("岳阳县人民政府").as_deref(), Some("岳阳县"));
        assert_eq!(jurisdiction_of("云溪区人民政府").as_deref(), Some("云溪区"));
        assert_eq!(jurisdiction_of("湖南省人民政府").as_deref(), Some("湖南省"));
        assert_eq!(
            jurisdiction_of("平江县人民政府办公室").as_deref(),
            Some("平江县")
        );
        assert_eq!(
            jurisdiction_of("岳阳市云溪区人民政府").as_deref(),
            Some("云溪区")
        );
        assert_eq!(
            jurisdiction_of("临湘市教育体育局").as_deref(),
            Some("临湘市")
        );
        assert_eq!(
            jurisdiction_of("中共临湘市委组织部").as_deref(),
            Some("临湘市")
        );
        assert_eq!(jurisdiction_of("长安镇人民政府").as_deref(), Some("长安镇"));
        assert_eq!(jurisdiction_of("宁乡市人民政府").as_deref(), Some("宁乡市"));
        assert_eq!(jurisdiction_of("湘乡市人民政府").as_deref(), Some("湘乡市"));
        assert_eq!(
            jurisdiction_of("长沙市宁乡市人民政府").as_deref(),
            Some("宁乡市")
        );
        assert_eq!(jurisdiction_of("人民政府"), None);
        assert_eq!(jurisdiction_of(""), None);
    }
}
