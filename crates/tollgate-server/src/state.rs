//! What every handler shares.

use std::sync::{Arc, OnceLock};

use tollgate_store::{Change, Store};

use crate::auth::Credentials;
use crate::auth::throttle::{self, Kind, Rate, Throttle};
use crate::auth::two_factor::SecretKey;
use crate::changes::Cluster;
use crate::device_cache::DeviceCache;
use crate::freshness::Freshness;
use crate::metrics::ResponseCounts;
use crate::observe::Latencies;
use crate::read_cache::ReadCache;
use crate::state_cache::StateCache;

/// Settings that shape behaviour (not where to listen or store).
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a login session lasts unless the client asks for less.
    pub session_ttl_ms: i64,
    /// Whether cookies must be sent over TLS only (`Secure`): set when served behind HTTPS.
    pub secure_cookies: bool,
    /// With several nodes (PostgreSQL): how long cached credentials may be used without
    /// proof that every change notice has arrived. Bounds revocation delay when notices stop.
    pub change_lease: std::time::Duration,
    /// Load every token into the credential cache at start-up (single node).
    pub preload_tokens: bool,
    /// The file holding the key that encrypts two-factor secrets (created on first use).
    /// `None`: a key that lives in memory only (tests).
    pub secret_key_file: Option<std::path::PathBuf>,
    /// Origins allowed to call the REST API from a browser (`*`: any, without credentials).
    pub cors_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (`--trusted-proxy`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The bearer secret `GET /metrics` requires, if any.
    pub metrics_token: Option<String>,
    /// Failed logins allowed per account: a burst, then one per interval.
    pub login_account_rate: Rate,
    /// Failed logins allowed per client address (IPv4, or IPv6 /64).
    pub login_address_rate: Rate,
    /// The most a request may take with the database (`--db-timeout-ms`): past it the request
    /// is answered 503 and its database work is abandoned (rolled back).
    pub db_timeout: std::time::Duration,
    /// Count each token's requests and keep its recent ones (`--token-usage`).
    pub token_usage: bool,
    /// How often the webhook worker sends what is due (`--webhook-interval-ms`).
    pub webhook_interval: std::time::Duration,
    /// How webhook deliveries are attempted and retried (`--webhook-retry-base-ms`).
    pub webhook_policy: crate::webhooks::DeliveryPolicy,
}

/// Defaults of the login throttle (see README, "Limits and hardening").
pub const LOGIN_ACCOUNT_RATE: Rate = Rate {
    burst: 10,
    interval: std::time::Duration::from_secs(60),
};
pub const LOGIN_ADDRESS_RATE: Rate = Rate {
    burst: 30,
    interval: std::time::Duration::from_secs(2),
};

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session_ttl_ms: 30 * 24 * 3600 * 1000,
            secure_cookies: false,
            change_lease: std::time::Duration::from_millis(750),
            preload_tokens: false,
            secret_key_file: None,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            metrics_token: None,
            login_account_rate: LOGIN_ACCOUNT_RATE,
            login_address_rate: LOGIN_ADDRESS_RATE,
            db_timeout: std::time::Duration::from_secs(5),
            token_usage: true,
            webhook_interval: std::time::Duration::from_secs(2),
            webhook_policy: crate::webhooks::DeliveryPolicy::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    store: Store,
    freshness: Arc<Freshness>,
    credentials: Arc<Credentials>,
    usage: crate::auth::usage::Usage,
    devices: DeviceCache,
    reads: ReadCache,
    states: StateCache,
    responses: ResponseCounts,
    latencies: Arc<Latencies>,
    secret_key: SecretKey,
    login_throttle: Throttle,
    /// Leak reports (`tokens.revoke`) per client address.
    leak_throttle: Throttle,
    settings: Settings,
    /// This node's part in a PostgreSQL cluster, once it has joined.
    cluster: OnceLock<Arc<Cluster>>,
    write_check: crate::health::WriteCheck,
    /// Each application's first warning lead time (token policies).
    leads: crate::service::policy::Leads,
}

