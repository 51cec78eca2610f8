//! How the client subcommands reach a server: `--url` and `--token`
//! (or `LAKEHOUSE_URL` / `LAKEHOUSE_TOKEN`), shared by all of them.

use lakehouse_common::ClientOptions;

#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// The lakehouse (or gateway) to talk to.
    #[arg(
        long,
        env = "LAKEHOUSE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Bearer token, when the server has auth on.
    #[arg(long, env = "LAKEHOUSE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

impl Remote {
    pub fn options(&self) -> ClientOptions {
        ClientOptions::with_token(self.token.clone().filter(|t| !t.is_empty()))
    }

    pub fn http(&self) -> reqwest::Client {
        lakehouse_common::http_client(&self.options())
    }
}
