//! The `the-eye` binary: parses the command line and hands over to [`the_eye::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use the_eye::commands;
use the_eye::config::{Overrides, Settings};

/// jemalloc rather than the system allocator: about 13 % less CPU an event
/// accepted and 12 % more events stored a second on the ingest path, which
/// allocates per request (docs/benchmarks.md, fifteenth session).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The Eye: a self-hosted collector of user-behaviour events.
///
/// With no command it serves, and takes `serve`'s flags.
#[derive(Debug, Parser)]
#[command(name = "the-eye", version, about)]
struct Cli {
    /// TOML file with settings (overridden by THE_EYE_* variables and flags).
    #[arg(long, global = true, env = "THE_EYE_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the spool and the SQLite database [default: ./data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Store URL [default: sqlite://<data dir>/the-eye.db].
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the queue is: `serve` and `worker` use it.
#[derive(Debug, Default, Args)]
struct QueueArgs {
    /// Redis URL for the queue [default: none, the embedded spool].
    #[arg(long)]
    redis_url: Option<String>,
    /// Use Redis even if its settings can lose acknowledged events.
    #[arg(long)]
    allow_unsafe_redis: bool,
}

/// `serve`'s flags (also those of a bare `the-eye`).
#[derive(Debug, Default, Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    queue: QueueArgs,
    /// Worker tasks processing the queue [default: 2].
    #[arg(long)]
    workers: Option<usize>,
    /// Ingest and read side only; leave processing to `the-eye worker` processes.
    #[arg(long, conflicts_with = "workers")]
    no_worker: bool,
}

impl ServeArgs {
    /// These flags, with `other`'s filling what these leave unset.
    fn or(self, other: Self) -> Self {
        Self {
            listen: self.listen.or(other.listen),
            queue: QueueArgs {
                redis_url: self.queue.redis_url.or(other.queue.redis_url),
                allow_unsafe_redis: self.queue.allow_unsafe_redis || other.queue.allow_unsafe_redis,
            },
            workers: self.workers.or(other.workers),
            no_worker: self.no_worker || other.no_worker,
        }
    }

