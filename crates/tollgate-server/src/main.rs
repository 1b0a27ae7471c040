//! The `tollgate` command.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use tollgate_server::Settings;
use tollgate_server::admin;
use tollgate_server::auth::passwords::{self, HashLimits};
use tollgate_server::auth::throttle::Rate;
use tollgate_server::connections::{self, ConnectionLimits};
use tollgate_server::datadir::{self, Attachment, LocalPaths, attach_command, lock_for_server};
use tollgate_server::serve::{AdminSeed, ServeOptions, ensure_admin, serve};
use tollgate_store::copy::{self, CopyOptions};
use tollgate_store::tokens::TokenRecord;
use tollgate_store::users::NewUser;
use tollgate_store::{Actor, Backend, Store, StoreError, StoreOptions};

/// mimalloc rather than the C library's allocator: a request allocates and frees a few dozen
/// small blocks (headers, the route's parameters, the response), and under `device.get` load
/// glibc's `malloc`/`free` (with `malloc_consolidate`) took about 12 % of the server's CPU
/// (`perf`, BENCHMARKS.md); mimalloc's thread-local free lists do the same work in a fraction.
/// Built with `no_thp`: with transparent huge pages it kept 17 MiB more resident at idle and
/// 31 MiB more with a million tokens in memory (measured with `MIMALLOC_ALLOW_THP=0`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tollgate: a self-hosted IoT application server whose every API call is guarded by
/// application API tokens. Speaks the Losant REST API, so the official clients work unchanged.
#[derive(Parser)]
#[command(name = "tollgate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of the largest variant (the server's options) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server.
    ///
    /// On first start (an empty database) an administrator is created: from
    /// TOLLGATE_ADMIN_EMAIL and TOLLGATE_ADMIN_PASSWORD when set, otherwise admin@tollgate.local
    /// with a generated password written to DATA_DIR/initial-admin-password (mode 600; shown
    /// on the terminal only when standard output is one).
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Back up, restore, check and move the database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Inspect and revoke application API tokens (list, show, deactivate, delete, revoke). Changes
    /// take effect on a running server before the command returns.
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Subcommand)]
enum TokensCommand {
    /// List application API tokens: id, application, name, status, scope, creator, dates.
    /// Never the secrets (only their digests are stored).
    List {
        /// Only the tokens of this application (its id).
        #[arg(long = "app", value_name = "ID")]
        app: Option<String>,
        /// One JSON array (the API's token objects) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show one token, as the API's applicationApiToken.get does (JSON).
    Show {
        /// The token's id.
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Deactivate a token: it is refused from the very next request on, on every node (it
    /// can be activated again in the console or with applicationApiToken.patch).
    Deactivate {
        /// The token's id.
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a token: it is refused from the very next request on, on every node.
    Delete {
        /// The token's id.
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Deactivate leaked tokens, given as secrets (tgat_…) on standard input, separated by
    /// white space or lines: every live one is deactivated with the reason "reported as
    /// leaked", as POST /tokens/revoke does. Secrets are never taken as arguments (they would
    /// be in the shell's history and the process list).
    Revoke {
        /// Read the secrets from standard input (required).
        #[arg(long, required = true)]
        stdin: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Back up the embedded SQLite database to a new file while the server runs (SQLite's
    /// online VACUUM INTO: every write acknowledged before the backup started is in it). For
    /// PostgreSQL use pg_dump (docs/deployment.md). Keep a copy of the secret key file
    /// (secret.key in the data directory) with your backups: two-factor secrets are
    /// encrypted with it.
    Backup {
        /// The backup file to create (it must not exist).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replace the embedded SQLite database with a backup made by `tollgate db backup`. Stop
    /// the server first: the command refuses while a server holds the database's lock. The
    /// database it replaces is kept beside it as tollgate.db.before-restore-<time>.
    Restore {
        /// The backup file to restore.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Check the database: on SQLite every page, index and foreign key (PRAGMA
    /// integrity_check, foreign_key_check); on both, the schema version and every table, with
    /// row counts. Changes nothing (no migration is applied). Exits with status 1 and lists
    /// the problems when there are any. Safe while a server runs (it reads a snapshot).
    Check {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Copy every record from one database to another, e.g. from the embedded SQLite file to
    /// PostgreSQL when moving to several nodes. Stop the servers first.
    ///
    /// Both databases are brought to the current schema first. The target is written in one
    /// transaction and row counts are compared per table before it commits: on any error or
    /// difference the target is left as it was. A target that holds any data is refused
    /// unless --replace-target is given. Password hashes and token digests are copied as they
    /// are (no secret is stored in clear anywhere). URLs are never printed.
    Copy {
        /// The database to copy from, e.g. sqlite://./data/tollgate.db (must exist).
        #[arg(long, env = "TOLLGATE_COPY_FROM")]
        from: String,
        /// The database to copy into, e.g. postgres://tollgate:PASSWORD@db.internal/tollgate.
        #[arg(long, env = "TOLLGATE_COPY_TO")]
        to: String,
        /// Delete everything the target holds (in the same transaction) instead of refusing
        /// a target that is not empty.
        #[arg(long)]
        replace_target: bool,
    },
}

#[derive(Args)]
struct DbArgs {
    /// Directory for the embedded SQLite database (tollgate.db).
    #[arg(long, env = "TOLLGATE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://USER:PASS@HOST/DB. Default: the SQLite file in
    /// the data directory.
    #[arg(long, env = "TOLLGATE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The most a request may take with the database, in milliseconds: waiting for a
    /// connection, and its queries (a request past it is answered 503 and its work rolled
    /// back; on PostgreSQL also each session's statement_timeout).
    #[arg(long, env = "TOLLGATE_DB_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    db_timeout_ms: u64,
}

impl DbArgs {
    /// The database URL these arguments name (never printed: it may hold a password).
    fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("tollgate.db").display()),
        }
    }

    /// The database URL, creating the data directory (0700) for the default SQLite file.
    fn prepared_url(&self) -> anyhow::Result<String> {
        Ok(match &self.database_url {
            Some(url) => url.clone(),
            None => {
                datadir::prepare(&self.data_dir).with_context(|| {
                    format!("cannot create data directory {}", self.data_dir.display())
                })?;
                format!("sqlite://{}", self.data_dir.join("tollgate.db").display())
            }
        })
    }

    async fn open(&self) -> anyhow::Result<Store> {
        let url = self.prepared_url()?;
        // The database holds password hashes and token digests: its files are 0600.
        let file = datadir::sqlite_path(&url);
        if let Some(file) = &file {
            datadir::secure_database_files(file, true)
                .with_context(|| format!("cannot restrict the mode of {}", file.display()))?;
        }
        // Never print the URL: it may hold a password.
        let store = Store::open(&url, &store_options(self.db_timeout_ms, true))
            .await
            .context("cannot open the database")?;
        if let Some(file) = &file {
            datadir::secure_database_files(file, false)
                .with_context(|| format!("cannot restrict the mode of {}", file.display()))?;
        }
        Ok(store)
    }

    /// Open the database for the command `what` (`user add`): its writes take effect in any
    /// server using the same database before they return. Keep the attachment until the
    /// command ends.
    async fn open_for_command(&self, what: &str) -> anyhow::Result<(Store, Attachment)> {
        let store = self.open().await?;
        let attached = attach_command(&store, what).await?;
        Ok((store, attached))
    }
}

/// After a command's writes: say that the running server has applied them (each write waited
/// for its confirmation; see `datadir::attach_command`).
fn confirm_applied(attached: &Attachment) {
    match attached {
        Attachment::Server { pid } => {
            println!("the running server has applied the change (pid {pid})");
        }
        Attachment::Cluster(_) => {
            println!("every running server has applied the change");
        }
        Attachment::Alone(_) | Attachment::Nothing => {}
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Also answer `GET /health` (only that) on this address, served by a thread of its own:
    /// probes are answered at once even when a flood keeps the request workers busy. Give
    /// orchestrators and load balancers this address for liveness. Default: none (`/health`
    /// is always on --listen too).
    #[arg(long, env = "TOLLGATE_HEALTH_LISTEN")]
    health_listen: Option<SocketAddr>,
    #[command(flatten)]
    db: DbArgs,
    /// Mark console cookies Secure (set this when Tollgate is served over HTTPS). The
    /// environment variable takes true/false, 1/0, yes/no or on/off.
    #[arg(long, env = "TOLLGATE_SECURE_COOKIES", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    secure_cookies: bool,
    /// How long login sessions last, in days (at least 1).
    #[arg(long, env = "TOLLGATE_SESSION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    session_days: u32,
    /// How often last-used times of tokens are written to the database, in seconds (at
    /// least 1).
    #[arg(long, env = "TOLLGATE_LAST_USED_FLUSH_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    last_used_flush_secs: u64,
    /// How long audit log entries are kept, in days (1 to 36500); older ones are deleted in
    /// the background, hourly.
    #[arg(long, env = "TOLLGATE_AUDIT_RETENTION_DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u64).range(1..=36_500))]
    audit_retention_days: u64,
    /// How often the background jobs run, in milliseconds (50 to 3600000): idle deactivation,
    /// expiry warnings, expiry and retirement announcements (by token policy), and hourly
    /// audit pruning. With several nodes only one runs them at a time, holding a lease in the
    /// database for three intervals; another takes over when it stops renewing.
    #[arg(long, env = "TOLLGATE_BACKGROUND_INTERVAL_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(50..=3_600_000))]
    background_interval_ms: u64,
    /// Count each application token's requests per action and day (authorized and refused)
    /// and keep its last 100 requests, for `applicationApiToken.usage` (`on` or `off`).
    #[arg(long, env = "TOLLGATE_TOKEN_USAGE", default_value = "on", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    token_usage: bool,
    /// How often the webhook worker looks for token-event deliveries that are due, in
    /// milliseconds (10 to 3600000).
    #[arg(long, env = "TOLLGATE_WEBHOOK_INTERVAL_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    webhook_interval_ms: u64,
    /// The wait before a failed webhook delivery is tried again, in milliseconds, doubled
    /// after each further failure up to an hour (10 to 3600000; default 30 s).
    #[arg(long, env = "TOLLGATE_WEBHOOK_RETRY_BASE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    webhook_retry_base_ms: u64,
    /// With several nodes on PostgreSQL: how long this node may answer from its credential
    /// cache without proof (a heartbeat through the database) that it has heard every change.
    /// The most a revocation can take to reach this node if change notices stop, in
    /// milliseconds (10 to 10000).
    #[arg(long, env = "TOLLGATE_CHANGE_LEASE_MS", default_value_t = 750,
          value_parser = clap::value_parser!(u64).range(10..=10_000))]
    change_lease_ms: u64,
    /// With several nodes on PostgreSQL: the database URL for this node's change listener
    /// connection, when it must differ from the database URL (for example through another
    /// network path or a proxy). Default: the database URL.
    #[arg(long, env = "TOLLGATE_LISTENER_DATABASE_URL", hide_env_values = true)]
    listener_database_url: Option<String>,
    /// Load every token into memory in the background from start-up, so that even a token's
    /// first request is answered without the database (single node; on PostgreSQL tokens load
    /// on first use). The server answers at once; tokens not loaded yet load on demand. The
    /// environment variable takes true/false, 1/0, yes/no or on/off.
    #[arg(long, env = "TOLLGATE_PRELOAD_TOKENS", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    preload_tokens: bool,
    /// Log format on standard error: one line of text, or one JSON object, per event (and one
    /// per request at info). Colours only when standard error is a terminal. Level via
    /// RUST_LOG (default info).
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A browser origin allowed to call the REST API (CORS), e.g. https://dashboard.example.com;
    /// repeat for several, or comma-separate them in the environment variable. `*` allows
    /// any origin. None by default. Credentials (cookies) are never allowed cross-origin:
    /// browsers send tokens in the Authorization header.
    #[arg(long = "cors-origin", env = "TOLLGATE_CORS_ORIGINS", value_delimiter = ',',
          value_parser = parse_origin)]
    cors_origins: Vec<String>,
    /// A reverse proxy (CIDR or address) whose `X-Forwarded-For` is believed: the client's
    /// address (for tokens' allowedAddresses) is then the first address in that header, read
    /// from the right, that is not a trusted proxy. Repeat for several. None by default: the
    /// header is ignored and the client is the connection's peer.
    #[arg(long = "trusted-proxy", env = "TOLLGATE_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = parse_trusted_proxy)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// A file holding the bearer secret that GET /metrics requires (whitespace around it is
    /// ignored). Without it /metrics answers anyone.
    #[arg(long, env = "TOLLGATE_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
    /// The file with the key that encrypts two-factor secrets in the database; created (mode
    /// 0600) the first time someone enables two-factor authentication. Every node of a
    /// deployment needs the same file, and so does a restored backup. Default: secret.key in
    /// the data directory.
    #[arg(long, env = "TOLLGATE_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// A connection must send each request's head (request line and headers) within this
    /// many milliseconds of being opened, or of the first byte of a further request; else it
    /// is closed (slow or stalled clients cannot hold connections).
    #[arg(long, env = "TOLLGATE_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,
    /// A kept-alive connection with no request for this many seconds is closed.
    #[arg(long, env = "TOLLGATE_IDLE_TIMEOUT_SECS", default_value_t = 75,
          value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,
    /// Connections served at once, at most; more wait to be accepted. Lowered to stay 128
    /// below the open-file limit (whose soft value is raised to the hard one at start).
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Password hashes computed at once (each Argon2 hash holds 19 MiB). Default: the number
    /// of cores.
    #[arg(long, env = "TOLLGATE_LOGIN_HASH_THREADS")]
    login_hash_threads: Option<usize>,
    /// Logins that may wait for a password check; more are answered 503 at once. Default: 16
    /// per hashing thread.
    #[arg(long, env = "TOLLGATE_LOGIN_HASH_QUEUE")]
    login_hash_queue: Option<usize>,
    /// Failed logins allowed in a row for one account before it is throttled (429).
    #[arg(long, env = "TOLLGATE_LOGIN_ACCOUNT_BURST", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    login_account_burst: u32,
    /// A throttled account regains one attempt every this many seconds.
    #[arg(
        long,
        env = "TOLLGATE_LOGIN_ACCOUNT_INTERVAL_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    login_account_interval_secs: u64,
    /// Failed logins allowed in a row from one client address (IPv4, or IPv6 /64).
    #[arg(long, env = "TOLLGATE_LOGIN_ADDRESS_BURST", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    login_address_burst: u32,
    /// A throttled address regains one attempt every this many seconds.
    #[arg(
        long,
        env = "TOLLGATE_LOGIN_ADDRESS_INTERVAL_SECS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    login_address_interval_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// A CORS origin: `*`, or scheme://host[:port] with nothing after it.
fn parse_trusted_proxy(s: &str) -> Result<ipnet::IpNet, String> {
    tollgate_core::restrictions::addresses::parse_network(s).map_err(|e| format!("{s:?} {e}"))
}

fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(s.to_owned());
    }
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("{s:?} is not an origin: write it as https://host[:port] (or *)"))?;
    if rest.is_empty()
        || rest.contains('/')
        || rest.contains('?')
        || rest.contains('#')
        || rest.contains('@')
        || rest.chars().any(char::is_whitespace)
    {
        return Err(format!(
            "{s:?} is not an origin: only scheme://host[:port], without a path or a trailing slash"
        ));
    }
    Ok(s.to_ascii_lowercase())
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. Safe while a server uses the same database; it sees the user at once.
    Add {
        /// The user's email (their login).
        #[arg(long)]
        email: String,
        /// The password (at least 8 characters). Without it, the password is read from
        /// standard input, so it need not appear in the shell history.
        #[arg(long)]
        password: Option<String>,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set a user's password (an administrator's reset). The new password is read from
    /// standard input (one line); it must have at least 12 characters with an upper-case
    /// letter, a lower-case letter, a digit and another character. Every session of the user
    /// ends.
    Passwd {
        /// The user's email.
        email: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List every user: email, id, name, whether disabled, two-factor, open sessions.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Disable a user: they cannot log in, and every session of theirs ends. Application API
    /// tokens they created keep working (they belong to their applications; deactivate them
    /// separately if needed).
    Disable {
        /// The user's email.
        email: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's email.
        email: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn store_options(timeout_ms: u64, statement_timeout: bool) -> StoreOptions {
    let timeout = Duration::from_millis(timeout_ms.max(1));
    StoreOptions {
        acquire_timeout: timeout,
        statement_timeout: statement_timeout.then_some(timeout),
        ..StoreOptions::default()
    }
}

/// `tollgate db backup`.
async fn backup_database(to: &std::path::Path, db: &DbArgs) -> anyhow::Result<()> {
    let url = db.url();
    let Some(path) = tollgate_store::backup::sqlite_path(&url) else {
        anyhow::bail!(
            "tollgate db backup copies the embedded SQLite database; for PostgreSQL use pg_dump, \
             e.g. pg_dump --format=custom --file=tollgate.dump \"$TOLLGATE_DATABASE_URL\" \
             (see docs/deployment.md)"
        );
    };
    let summary = tollgate_store::backup::backup_sqlite(&path, to).await?;
    let rows: i64 = summary.rows.iter().map(|(_, n)| n).sum();
    println!(
        "backed up {} to {} ({} bytes, schema version {}, {rows} rows; integrity check ok)",
        path.display(),
        to.display(),
        summary.bytes,
        summary.schema_version
    );
    let key = db.data_dir.join("secret.key");
    if key.exists() {
        println!(
            "two-factor secrets in it are encrypted with {}: keep a copy of that file with your backups",
            key.display()
        );
    }
    Ok(())
}

/// `tollgate db restore`.
async fn restore_database(from: &std::path::Path, db: &DbArgs) -> anyhow::Result<()> {
    let url = db.url();
    let Some(path) = tollgate_store::backup::sqlite_path(&url) else {
        anyhow::bail!(
            "tollgate db restore restores the embedded SQLite database; for PostgreSQL use \
             pg_restore, e.g. pg_restore --clean --if-exists --dbname=\"$TOLLGATE_DATABASE_URL\" \
             tollgate.dump (see docs/deployment.md)"
        );
    };
    // The lock `serve` holds on this database for as long as it runs: no server may use the
    // file while it is replaced, and no server starts until the restore is done.
    let lock = datadir::lock_exclusively(&db.prepared_url()?, "db restore").await?;
    let (summary, kept) =
        tollgate_store::backup::restore_sqlite(from, &path, tollgate_store::schema_version())
            .await?;
    // Bring it to this version's schema now rather than at the next start.
    let store = Store::open(&url, &store_options(db.db_timeout_ms, false))
        .await
        .context("the restored database does not open")?;
    store.close().await;
    drop(lock);
    let rows: i64 = summary.rows.iter().map(|(_, n)| n).sum();
    println!(
        "restored {} from {} (schema version {}, {rows} rows)",
        path.display(),
        from.display(),
        summary.schema_version
    );
    if let Some(kept) = kept {
        println!("the database it replaced is kept as {}", kept.display());
    }
    Ok(())
}

/// `tollgate db check`: exit status 0 when sound, 1 with the problems listed otherwise.
async fn check_database(db: &DbArgs) -> anyhow::Result<bool> {
    // Never print the URL: it may hold a password.
    let store = Store::open_existing(&db.url(), &store_options(db.db_timeout_ms, false))
        .await
        .context("cannot open the database")?;
    let report = store.check().await.context("the check could not run")?;
    store.close().await;
    match report.schema_version {
        Some(v) => println!(
            "schema version {v} (this Tollgate: {})",
            report.expected_version
        ),
        None => println!("no schema version recorded"),
    }
    for (table, rows) in &report.counts {
        println!("{table:<28} {rows:>10} rows");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    if report.is_ok() {
        println!("ok: no problems found");
    } else {
        println!("{} problem(s) found:", report.problems.len());
        for p in &report.problems {
            println!("  {p}");
        }
    }
    Ok(report.is_ok())
}

/// `tollgate db copy`.
async fn copy_database(from: &str, to: &str, replace_target: bool) -> anyhow::Result<()> {
    if from == to {
        anyhow::bail!("--from and --to name the same database");
    }
    if Backend::from_url(from)? == Backend::Sqlite && !from.contains("mode=") {
        // The source must exist: opening it must not create an empty one to copy from.
        let path = from
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or(path);
        if !std::path::Path::new(path).exists() {
            anyhow::bail!("the source database file {path} does not exist");
        }
    }
    // Never print the URLs: they may hold passwords.
    // No statement timeout: copying a large deployment takes long statements.
    let options = store_options(5000, false);
    let source = Store::open(from, &options)
        .await
        .context("cannot open the source database")?;
    let target = Store::open(to, &options)
        .await
        .context("cannot open the target database")?;
    // Servers already running on the target must forget what they cached: the copy returns
    // once they have.
    let _attached = attach_command(&target, "db copy").await?;
    let counts = copy::copy(&source, &target, &CopyOptions { replace_target })
        .await
        .context("copy failed; the target was not changed")?;
    println!("{:<28} {:>10} {:>10}", "table", "source", "target");
    let mut total = 0;
    for c in &counts {
        println!("{:<28} {:>10} {:>10}", c.table, c.source, c.target);
        total += c.target;
    }
    println!(
        "copied {total} rows in {} tables; every count matches",
        counts.len()
    );
    source.close().await;
    target.close().await;
    Ok(())
}

/// Logs go to standard error in batches written by a thread of its own (see
/// `tollgate_server::log_writer`): a request thread formats its line and appends it to a
/// buffer, so one line per request costs no system call of its own. Keep the guard until
/// exit: dropping it writes what is left.
fn init_logs(format: LogFormat) -> anyhow::Result<tollgate_server::log_writer::Guard> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let (writer, guard) = tollgate_server::log_writer::batched(std::io::stderr())
        .context("starting the log writer thread")?;
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        // Colours for a person at a terminal; the cheaper plain format of the same shape for
        // files and collectors (one line per request is formatted at full load).
        LogFormat::Text if terminal => builder.init(),
        LogFormat::Text => builder
            .event_format(tollgate_server::log_format::PlainText)
            .fmt_fields(tollgate_server::log_format::PlainFields)
            .init(),
    }
    Ok(guard)
}

/// One line of standard input, without its line ending.
fn read_password_from_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    let line = s.lines().next().unwrap_or("");
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn find_user(store: &Store, email: &str) -> anyhow::Result<tollgate_store::users::User> {
    store
        .user_by_email(email)
        .await?
        .ok_or_else(|| anyhow::anyhow!("there is no user with the email {email}"))
}

async fn user_command(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            email,
            password,
            first_name,
            last_name,
            db,
        } => {
            let password = match password {
                Some(p) => p,
                None => read_password_from_stdin()?,
            };
            if password.chars().count() < 8 {
                anyhow::bail!("the password must be at least 8 characters");
            }
            if !email.contains('@') {
                anyhow::bail!("{email:?} is not an email address");
            }
            let (store, _attached) = db.open_for_command("user add").await?;
            let hash = passwords::hash(password).await?;
            let new = NewUser {
                email: &email,
                password_hash: &hash,
                first_name: &first_name,
                last_name: &last_name,
            };
            match store.create_user(&new).await {
                Ok(user) => {
                    println!("created user {} ({})", user.email, user.id);
                    Ok(())
                }
                Err(StoreError::Conflict(_)) => {
                    anyhow::bail!("a user with the email {email} already exists")
                }
                Err(e) => Err(e.into()),
            }
        }
        UserCommand::Passwd { email, db } => {
            let password = read_password_from_stdin()?;
            passwords::check_new_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
            let (store, attached) = db.open_for_command("user passwd").await?;
            let user = find_user(&store, &email).await?;
            let hash = passwords::hash(password).await?;
            let ended = store
                .set_password(&Actor::operator(), user.id, &hash, None)
                .await?;
            tracing::info!(user = %user.id, by = "operator", sessions_ended = ended, "password changed");
            println!(
                "changed the password of {}; {ended} {} ended",
                user.email,
                if ended == 1 { "session" } else { "sessions" }
            );
            confirm_applied(&attached);
            Ok(())
        }
        UserCommand::List { json, db } => {
            let store = db.open().await?;
            let users = store.list_users().await?;
            if json {
                let items: Vec<serde_json::Value> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "id": u.id, "email": u.email, "firstName": u.first_name,
                            "lastName": u.last_name,
                            "creationDate": tollgate_server::time::iso(u.creation_date),
                            "disabled": u.disabled, "twoFactorAuthEnabled": u.two_factor,
                            "sessions": u.sessions,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(items));
            } else {
                println!(
                    "{:<32} {:<24} {:<24} {:<8} {:<10} {:>8}",
                    "email", "id", "name", "status", "two-factor", "sessions"
                );
                for u in &users {
                    let name = format!("{} {}", u.first_name, u.last_name);
                    println!(
                        "{:<32} {:<24} {:<24} {:<8} {:<10} {:>8}",
                        u.email,
                        u.id.to_string(),
                        name.trim(),
                        if u.disabled { "disabled" } else { "active" },
                        if u.two_factor { "on" } else { "off" },
                        u.sessions
                    );
                }
            }
            Ok(())
        }
        UserCommand::Disable { email, db } => set_disabled(&email, &db, true).await,
        UserCommand::Enable { email, db } => set_disabled(&email, &db, false).await,
    }
}

async fn set_disabled(email: &str, db: &DbArgs, disabled: bool) -> anyhow::Result<()> {
    let what = if disabled {
        "user disable"
    } else {
        "user enable"
    };
    let (store, attached) = db.open_for_command(what).await?;
    let user = find_user(&store, email).await?;
    let ended = store
        .set_user_disabled(&Actor::operator(), user.id, disabled)
        .await?;
    tracing::info!(
        user = %user.id,
        by = "operator",
        sessions_ended = ended,
        "{}",
        if disabled { "user disabled" } else { "user enabled" }
    );
    if disabled {
        println!(
            "disabled {}; {ended} {} ended",
            user.email,
            if ended == 1 { "session" } else { "sessions" }
        );
    } else {
        println!("enabled {}", user.email);
    }
    confirm_applied(&attached);
    Ok(())
}

fn print_token_table(tokens: &[TokenRecord]) {
    println!(
        "{:<24} {:<24} {:<24} {:<8} {:<24} {:<24} {:<10} {:<10} {:<10}",
        "id",
        "application",
        "name",
        "status",
        "scope",
        "creator",
        "created",
        "expires",
        "last used"
    );
    let day = |ms: Option<i64>| {
        ms.map(|ms| tollgate_server::time::iso(ms)[..10].to_owned())
            .unwrap_or_else(|| "-".to_owned())
    };
    for t in tokens {
        println!(
            "{:<24} {:<24} {:<24} {:<8} {:<24} {:<24} {:<10} {:<10} {:<10}",
            t.id.to_string(),
            t.application_id.to_string(),
            t.name,
            t.status.as_str(),
            t.scope.join(","),
            admin::creator_label(t),
            day(Some(t.creation_date)),
            day(t.expiration_date),
            day(t.last_used)
        );
    }
}

async fn tokens_command(command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::List { app, json, db } => {
            let app = app.as_deref().map(admin::parse_id).transpose()?;
            let store = db.open().await?;
            let tokens = admin::list_tokens(&store, app).await?;
            if json {
                println!("{}", admin::list_json(&tokens));
            } else {
                print_token_table(&tokens);
            }
            Ok(())
        }
        TokensCommand::Show { id, db } => {
            let id = admin::parse_id(&id)?;
            let store = db.open().await?;
            let token = admin::token(&store, id).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&admin::token_json(&token))?
            );
            Ok(())
        }
        TokensCommand::Deactivate { id, db } => {
            let id = admin::parse_id(&id)?;
            let (store, attached) = db.open_for_command("tokens deactivate").await?;
            let done = admin::deactivate_token(&store, id).await?;
            if done.changed {
                println!(
                    "deactivated API token {} ({:?}) of application {}",
                    done.token.id, done.token.name, done.token.application_id
                );
            } else {
                println!(
                    "API token {} ({:?}) was inactive already: nothing changed",
                    done.token.id, done.token.name
                );
            }
            confirm_applied(&attached);
            Ok(())
        }
        TokensCommand::Revoke { stdin: _, db } => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the tokens from standard input")?;
            let presented: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
            let (store, attached) = db.open_for_command("tokens revoke").await?;
            let revoked = admin::revoke_leaked(&store, &presented).await?;
            for t in &revoked {
                println!(
                    "deactivated API token {} of application {}: reported as leaked",
                    t.id, t.application_id
                );
            }
            println!(
                "{} of {} strings read were live API tokens; each is now deactivated",
                revoked.len(),
                presented.len()
            );
            confirm_applied(&attached);
            Ok(())
        }
        TokensCommand::Delete { id, db } => {
            let id = admin::parse_id(&id)?;
            let (store, attached) = db.open_for_command("tokens delete").await?;
            let token = admin::delete_token(&store, id).await?;
            println!(
                "deleted API token {} ({:?}) of application {}",
                token.id, token.name, token.application_id
            );
            confirm_applied(&attached);
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let _logs = init_logs(args.log_format)?;
            let metrics_token = match &args.metrics_token_file {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| {
                        format!("cannot read --metrics-token-file {}", path.display())
                    })?;
                    let token = text.trim().to_owned();
                    if token.len() < 16 {
                        anyhow::bail!(
                            "--metrics-token-file {} must hold a secret of at least 16 characters",
                            path.display()
                        );
                    }
                    Some(token)
                }
            };
            let secret_key_file = args
                .secret_key_file
                .clone()
                .unwrap_or_else(|| args.db.data_dir.join("secret.key"));
            let defaults = HashLimits::default();
            let threads = args.login_hash_threads.unwrap_or(defaults.threads).max(1);
            passwords::configure(HashLimits {
                threads,
                queue: args.login_hash_queue.unwrap_or(16 * threads),
            });
            let limits = ConnectionLimits {
                header_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
                idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
                max_connections: connections::cap_below_fd_limit(
                    args.max_connections.max(1),
                    connections::fd_limit(),
                ),
            };
            // One server per SQLite database: take its lock before touching it (held until
            // exit; `tollgate db restore` refuses while it is held).
            let local = match LocalPaths::for_url(&args.db.prepared_url()?) {
                Some(paths) => Some(lock_for_server(&paths).await?),
                None => None,
            };
            let store = args.db.open().await?;
            ensure_admin(
                &store,
                AdminSeed {
                    email: std::env::var("TOLLGATE_ADMIN_EMAIL").ok(),
                    password: std::env::var("TOLLGATE_ADMIN_PASSWORD").ok(),
                },
                &args.db.data_dir,
            )
            .await?;
            let rate = |burst: u32, secs: u64| Rate {
                burst: burst.max(1),
                interval: Duration::from_secs(secs.max(1)),
            };
            let settings = Settings {
                session_ttl_ms: i64::from(args.session_days) * 24 * 3600 * 1000,
                secure_cookies: args.secure_cookies,
                change_lease: Duration::from_millis(args.change_lease_ms),
                preload_tokens: args.preload_tokens,
                token_usage: args.token_usage,
                secret_key_file: Some(secret_key_file),
                cors_origins: args.cors_origins.clone(),
                trusted_proxies: args.trusted_proxies.clone(),
                metrics_token,
                login_account_rate: rate(
                    args.login_account_burst,
                    args.login_account_interval_secs,
                ),
                login_address_rate: rate(
                    args.login_address_burst,
                    args.login_address_interval_secs,
                ),
                db_timeout: Duration::from_millis(args.db.db_timeout_ms.max(1)),
                webhook_interval: Duration::from_millis(args.webhook_interval_ms),
                webhook_policy: tollgate_server::webhooks::DeliveryPolicy {
                    first_retry: Duration::from_millis(args.webhook_retry_base_ms),
                    ..Default::default()
                },
            };
            // A revocation waits up to a silent node's lease for it; the request deadline
            // must leave room for that, or such a revocation is saved but answered 503.
            if store.backend() == Backend::Postgres
                && settings.change_lease + settings.change_lease / 10 >= settings.db_timeout
            {
                tracing::warn!(
                    change_lease_ms = settings.change_lease.as_millis() as u64,
                    db_timeout_ms = settings.db_timeout.as_millis() as u64,
                    "--db-timeout-ms is not well above --change-lease-ms: a revocation that waits \
                     for an unreachable node's lease may be saved yet answered 503"
                );
            }
            let options = ServeOptions {
                listen: args.listen,
                flush_every: Duration::from_secs(args.last_used_flush_secs.max(1)),
                audit_retention: Duration::from_secs(args.audit_retention_days * 86_400),
                background_interval: Duration::from_millis(args.background_interval_ms),
                limits,
                listener_url: args.listener_database_url,
                local,
                health_listen: args.health_listen,
            };
            serve(store, settings, options).await
        }
        Command::Db(DbCommand::Check { db }) => {
            let logs = init_logs(LogFormat::Text)?;
            if check_database(&db).await? {
                Ok(())
            } else {
                drop(logs);
                std::process::exit(1)
            }
        }
        Command::Db(DbCommand::Copy {
            from,
            to,
            replace_target,
        }) => {
            let _logs = init_logs(LogFormat::Text)?;
            copy_database(&from, &to, replace_target).await
        }
        Command::Db(DbCommand::Backup { to, db }) => {
            let _logs = init_logs(LogFormat::Text)?;
            backup_database(&to, &db).await
        }
        Command::Db(DbCommand::Restore { from, db }) => {
            let _logs = init_logs(LogFormat::Text)?;
            restore_database(&from, &db).await
        }
        Command::User(command) => {
            let _logs = init_logs(LogFormat::Text)?;
            user_command(command).await
        }
        Command::Tokens(command) => {
            let _logs = init_logs(LogFormat::Text)?;
            tokens_command(command).await
        }
    }
}
