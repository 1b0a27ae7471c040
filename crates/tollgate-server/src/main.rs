//! The `tollgate` command.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tollgate_server::Settings;
use tollgate_server::auth::passwords;
use tollgate_server::serve::{AdminSeed, ensure_admin, serve};
use tollgate_store::users::NewUser;
use tollgate_store::{Store, StoreError};

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
    /// with a generated password printed once to the terminal.
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Args)]
struct DbArgs {
    /// Directory for the embedded SQLite database (tollgate.db).
    #[arg(long, env = "TOLLGATE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://USER:PASS@HOST/DB. Default: the SQLite file in
    /// the data directory.
    #[arg(long, env = "TOLLGATE_DATABASE_URL")]
    database_url: Option<String>,
}

impl DbArgs {
    async fn open(&self) -> anyhow::Result<Store> {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&self.data_dir).with_context(|| {
                    format!("cannot create data directory {}", self.data_dir.display())
                })?;
                format!("sqlite://{}", self.data_dir.join("tollgate.db").display())
            }
        };
        // Never print the URL: it may hold a password.
        Store::connect(&url)
            .await
            .context("cannot open the database")
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
    /// Log format: text or json.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", default_value = "text")]
    log_format: String,
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
            let store = args.db.open().await?;
            ensure_admin(
                &store,
                AdminSeed {
                    email: std::env::var("TOLLGATE_ADMIN_EMAIL").ok(),
                    password: std::env::var("TOLLGATE_ADMIN_PASSWORD").ok(),
                },
            )
            .await?;
            let settings = Settings {
                session_ttl_ms: i64::from(args.session_days) * 24 * 3600 * 1000,
                secure_cookies: args.secure_cookies,
            };
            serve(
                store,
                settings,
                args.listen,
                Duration::from_secs(args.last_used_flush_secs.max(1)),
            )
            .await
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
            let store = db.open().await?;
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
