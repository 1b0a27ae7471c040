//! What every handler shares.

use std::sync::Arc;

use tollgate_store::Store;

use crate::auth::Credentials;

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session_ttl_ms: 30 * 24 * 3600 * 1000,
            secure_cookies: false,
            change_lease: std::time::Duration::from_millis(750),
        }
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    store: Store,
    credentials: Arc<Credentials>,
    settings: Settings,
}

impl AppState {
    pub fn new(store: Store, settings: Settings) -> AppState {
        let credentials = Arc::new(Credentials::new(store.clone()));
        // Writes made through this store update this node's caches before they return. A weak
        // reference: the store outlives no one, and a cycle would leak both.
        let weak = Arc::downgrade(&credentials);
        store.on_change(Arc::new(move |change| {
            if let Some(c) = weak.upgrade() {
                c.apply(change);
            }
        }));
        AppState(Arc::new(Inner {
            store,
            credentials,
            settings,
        }))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn credentials(&self) -> &Credentials {
        &self.0.credentials
    }

    pub fn credentials_arc(&self) -> Arc<Credentials> {
        self.0.credentials.clone()
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }
}
