//! Corpus tests of the notice parser: the hand-checked golden of the seed gazette, a
//! corpus of hand-written notices with their expected `renmian parse` output, and bad
//! input.

use std::path::{Path, PathBuf};

use renmian::notice::*;
use serde_json::Value;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn seed_text() -> String {
    let bytes = std::fs::read(Path::new(MANIFEST).join("seeds/linxiang-gazette-2023-no2.md"))
        .expect("seed gazette");
    decode(&bytes).expect("seed decodes")
}

/// The golden in `../shared/golden/` (beside the repository in CI); the copy in
/// `tests/golden/` must agree with it and is used when `shared/` is absent.
fn golden() -> Value {
    let local = Path::new(MANIFEST).join("tests/golden/linxiang-gazette-2023-no2.notice.json");
    let local: Value = serde_json::from_str(&std::fs::read_to_string(&local).expect("golden copy"))
        .expect("golden copy is JSON");
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/golden/linxiang-gazette-2023-no2.notice.json"
    );
    match std::fs::read_to_string(shared) {
        Ok(s) => {
            let shared: Value = serde_json::from_str(&s).expect("shared golden is JSON");
            assert_eq!(
                shared, local,
                "tests/golden copy differs from shared/golden"
            );
            shared
        }
        Err(_) => local,
    }
}

#[test]
fn seed_gazette_matches_golden() {
    let out = parse(&seed_text());
    assert_eq!(
        out.notices.len(),
        1,
        "exactly one personnel notice in the seed"
    );
    assert!(out.diagnostics.is_empty(), "{:#?}", out.diagnostics);
    let n = &out.notices[0];
    let got = serde_json::to_value(n).unwrap();
    let want = golden();
    for field in ["document_number", "issuer", "title", "issued_on", "remarks"] {
        assert_eq!(got[field], want[field], "notice field {field}");
    }
    let got_events = got["events"].as_array().unwrap();
    let want_events = want["events"].as_array().unwrap();
    assert_eq!(got_events.len(), want_events.len(), "number of events");
    for (i, (g, w)) in got_events.iter().zip(want_events).enumerate() {
        for field in [
            "kind",
            "person",
            "gender",
            "organization",
            "post",
            "concurrent",
            "probation_months",
            "note",
        ] {
            assert_eq!(
                g[field], w[field],
                "event {i} field {field}: got {g:#}, want {w:#}"
            );
        }
    }
}

#[test]
fn seed_gazette_lines_and_organizations() {
    let text = seed_text();
    let n = &parse(&text).notices[0];
    // `grep -n` of the seed: the title starts at 863, the clauses below.
    assert_eq!(n.line, 863);
    let line_of = |person: &str, post: &str| {
        n.events
            .iter()
            .find(|e| e.person == person && e.post == post)
            .unwrap_or_else(|| panic!("{person} {post}"))
            .line
    };
    assert_eq!(line_of("袁飞龙", "局长"), 871);
    assert_eq!(line_of("丁华", "副局长"), 885);
    assert_eq!(line_of("丁华", "总会计师"), 885);
    assert_eq!(line_of("彭晓鹏", "总经理"), 913);
    assert_eq!(line_of("侯明华", "副主任"), 919);
    let ding = n.events.iter().find(|e| e.person == "丁华").unwrap();
    assert_eq!(
        ding.clause,
        "免去丁华（女）同志市人力资源和社会保障局副局长、总会计师职务"
    );
    assert_eq!(ding.organization_canonical, "临湘市人力资源和社会保障局");
    let zhou = n.events.iter().find(|e| e.person == "周伏").unwrap();
    assert_eq!(zhou.organization_canonical, "临湘市国防动员办公室");
    assert!(zhou
        .organization_aliases
        .contains(&"临湘市人民防空办公室".to_string()));
    assert!(n.source_text.starts_with("临湘市人民政府  \n关于袁飞龙"));
    assert!(n.source_text.ends_with("2023年4月24日"));
    assert!(n.revokes.is_empty());
}

fn corpus_dir() -> PathBuf {
    Path::new(MANIFEST).join("tests/corpus")
}

#[test]
fn corpus_matches_expected_output() {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 15, "corpus has {} notices", inputs.len());
    let mut failures = Vec::new();
    for input in &inputs {
        let bytes = std::fs::read(input).unwrap();
        let text = decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let got = serde_json::to_value(parse(&text)).unwrap();
        let expected_path = input.with_extension("json");
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
        )
        .unwrap();
        if got != expected {
            eprintln!(
                "MISMATCH {}\n--- got:\n{}\n--- expected:\n{}",
                input.display(),
                serde_json::to_string_pretty(&got).unwrap(),
                serde_json::to_string_pretty(&expected).unwrap()
            );
            failures.push(input.display().to_string());
        }
    }
    assert!(failures.is_empty(), "corpus mismatches: {failures:?}");
}

