//! The `tollgate` command.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tollgate_server::Settings;
use tollgate_server::auth::passwords::{self, HashLimits};
use tollgate_server::auth::throttle::Rate;
use tollgate_server::connections::{self, ConnectionLimits};
use tollgate_server::datadir::{self, Attachment, LocalPaths, attach_command, lock_for_server};
use tollgate_server::serve::{AdminSeed, ServeOptions, ensure_admin, serve};
use tollgate_store::copy::{self, CopyOptions};
use tollgate_store::users::NewUser;
use tollgate_store::{Backend, Store, StoreError, StoreOptions};

/// Tollgate: a self-hosted IoT application server whose every API call is guarded by
/// application API tokens. Speaks the Losant REST API, so the official clients work unchanged.
#[derive(Parser)]
#[command(name = "tollgate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

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
    /// Move a deployment between databases.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand)]
enum DbCommand {
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
    #[arg(long, env = "TOLLGATE_DB_TIMEOUT_MS", default_value_t = 5000)]
    db_timeout_ms: u64,
}

impl DbArgs {
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

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    db: DbArgs,
    /// Mark console cookies Secure (set this when Tollgate is served over HTTPS).
    #[arg(long, env = "TOLLGATE_SECURE_COOKIES")]
    secure_cookies: bool,
    /// How long login sessions last, in days.
    #[arg(long, env = "TOLLGATE_SESSION_DAYS", default_value_t = 30)]
    session_days: u32,
    /// How often last-used times of tokens are written to the database, in seconds.
    #[arg(long, env = "TOLLGATE_LAST_USED_FLUSH_SECS", default_value_t = 60)]
    last_used_flush_secs: u64,
    /// With several nodes on PostgreSQL: how long this node may answer from its credential
    /// cache without proof (a heartbeat through the database) that it has heard every change.
    /// The most a revocation can take to reach this node if change notices stop, in
    /// milliseconds.
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
    /// on first use). The server answers at once; tokens not loaded yet load on demand.
    #[arg(long, env = "TOLLGATE_PRELOAD_TOKENS")]
    preload_tokens: bool,
    /// Log format: text or json.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// A connection must send each request's head (request line and headers) within this
    /// many milliseconds of being opened, or of the first byte of a further request; else it
    /// is closed (slow or stalled clients cannot hold connections).
    #[arg(long, env = "TOLLGATE_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// A kept-alive connection with no request for this many seconds is closed.
    #[arg(long, env = "TOLLGATE_IDLE_TIMEOUT_SECS", default_value_t = 75)]
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
    #[arg(long, env = "TOLLGATE_LOGIN_ACCOUNT_BURST", default_value_t = 10)]
    login_account_burst: u32,
    /// A throttled account regains one attempt every this many seconds.
    #[arg(
        long,
        env = "TOLLGATE_LOGIN_ACCOUNT_INTERVAL_SECS",
        default_value_t = 60
    )]
    login_account_interval_secs: u64,
    /// Failed logins allowed in a row from one client address (IPv4, or IPv6 /64).
    #[arg(long, env = "TOLLGATE_LOGIN_ADDRESS_BURST", default_value_t = 30)]
    login_address_burst: u32,
    /// A throttled address regains one attempt every this many seconds.
    #[arg(
        long,
        env = "TOLLGATE_LOGIN_ADDRESS_INTERVAL_SECS",
        default_value_t = 2
    )]
    login_address_interval_secs: u64,
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
}

fn store_options(timeout_ms: u64, statement_timeout: bool) -> StoreOptions {
    let timeout = Duration::from_millis(timeout_ms.max(1));
    StoreOptions {
        acquire_timeout: timeout,
        statement_timeout: statement_timeout.then_some(timeout),
        ..StoreOptions::default()
    }
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

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logs(&args.log_format);
            // One server per SQLite database: take its lock before touching it.
            let local = match LocalPaths::for_url(&args.db.prepared_url()?) {
                Some(paths) => Some(lock_for_server(&paths).await?),
                None => None,
            };
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
                login_account_rate: rate(
                    args.login_account_burst,
                    args.login_account_interval_secs,
                ),
                login_address_rate: rate(
                    args.login_address_burst,
                    args.login_address_interval_secs,
                ),
                db_timeout: Duration::from_millis(args.db.db_timeout_ms.max(1)),
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
                limits,
                listener_url: args.listener_database_url,
                local,
            };
            serve(store, settings, options).await
        }
        Command::Db(DbCommand::Check { db }) => {
            init_logs("text");
            if check_database(&db).await? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Db(DbCommand::Copy {
            from,
            to,
            replace_target,
        }) => {
            init_logs("text");
            copy_database(&from, &to, replace_target).await
        }
        Command::User(UserCommand::Add {
            email,
            password,
            first_name,
            last_name,
            db,
        }) => {
            init_logs("text");
            let password = match password {
                Some(p) => p,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s.trim_end_matches(['\r', '\n']).to_owned()
                }
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
    }
}
