//! The notice parser: text of personnel appointment/removal notices (任免通知) in,
//! structured events out. Pure: no IO, no clock, no global state beyond the built-in
//! alias table.
//!
//! # The genre
//!
//! A 任免通知 published by a people's government looks like this (the seed gazette,
//! `seeds/linxiang-gazette-2023-no2.md`, holds a real one):
//!
//! ```text
//! 临湘市人民政府                          ← title, often split over two lines
//! 关于袁飞龙等同志职务任免的通知
//! (临政人〔2023〕4号)                     ← document number (文号), brackets vary
//! 各镇人民政府、街道办事处，市直各单位：   ← addressees
//! 经市人民政府研究决定：                  ← lead-in
//! 袁飞龙同志任市老干部局局长（兼）；       ← clauses, one per person or pair of moves
//! 免去丁华（女）同志市人力资源和社会保障局副局长、总会计师职务；
//! …
//! 董事长、总经理、副总经理的任免，按《中华人民共和国公司法》有关规定办理。 ← remark
//! 临湘市人民政府                          ← issuer (落款)
//! 2023年4月24日                           ← date, also 二〇二三年四月二十四日
//! ```
//!
//! Rules the parser follows, and where they live:
//!
//! * [`text`]: bytes are UTF-8 (BOM or not), UTF-16 with BOM, or GB18030; all matching is
//!   done on a compact form without whitespace and with ASCII punctuation mapped to
//!   full-width, so `王  伟` is `王伟` and `(兼)` is `（兼）`.
//! * [`gazette`]: a notice is found by its title (genre words 任免/任职/免职/任命/聘任/
//!   解聘/职务/…, not 印发) plus a document number or a signature; table-of-contents
//!   entries (`..... (77)`) and every non-personnel document are skipped, whatever they
//!   say about 任组长.
//! * [`body`]: lines join into clauses across page breaks and blank lines; only `；`, `。`,
//!   `：`, an enumerator or a visibly new clause end one. Lead-ins, remarks, issuer and
//!   date are recognised; anything else unparsable becomes a [`Diagnostic`].
//! * [`clause`]: the verbs (任, 任命…为, 兼/兼任, 免去, 免去其, 不再担任, 聘任…为,
//!   解聘, 挂职, 试用期满…正式任职, 终止试用期) and the subject carried by `其`; one event
//!   per (person, post).
//! * [`posts`]: organization and post are split by the longest known post title at the
//!   end; a bare post in a list repeats the previous organization.
//! * [`orgs`]: canonical organization names (`市X` → `临湘市X`, abbreviations resolved via
//!   `seeds/organization-aliases.tsv`).
//! * [`date`], [`docnum`]: dates incl. Chinese numerals, probation periods, effective
//!   dates; document numbers normalised to `〔〕`.
//!
//! The parser never panics and is linear in its input: no backtracking regular
//! expressions, every look-around is bounded.

mod body;
mod clause;
mod date;
mod docnum;
mod gazette;
pub mod model;
mod orgs;
mod posts;
mod text;

pub use model::*;
pub use orgs::{canonical_organization, jurisdiction_of, AliasTable, AliasTableError};
pub use text::{decode, normalize_for_hash, DecodeError};

/// Parses every personnel notice in `text` using the built-in alias table.
pub fn parse(text: &str) -> ParseOutput {
    parse_with(text, &AliasTable::builtin())
}