#[test]
fn corpus_covers_the_encodings() {
    let gb = std::fs::read(corpus_dir().join("09-xiangyin-gb18030-crlf.txt")).unwrap();
    assert!(
        std::str::from_utf8(&gb).is_err(),
        "09 must be GB18030 bytes"
    );
    let bom =
        std::fs::read(corpus_dir().join("10-pingjiang-bom-fullwidth-paren-number.txt")).unwrap();
    assert!(
        bom.starts_with(&[0xEF, 0xBB, 0xBF]),
        "10 must start with a BOM"
    );
}

#[test]
fn empty_input_has_no_notices() {
    assert_eq!(parse(""), ParseOutput::default());
    assert_eq!(parse("\n\n   \n"), ParseOutput::default());
}

#[test]
fn binary_garbage_is_rejected_or_yields_nothing() {
    let mut garbage = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push((x >> 24) as u8);
    }
    match decode(&garbage) {
        Err(_) => {}
        Ok(text) => assert!(parse(&text).notices.is_empty()),
    }
    let png = [
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R', 0,
        0, 0, 1,
    ];
    assert_eq!(decode(&png), Err(DecodeError::Binary));
    // Lossy text is still safe to parse.
    let lossy = String::from_utf8_lossy(&garbage);
    assert!(parse(&lossy).notices.is_empty());
}

#[test]
fn gazette_without_personnel_section_has_no_notices() {
    let seed = seed_text();
    let cut = seed
        .find("临湘市人民政府  \n关于袁飞龙")
        .expect("notice in seed");
    let without = seed[..cut]
        .replace("#### 人事任免", "")
        .replace("临湘市人民政府关于袁飞龙等同志职务任免的通知", "");
    let out = parse(&without);
    assert!(out.notices.is_empty(), "{:#?}", out.notices);
    assert!(out.diagnostics.is_empty());
}

#[test]
fn toc_entry_alone_is_not_a_notice() {
    let toc = "#### 人事任免\n\n临湘市人民政府关于袁飞龙等同志职务任免的通知  \n(临政人〔2023〕4号) ..... (77)\n";
    assert!(parse(toc).notices.is_empty());
}

#[test]
fn huge_input_is_linear() {
    // 20 MB: the seed gazette repeated, plus one enormous line without any newline.
    let seed = seed_text();
    let mut big = String::with_capacity(21 << 20);
    while big.len() < 16 << 20 {
        big.push_str(&seed);
        big.push('\n');
    }
    let copies = big.matches("临湘市人民政府  \n关于袁飞龙").count();
    big.push_str(&"免去张三同志市财政局副局长、".repeat((4 << 20) / 40));
    let start = std::time::Instant::now();
    let out = parse(&big);
    eprintln!("parsed {} MB in {:?}", big.len() >> 20, start.elapsed());
    assert_eq!(out.notices.len(), copies);
    assert!(out.notices.iter().all(|n| n.events.len() == 30));
}

#[test]
fn huge_clauses_inside_a_notice_are_linear() {
    // One clause listing 30 000 posts, then 30 000 lines that never end a clause.
    let mut text =
        String::from("临湘市人民政府关于张三同志职务任免的通知\n临政人〔2023〕1号\n免去张三同志");
    text.push_str(&"市财政局副局长、".repeat(30_000));
    text.push_str("市审计局局长职务；\n");
    text.push_str(&"李四同志任市审计局\n副局长，\n".repeat(30_000));
    text.push_str("\n临湘市人民政府\n2023年1月1日\n");
    let out = parse(&text);
    assert_eq!(out.notices.len(), 1);
    assert_eq!(out.notices[0].events.len(), 30_001 + 30_000);
}

#[test]
fn alias_table_api() {
    let t = AliasTable::builtin();
    assert!(t.expand("市教体局").contains(&"市教育体育局".to_string()));
    assert!(t
        .expand("临湘市教育体育局")
        .contains(&"临湘市教体局".to_string()));
    assert_eq!(
        canonical_organization("市人社局", Some("临湘市"), &t),
        "临湘市人力资源和社会保障局"
    );
    assert_eq!(jurisdiction_of("岳阳县人民政府").as_deref(), Some("岳阳县"));
    let custom = AliasTable::from_tsv("# test\n县城投公司\t县城市建设投资有限公司\n").unwrap();
    let out = parse_with(
        "华容县人民政府关于王强同志任职的通知\n华政人〔2023〕2号\n王强同志任县城投公司总经理。\n华容县人民政府\n2023年1月5日",
        &custom,
    );
    assert_eq!(
        out.notices[0].events[0].organization_canonical,
        "华容县城市建设投资有限公司"
    );
    assert!(AliasTable::from_tsv("no tab here").is_err());
}

#[test]
fn hash_normal_form_is_whitespace_insensitive() {
    let n = &parse(&seed_text()).notices[0];
    let reflowed = n.source_text.replace("  \n", "\n").replace("\n\n", "\n");
    assert_eq!(
        normalize_for_hash(&n.source_text),
        normalize_for_hash(&reflowed)
    );
}