impl AppState {
    pub fn new(store: Store, settings: Settings) -> AppState {
        let freshness = Arc::new(Freshness::default());
        let credentials = Arc::new(Credentials::new(store.clone(), freshness.clone()));
        let devices = DeviceCache::new(store.clone(), freshness.clone());
        let reads = ReadCache::new(freshness.clone());
        let states = StateCache::new(freshness.clone());
        let state = AppState(Arc::new(Inner {
            store: store.clone(),
            freshness,
            credentials,
            usage: crate::auth::usage::Usage::new(settings.token_usage),
            devices,
            reads,
            states,
            responses: ResponseCounts::default(),
            latencies: Arc::default(),
            secret_key: SecretKey::new(settings.secret_key_file.clone()),
            login_throttle: Throttle::new(
                &[
                    (Kind::Account, settings.login_account_rate),
                    (Kind::Address, settings.login_address_rate),
                ],
                throttle::DEFAULT_CAPACITY,
            ),
            leak_throttle: Throttle::new(
                &[(Kind::Address, crate::api::lifecycle::LEAK_REPORT_RATE)],
                throttle::DEFAULT_CAPACITY,
            ),
            settings,
            cluster: OnceLock::new(),
            write_check: Default::default(),
            leads: Default::default(),
        }));
        // Writes made through this store update this node's caches before they return. A weak
        // reference: the store would otherwise keep the state (and itself) alive forever.
        let weak = Arc::downgrade(&state.0);
        store.on_change(Arc::new(move |change| {
            if let Some(inner) = weak.upgrade() {
                AppState(inner).apply_change(change);
            }
        }));
        state
    }

    /// This node's unflushed per-token usage.
    pub fn usage(&self) -> &crate::auth::usage::Usage {
        &self.0.usage
    }

    /// Apply a change (made here, or announced by another node) to every cache.
    pub fn apply_change(&self, change: &Change) {
        // State reports concern the state cache only (and must not move the shared epoch:
        // see `state_cache`).
        if let Change::State(_) = change {
            self.0.states.apply(change);
            return;
        }
        self.0.credentials.apply(change);
        self.0.devices.apply(change);
        self.0.reads.apply(change);
        self.0.states.apply(change);
    }

    /// Drop everything every cache holds.
    pub fn clear_caches(&self) {
        self.0.credentials.clear();
        self.0.devices.clear();
        self.0.reads.clear();
        self.0.states.clear();
    }

    /// The change feed went down or came back: caches stop answering at once when it goes
    /// down, and start again empty when it comes back.
    pub fn set_change_feed(&self, up: bool) {
        if up {
            self.clear_caches();
            self.0.freshness.set_trusted(true);
        } else {
            self.0.freshness.set_trusted(false);
            self.clear_caches();
        }
    }

    /// Whether the caches may answer (the lease and the change feed).
    pub fn freshness(&self) -> &Freshness {
        &self.0.freshness
    }

    pub fn responses(&self) -> &ResponseCounts {
        &self.0.responses
    }

    /// Request latencies by action and status class.
    pub fn latencies(&self) -> &Arc<Latencies> {
        &self.0.latencies
    }

    pub fn devices(&self) -> &DeviceCache {
        &self.0.devices
    }

    /// Read actions answered from memory (see `read_cache`).
    pub fn reads(&self) -> &ReadCache {
        &self.0.reads
    }

    /// Device state answered from memory (see `state_cache`).
    pub fn states(&self) -> &StateCache {
        &self.0.states
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn credentials(&self) -> &Credentials {
        &self.0.credentials
    }

    /// Failed-login throttling (accounts and client addresses), asked before any password
    /// is hashed. Other guessable checks (second-factor codes) can use it too.
    pub fn login_throttle(&self) -> &Throttle {
        &self.0.login_throttle
    }

    /// Leak reports per client address (every report counts, whatever it names).
    pub fn leak_throttle(&self) -> &Throttle {
        &self.0.leak_throttle
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    /// The key that encrypts two-factor secrets.
    pub fn secret_key(&self) -> &SecretKey {
        &self.0.secret_key
    }

    /// Record that this node has joined a cluster (see `changes::spawn`).
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.0.cluster.set(cluster);
    }

    /// This node's part in a PostgreSQL cluster, if it has one.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.0.cluster.get()
    }

    /// Each application's first warning lead time, from the token policies.
    pub fn leads(&self) -> &crate::service::policy::Leads {
        &self.0.leads
    }

    /// The last check of whether the database takes writes (for `/health`).
    pub fn write_check(&self) -> &crate::health::WriteCheck {
        &self.0.write_check
    }
}
