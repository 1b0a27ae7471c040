//! Devices answered from memory. `device.get` and every state report, command and history
//! request look their device up; the devices seen are kept here and dropped on the same
//! change feed, under the same [`Freshness`] gate, as cached credentials: a change made on
//! this node is applied before the write returns, one made on another node when its notice
//! arrives (and no cache answers past the lease if notices stop).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use axum::body::Bytes;

use tollgate_store::devices::Device;
use tollgate_store::{Change, Id, Store, StoreError};

use crate::freshness::Freshness;

pub struct DeviceCache {
    store: Store,
    freshness: Arc<Freshness>,
    devices: RwLock<HashMap<Id, Arc<CachedDevice>, foldhash::fast::RandomState>>,
}

/// A device, and its `device.get` response body once it has been rendered (a device is read
/// far more often than it changes, and a change replaces the whole entry).
#[derive(Debug)]
pub struct CachedDevice {
    device: Device,
    rendered: OnceLock<Bytes>,
}

impl CachedDevice {
    /// The response body, rendered by `render` the first time it is asked for.
    pub fn rendered(&self, render: impl FnOnce(&Device) -> Bytes) -> Bytes {
        self.rendered.get_or_init(|| render(&self.device)).clone()
    }
}

impl std::ops::Deref for CachedDevice {
    type Target = Device;
    fn deref(&self) -> &Device {
        &self.device
    }
}

impl DeviceCache {
    pub fn new(store: Store, freshness: Arc<Freshness>) -> DeviceCache {
        DeviceCache {
            store,
            freshness,
            devices: RwLock::default(),
        }
    }

    /// The device `id` of `application`; a device of another application is `NotFound`,
    /// exactly as in the store.
    pub async fn get(&self, application: Id, id: Id) -> Result<Arc<CachedDevice>, StoreError> {
        if self.freshness.usable()
            && let Some(d) = read(&self.devices).get(&id)
        {
            return if d.application_id == application {
                Ok(d.clone())
            } else {
                Err(StoreError::NotFound)
            };
        }
        let epoch = self.freshness.epoch();
        let device = Arc::new(CachedDevice {
            device: self.store.device(application, id).await?,
            rendered: OnceLock::new(),
        });
        if self.freshness.may_keep(epoch) {
            let mut devices = write(&self.devices);
            // Checked again under the lock: a change applied meanwhile wins.
            if self.freshness.may_keep(epoch) {
                devices.insert(id, device.clone());
            }
        }
        Ok(device)
    }

    /// Apply a change made by this node or announced by another.
    pub fn apply(&self, change: &Change) {
        self.freshness.bump();
        match change {
            Change::Device(id) => {
                write(&self.devices).remove(id);
            }
            Change::Application(app) => {
                write(&self.devices).retain(|_, d| d.application_id != *app);
            }
            Change::All => self.clear(),
            Change::Token { .. }
            | Change::Session(_)
            | Change::User(_)
            | Change::State(_)
            | Change::Reads { .. } => {}
        }
        self.freshness.bump();
    }

    pub fn clear(&self) {
        self.freshness.bump();
        write(&self.devices).clear();
    }

    pub fn cached(&self) -> usize {
        read(&self.devices).len()
    }
}

// See `auth::credentials`: these sections never panic while holding the lock.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
