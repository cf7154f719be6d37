//! A service that takes its configuration from the KV store and applies changes live. Run with
//! `cargo run -p samples --example live_config`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("draft-live-config-{}", std::process::id()));
    let report = samples::live_config(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = report?;
    println!("with config/greeter = Bonjour: {}", report.before);
    println!(
        "after `kv put config/greeter Hola` (no restart): {}",
        report.after
    );
    println!("after the key was deleted (default): {}", report.deleted);
    Ok(())
}
