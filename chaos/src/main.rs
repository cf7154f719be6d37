//! `cargo run -p chaos -- --workload kv-register --nemesis partition-majorities-ring --time 60
//! --nodes 5 [--seed N] [--out DIR]`: prints the result table; exits 0 only when the checker
//! found no anomaly (1 with anomalies, 2 when the run itself failed).

#[tokio::main]
async fn main() {
    let opts = <chaos::run::Options as clap::Parser>::parse();
    match chaos::run::run(opts.clone()).await {
        Ok(outcome) => {
            print!("{}", outcome.table(&opts));
            std::process::exit(if outcome.anomalies() == 0 { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
