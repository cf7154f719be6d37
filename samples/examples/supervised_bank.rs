//! A supervised account actor: deposits, a crash, a restart. Run with
//! `cargo run -p samples --example supervised_bank`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let report = samples::supervised_bank().await?;
    println!("balance before the crash: {}", report.before_crash);
    println!("an overdraft crashed the account; its supervisor restarted it");
    println!(
        "balance after the restart: {} (a fresh actor starts from its opening balance)",
        report.after_restart
    );
    println!("restarts seen in the tree: {}", report.restarts);
    print!("{}", report.tree);
    Ok(())
}
