//! `lakehouse status`: is the server up, and is each service (or, through a
//! gateway, each upstream) ready? Exits non-zero when anything is not.

use anyhow::{Context, bail};

use crate::remote::Remote;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// Print the raw `/ready` JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let base = args.remote.url.trim_end_matches('/');
    let http = args.remote.http();
    let health: serde_json::Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .with_context(|| format!("{base} is not reachable"))?
        .json()
        .await
        .with_context(|| format!("{base}/health did not answer JSON"))?;
    let resp = http
        .get(format!("{base}/ready"))
        .send()
        .await
        .with_context(|| format!("{base} is not reachable"))?;
    let status = resp.status();
    let ready: serde_json::Value = resp.json().await.context("reading /ready")?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        bail!(
            "{base}/ready: {} (pass --token or set LAKEHOUSE_TOKEN)",
            ready["error"]["message"].as_str().unwrap_or("not allowed")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ready)?);
    } else {
        let version = health["version"].as_str().unwrap_or("?");
        let state = if ready["ready"] == true {
            "ready"
        } else {
            "NOT READY"
        };
        println!("lakehouse {version} at {base}: {state}");
        let checks = ready["checks"].as_object().cloned().unwrap_or_default();
        let width = checks.keys().map(String::len).max().unwrap_or(0).max(7);
        println!("  {:width$}  state  detail", "service");
        for (name, c) in &checks {
            let ok = c["ok"] == true;
            let detail = c["error"].as_str().unwrap_or("");
            println!(
                "  {name:width$}  {:5}  {detail}",
                if ok { "ok" } else { "DOWN" }
            );
        }
    }
    if ready["ready"] != true {
        std::process::exit(1);
    }
    Ok(())
}
