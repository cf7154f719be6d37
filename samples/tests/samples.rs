//! Every sample runs and shows what it claims.

#[tokio::test]
async fn supervised_bank_restarts_the_crashed_account() {
    let report = samples::supervised_bank().await.unwrap();
    assert_eq!(report.before_crash, 175);
    assert_eq!(
        report.after_restart, 100,
        "a restarted actor starts from its arguments"
    );
    assert_eq!(report.restarts, 1);
    assert!(
        report
            .tree
            .contains("account (Worker, Running, restarts 1)"),
        "{}",
        report.tree
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_config_applies_kv_changes_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let report = samples::live_config(dir.path()).await.unwrap();
    assert_eq!(report.before, "Bonjour, Ada!");
    assert_eq!(report.after, "Hola, Ada!");
    assert_eq!(report.deleted, "Hello, Ada!");
}

#[test]
fn the_readme_quick_start_is_the_hello_sample_and_under_40_lines() {
    let readme = include_str!("../../README.md");
    let hello = include_str!("../src/bin/hello.rs");
    let marker = "<!-- quick-start: samples/src/bin/hello.rs -->\n```rust\n";
    let start = readme
        .find(marker)
        .expect("the quick-start marker in the README")
        + marker.len();
    let len = readme[start..].find("```\n").expect("the end of the block");
    assert_eq!(
        &readme[start..start + len],
        hello,
        "README quick start and samples/src/bin/hello.rs differ"
    );
    assert!(
        hello.lines().count() < 40,
        "{} lines",
        hello.lines().count()
    );
}
