//! The README's command-line sessions stay true: every `$ renmian …` line between
//! `<!-- cli-examples -->` and `<!-- /cli-examples -->` markers (all such blocks, in README
//! order) is run against one fresh SQLite database, and its stdout must equal the lines
//! shown under it.

use std::process::Command;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// (command words after `renmian`, expected stdout lines) in README order, from every
/// cli-examples block.
fn session(readme: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let mut steps: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find("<!-- cli-examples -->") {
        let end = rest[start..]
            .find("<!-- /cli-examples -->")
            .expect("/cli-examples marker")
            + start;
        for line in rest[start..end].lines() {
            if line.starts_with("```") || line.starts_with("<!--") {
                continue;
            }
            match line.strip_prefix("$ renmian ") {
                Some(command) => steps.push((shell_words(command), Vec::new())),
                None => {
                    if let Some((_, expected)) = steps.last_mut() {
                        expected.push(line.trim_end().to_string());
                    }
                }
            }
        }
        rest = &rest[end..];
    }
    steps
}

#[test]
fn the_readme_session_prints_what_the_readme_shows() {
    let readme = std::fs::read_to_string(README).expect("README.md");
    let steps = session(&readme);
    assert!(
        steps.len() >= 20,
        "the README shows the commands on the seed and the time session"
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("readme.db").display());
    for (args, expected) in steps {
        let output = Command::new(env!("CARGO_BIN_EXE_renmian"))
            .args(&args)
            .env("RENMIAN_DATABASE_URL", &url)
            .env("RUST_LOG", "error")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run renmian");
        assert!(
            output.status.success(),
            "renmian {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let actual: Vec<String> = stdout.lines().map(|l| l.trim_end().to_string()).collect();
        assert_eq!(actual, expected, "output of `renmian {}`", args.join(" "));
    }
}

/// Splits a README command line into words, honouring "double quotes" around a word with
/// spaces (the only quoting the README uses).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[test]
fn readme_words_split_like_a_shell() {
    assert_eq!(
        shell_words(r#"ingest --correct "姓名 有误" a.txt"#),
        ["ingest", "--correct", "姓名 有误", "a.txt"]
    );
}