/// Parses every personnel notice in `text`, resolving organization abbreviations with
/// `aliases`. Input without any personnel notice yields no notices.
pub fn parse_with(text: &str, aliases: &AliasTable) -> ParseOutput {
    let lines = text::split_lines(text);
    let (notices, mut diagnostics) = gazette::notices(text, &lines, aliases);
    diagnostics.sort_by_key(|d| d.line);
    ParseOutput {
        notices,
        diagnostics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOTICE: &str = "岳阳县人民政府\n关于张建国等同志职务任免的通知\n岳政人〔2023〕12号\n\n各乡镇人民政府，县直各单位：\n\n经县人民政府研究决定：\n\n一、张建国同志任县教育体育局局长；\n二、免去李红（女）同志县教体局副局长职务；\n三、张伟同志调往岳阳市工作。\n\n岳阳县人民政府\n2023年6月1日\n";

    #[test]
    fn parses_a_small_notice() {
        let out = parse(NOTICE);
        assert_eq!(out.notices.len(), 1);
        let n = &out.notices[0];
        assert_eq!(n.title, "岳阳县人民政府关于张建国等同志职务任免的通知");
        assert_eq!(n.document_number.as_deref(), Some("岳政人〔2023〕12号"));
        assert_eq!(n.issuer.as_deref(), Some("岳阳县人民政府"));
        assert_eq!(n.issued_on, chrono::NaiveDate::from_ymd_opt(2023, 6, 1));
        assert_eq!(n.events.len(), 2);
        assert_eq!(n.events[0].organization_canonical, "岳阳县教育体育局");
        assert_eq!(n.events[1].organization_canonical, "岳阳县教育体育局");
        assert_eq!(n.events[1].gender, Some(Gender::Female));
        assert_eq!(n.events[1].line, 10);
        assert_eq!(out.diagnostics.len(), 1);
        assert_eq!(out.diagnostics[0].line, 11);
        assert!(out.diagnostics[0]
            .message
            .contains("张伟同志调往岳阳市工作"));
        assert!(n.source_text.starts_with("岳阳县人民政府\n关于"));
        assert!(n.source_text.ends_with("2023年6月1日"));
    }

    #[test]
    fn nothing_in_nothing() {
        assert_eq!(parse(""), ParseOutput::default());
        assert_eq!(
            parse("市长任组长，常务副市长任副组长。"),
            ParseOutput::default()
        );
    }

    const VOCAB: &[&str] = &[
        "任",
        "免去",
        "免去其",
        "同志",
        "（",
        "）",
        "(",
        ")",
        "、",
        "；",
        "，",
        "。",
        "〔",
        "〕",
        "[",
        "]",
        "2023",
        "4",
        "号",
        "年",
        "月",
        "日",
        "二〇二三",
        "十",
        "女",
        "兼",
        "试用期",
        "一年",
        "满",
        "正式任职",
        "终止",
        "聘任",
        "为",
        "解聘",
        "不再担任",
        "挂职",
        "退休",
        "局",
        "副局长",
        "主任",
        "职务",
        "市",
        "县",
        "教体局",
        "张三",
        "李四",
        "王  伟",
        "\n",
        "\n\n",
        "临湘市人民政府",
        "关于",
        "任免",
        "的通知",
        "临政人",
        "：",
        "各单位：",
        "经研究决定：",
        "一、",
        "1.",
        "（一）",
        "撤销",
        "自",
        "起",
        "……(77)",
        "# ",
        "**",
        "\r\n",
        "　",
        "其",
        "《",
        "》",
        "等",
        "·",
    ];

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn never_panics_on_arbitrary_strings(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_notice_fragments(parts in prop::collection::vec(prop::sample::select(VOCAB), 0..80)) {
            let s: String = parts.concat();
            let _ = parse(&s);
            let wrapped = format!("临湘市人民政府关于张三等同志职务任免的通知\n临政人〔2023〕4号\n{s}\n临湘市人民政府\n2023年4月24日");
            let out = parse(&wrapped);
            // A page reference right under the number would make it a TOC entry.
            if !s.contains("(77)") {
                prop_assert!(!out.notices.is_empty());
            }
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(s) = decode(&b) {
                let _ = parse(&s);
            }
        }

        #[test]
        fn hash_form_ignores_whitespace(s in "[任免同志 \\n\\t　]{0,40}") {
            let spaced: String = s.chars().flat_map(|c| [c, ' ']).collect();
            prop_assert_eq!(normalize_for_hash(&s), normalize_for_hash(&spaced));
        }
    }
}
