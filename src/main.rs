//! The `the-eye` binary: parses the command line and hands over to [`the_eye::commands`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use the_eye::commands;
use the_eye::config::{Overrides, Settings};

/// The Eye: a self-hosted collector of user-behaviour events.
#[derive(Debug, Parser)]
#[command(name = "the-eye", version, about)]
struct Cli {
    /// TOML file with settings (overridden by THE_EYE_* variables and flags).
    #[arg(long, global = true, env = "THE_EYE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long, global = true)]
    listen: Option<std::net::SocketAddr>,
    /// Directory for the spool and the SQLite database [default: ./data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Store URL [default: sqlite://<data dir>/the-eye.db].
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP and process events (the default).
    Serve {
        /// Worker tasks processing the queue [default: 2].
        #[arg(long)]
        workers: Option<usize>,
        /// Ingest and read side only; leave processing to `the-eye worker` processes.
        #[arg(long, conflicts_with = "workers")]
        no_worker: bool,
    },
    /// Create or upgrade the database schema.
    Migrate,
    /// Read-API tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token and print it (only its hash is stored).
    Create {
        /// Who or what the token is for.
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve { workers: None, no_worker: false });
    let workers = match &command {
        Command::Serve { no_worker: true, .. } => Some(0),
        Command::Serve { workers, .. } => *workers,
        _ => None,
    };
    let overrides = Overrides { listen: cli.listen, data_dir: cli.data_dir, database_url: cli.database_url, workers };
    let settings = Settings::load(cli.config.as_deref(), &overrides)?;
    the_eye::telemetry::init(settings.log_format);
    match command {
        Command::Serve { .. } => commands::serve(settings).await,
        Command::Migrate => commands::migrate(settings).await,
        Command::Tokens { command: TokensCommand::Create { name } } => commands::create_token(settings, &name).await,
    }
}