    /// The first flag given, to name it in an error.
    fn first_flag(&self) -> Option<&'static str> {
        [
            (self.listen.is_some(), "--listen"),
            (self.queue.redis_url.is_some(), "--redis-url"),
            (self.queue.allow_unsafe_redis, "--allow-unsafe-redis"),
            (self.workers.is_some(), "--workers"),
            (self.no_worker, "--no-worker"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP and process events (the default).
    Serve(ServeArgs),
    /// Process the shared queue (Redis) only: no ingest, no read API.
    Worker {
        #[command(flatten)]
        queue: QueueArgs,
        /// Worker tasks [default: 2].
        #[arg(long)]
        workers: Option<usize>,
        /// Serve /healthz and /readyz on this address.
        #[arg(long)]
        health_listen: Option<std::net::SocketAddr>,
    },
    /// Create or upgrade the database schema.
    Migrate,
    /// Create an admin superuser (asks for what the flags do not give).
    Createsuperuser {
        /// Login name.
        #[arg(long)]
        username: Option<String>,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        /// Read the password from the first line of standard input (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Applications: the websites and servers that may send events.
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
    },
    /// Read-API tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Admin users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Write every event (or event error) the filters select to a file, as NDJSON or CSV.
    Export {
        #[command(flatten)]
        filters: the_eye::lifecycle::export::ExportFilters,
        /// The file to write (must not exist; written whole or not at all).
        #[arg(long)]
        out: PathBuf,
    },
    /// Apply retention now (retention_days, error_retention_days, rollup_retention_days) and print what went.
    Upkeep,
    /// Delete every event and event error of one session (an erasure request).
    Erase {
        /// The session's id.
        #[arg(long)]
        session: String,
    },
    /// Copy the SQLite store to FILE while the service runs.
    Backup {
        /// Where to write the copy (must not exist).
        file: PathBuf,
    },
    /// Bring data over from another system.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// The rollups behind /api/stats and the dashboard.
    Stats {
        #[command(subcommand)]
        command: StatsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// From the Django original's PostgreSQL database (collector_category, collector_event, collector_eventerror).
    Django {
        /// Its URL, e.g. postgres://user@host/dbname.
        #[arg(long)]
        from: String,
    },
}

#[derive(Debug, Subcommand)]
enum StatsCommand {
    /// Recount the rollups from the stored events and errors (after a restore, or if in doubt).
    Rebuild,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Print every admin user as JSON (never a password hash).
    List,
    /// Set a user's password (asked twice); every session of theirs ends.
    SetPassword {
        /// The user's name.
        username: String,
        /// Read the password from the first line of standard input (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Let a user sign in again.
    Activate {
        /// The user's name.
        username: String,
    },
    /// Stop a user from signing in; their sessions end at once.
    Deactivate {
        /// The user's name.
        username: String,
    },
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Create an application and print it as JSON, with its write key.
    Create {
        /// A unique name, recorded on every event it sends.
        #[arg(long)]
        name: String,
        /// An origin its pages are served from, like https://shop.example.com
        /// (repeat for several). None: a server-side application with a secret key.
        #[arg(long = "origin")]
        origins: Vec<String>,
    },
    /// Print every application as JSON.
    List,
    /// Accept a revoked application's requests again.
    Activate {
        /// The application's name.
        name: String,
    },
    /// Refuse the application's requests from now on.
    Revoke {
        /// The application's name.
        name: String,
    },
    /// Give the application a new key; the old one stops working.
    Rotate {
        /// The application's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Create a token and print it (only its hash is stored).
    Create {
        /// Who or what the token is for (unique).
        #[arg(long)]
        name: String,
        /// Let the token erase a session's data too (`DELETE /api/sessions/{id}`), not only read.
        #[arg(long)]
        erase: bool,
    },
    /// Print every token as JSON: name, created, last used, may erase (never the token).
    List,
    /// Revoke a token by name: requests with it get 401 at once.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// Runs the command; an error is printed as one paragraph (its causes joined),
/// never with a backtrace, and the exit code is 1.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "error: {e:#}");
    std::process::ExitCode::FAILURE
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = match cli.command {
        None => Command::Serve(cli.serve),
        // `the-eye --listen X serve` means what it says.
        Some(Command::Serve(after)) => Command::Serve(after.or(cli.serve)),
        Some(other) => {
            if let Some(flag) = cli.serve.first_flag() {
                use clap::CommandFactory;
                Cli::command()
                    .error(
                        clap::error::ErrorKind::ArgumentConflict,
                        format!(
                            "{flag} goes after the command it belongs to: `the-eye serve {flag} …`{}",
                            if flag.contains("redis") || flag == "--workers" {
                                format!(" or `the-eye worker {flag} …`")
                            } else {
                                String::new()
                            }
                        ),
                    )
                    .exit();
            }
            other
        }
    };
    let mut overrides = Overrides { data_dir: cli.data_dir, database_url: cli.database_url, ..Default::default() };
    let queue = match &command {
        Command::Serve(serve) => {
            overrides.listen = serve.listen;
            overrides.workers = if serve.no_worker { Some(0) } else { serve.workers };
            Some(&serve.queue)
        }
        Command::Worker { queue, workers, health_listen } => {
            overrides.workers = *workers;
            overrides.worker_health_listen = *health_listen;
            Some(queue)
        }
        _ => None,
    };
    if let Some(queue) = queue {
        overrides.redis_url = queue.redis_url.clone();
        overrides.allow_unsafe_redis = queue.allow_unsafe_redis.then_some(true);
    }
    let settings = Settings::load(cli.config.as_deref(), &overrides)?;
    let _logs = the_eye::telemetry::init(settings.log_format);
    for name in Settings::unknown_env_vars() {
        tracing::warn!(variable = %name, "ignoring an environment variable that is not a setting (a typo?)");
    }
    let result = match command {
        Command::Serve(_) => commands::serve(settings).await,
        Command::Worker { .. } => commands::worker(settings).await,
        Command::Migrate => commands::migrate(settings).await,
        Command::Createsuperuser { username, email, password_stdin } => {
            commands::create_superuser(settings, username, email, password_stdin).await
        }
        Command::Tokens { command } => match command {
            TokensCommand::Create { name, erase } => commands::create_token(settings, &name, erase).await,
            TokensCommand::List => commands::list_tokens(settings).await,
            TokensCommand::Revoke { name } => commands::revoke_token(settings, &name).await,
        },
        Command::Users { command } => match command {
            UsersCommand::List => commands::list_users(settings).await,
            UsersCommand::SetPassword { username, password_stdin } => {
                commands::set_user_password(settings, &username, password_stdin).await
            }
            UsersCommand::Activate { username } => commands::set_user_active(settings, &username, true).await,
            UsersCommand::Deactivate { username } => commands::set_user_active(settings, &username, false).await,
        },
        Command::Export { filters, out } => commands::export(settings, filters, &out).await,
        Command::Upkeep => commands::upkeep(settings).await,
        Command::Erase { session } => commands::erase(settings, &session).await,
        Command::Backup { file } => commands::backup(settings, &file).await,
        Command::Import { command: ImportCommand::Django { from } } => commands::import_django(settings, &from).await,
        Command::Stats { command: StatsCommand::Rebuild } => commands::rebuild_stats(settings).await,
        Command::Apps { command } => match command {
            AppsCommand::Create { name, origins } => commands::create_app(settings, &name, &origins).await,
            AppsCommand::List => commands::list_apps(settings).await,
            AppsCommand::Activate { name } => commands::activate_app(settings, &name).await,
            AppsCommand::Revoke { name } => commands::revoke_app(settings, &name).await,
            AppsCommand::Rotate { name } => commands::rotate_app(settings, &name).await,
        },
    };
    commands::close_stores().await;
    result
}
