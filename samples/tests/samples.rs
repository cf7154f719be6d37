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
