//! The `callmux` command: serve, check-config, hash-key.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use callmux::{Config, Live};
use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: parsing a large answer makes hundreds of
/// thousands of small allocations, and glibc's malloc spent over a quarter of the pipeline
/// benchmark's time on them (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "callmux",
    version,
    about = "One place to watch every live voice-AI call, across agent servers, Bland and more"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "CALLMUX_CONFIG",
        default_value = "providers.toml"
    )]
    config: PathBuf,
    /// Log lines for people (text) or for log pipelines (json, one object per line).
    #[arg(long, global = true, env = "CALLMUX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Load and validate the configuration, print a summary with secrets masked; exit 1 on error.
    CheckConfig,
    /// Read a key on stdin and print its SHA-256 hex digest, for `api_key_sha256`.
    HashKey,
    /// Read a key on stdin and print a single-use dashboard sign-in link for it, minted by
    /// the running callmux at `--url` (`POST /me/link`): the link carries a token that
    /// expires in minutes, never the key. The key is read on stdin because a command line's
    /// arguments are visible to every user of the machine.
    SignInLink {
        /// Where the dashboard's users reach callmux.
        #[arg(long, default_value = "http://localhost:8080")]
        url: String,
        /// The key's org (sent as `x-bland-org-id`).
        #[arg(long)]
        org: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config, cli.log_format),
        Command::CheckConfig => match Config::load(&cli.config) {
            Ok(config) => {
                println!("{}: OK", cli.config.display());
                print!("{}", config.summary());
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{}: {e}", cli.config.display())),
        },
        Command::HashKey => hash_key(),
        Command::SignInLink { url, org } => sign_in_link(&url, &org),
    }
}

/// How often the config file is checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);

fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn serve(path: PathBuf, log_format: LogFormat) -> ExitCode {
    init_logs(log_format);
    if !path.is_file() {
        return fail(format!(
            "{}: {}",
            path.display(),
            callmux::config::ConfigError::NotFound(path.clone())
        ));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        let live = match Live::from_file(path.clone()) {
            Ok(live) => live,
            Err(e) => return fail(format!("{}: {e}", path.display())),
        };
        let bind = live.current().service.config().server.bind;
        let listener = match tokio::net::TcpListener::bind(bind).await {
            Ok(l) => l,
            Err(e) => {
                return fail(format!(
                    "cannot listen on {bind}: {e}; free the port or choose another with \
                     [server] bind or CALLMUX_SERVER__BIND"
                ))
            }
        };
        let shutdown = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot install signal handlers: {e}")),
        };
        if let Err(e) = reload_on_sighup(&live) {
            return fail(format!("cannot install the SIGHUP handler: {e}"));
        }
        live.watch(WATCH_EVERY);
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(config = %path.display(), "callmux listening on http://{addr}");
        match callmux::serve(listener, live, shutdown).await {
            Ok(()) => {
                tracing::info!("callmux stopped");
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("server error: {e}")),
        }
    })
}

/// Reloads the configuration on every SIGHUP; a refused file is logged by `reload`.
fn reload_on_sighup(live: &Arc<Live>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    let live = live.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = live.reload();
        }
    });
    Ok(())
}

/// Registers SIGTERM and SIGINT handlers now, so a signal that arrives as soon as the server
/// says it is listening already stops it gracefully, and returns the future that fires on one.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    })
}

/// The key piped in on stdin, trimmed; `command` names the subcommand for the hint.
fn key_from_stdin(command: &str) -> Result<String, String> {
    let mut key = String::new();
    std::io::stdin()
        .read_to_string(&mut key)
        .map_err(|e| format!("cannot read the key from stdin: {e}"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!(
            "no key on stdin: pipe the key in, e.g. `printf %s \"$KEY\" | callmux {command}`"
        ));
    }
    Ok(key.to_owned())
}

fn hash_key() -> ExitCode {
    let key = match key_from_stdin("hash-key") {
        Ok(key) => key,
        Err(e) => return fail(e),
    };
    println!(
        "{}",
        callmux::keys::KeyDigest::of(&secrecy::SecretString::from(key)).to_hex()
    );
    ExitCode::SUCCESS
}

fn sign_in_link(url: &str, org: &str) -> ExitCode {
    let hint = "sign-in-link --org <org>";
    let minted = key_from_stdin(hint).and_then(|key| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        runtime.block_on(mint_link(url.trim_end_matches('/'), org, &key))
    });
    match minted {
        Ok(link) => {
            println!("{link}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Asks callmux at `base` for a sign-in link for `key` of `org`; the link, made absolute.
async fn mint_link(base: &str, org: &str, key: &str) -> Result<String, String> {
    let asked = format!("{base}/me/link");
    let answer = reqwest::Client::new()
        .post(&asked)
        .header("authorization", key)
        .header("x-bland-org-id", org)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("{asked}: {e}; is callmux running there? (--url)"))?;
    let status = answer.status();
    let body = answer
        .text()
        .await
        .map_err(|e| format!("{asked}: the answer was cut off: {e}"))?;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    match body["link"].as_str() {
        Some(link) if status.is_success() => Ok(format!("{base}{link}")),
        _ => Err(format!(
            "{asked} answered {status}: {}",
            body["errors"][0]["message"]
                .as_str()
                .unwrap_or("no link in its answer; is --url a callmux?")
        )),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
