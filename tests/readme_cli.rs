//! The README's command-line session stays true: every `$ renmian …` line between
//! `<!-- cli-examples -->` and `<!-- /cli-examples -->` is run, in order, against one fresh
//! SQLite database, and its stdout must equal the lines shown under it.

use std::process::Command;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// (command words after `renmian`, expected stdout lines) in README order.
fn session(readme: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let start = readme
        .find("<!-- cli-examples -->")
        .expect("cli-examples marker");
    let end = readme
        .find("<!-- /cli-examples -->")
        .expect("/cli-examples marker");
    let mut steps: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for line in readme[start..end].lines() {
        if line.starts_with("```") || line.starts_with("<!--") {
            continue;
        }
        match line.strip_prefix("$ renmian ") {
            Some(command) => steps.push((
                command.split_whitespace().map(str::to_string).collect(),
                Vec::new(),
            )),
            None => {
                if let Some((_, expected)) = steps.last_mut() {
                    expected.push(line.trim_end().to_string());
                }
            }
        }
    }
    steps
}

#[test]
fn the_readme_session_prints_what_the_readme_shows() {
    let readme = std::fs::read_to_string(README).expect("README.md");
    let steps = session(&readme);
    assert!(
        steps.len() >= 8,
        "the README shows the commands on the seed"
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
