//! Device restrictions on actions that name a device: a device outside the token's devices
//! is answered 404, exactly as a device that does not exist. Lists and data queries are
//! narrowed by their handlers (`AppAccess::devices`). The device is judged as it is at the
//! request (from the device cache, which every device change updates before it returns), so
//! a device that gains a tag is reachable at once and one that loses it is not.

use tollgate_core::restrictions::Devices;
use tollgate_store::devices::Device;

use super::{Check, Context, Verdict};
use crate::error::ApiError;

#[derive(Debug)]
pub struct DeviceCheck {
    devices: Devices,
}

impl DeviceCheck {
    pub fn new(devices: Devices) -> DeviceCheck {
        DeviceCheck { devices }
    }
}

/// Does `devices` reach `device`?
pub fn admits(devices: &Devices, device: &Device) -> bool {
    devices.admits(
        &device.id.to_string(),
        device
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str())),
    )
}

impl Check for DeviceCheck {
    fn check(&self, ctx: &Context<'_>) -> Verdict {
        match ctx.device {
            Some(d) if !admits(&self.devices, d) => Verdict::Refuse(ApiError::not_found("Device")),
            _ => Verdict::Pass,
        }
    }
}
