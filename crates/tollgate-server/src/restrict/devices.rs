//! Device restrictions on actions that name a device: a device outside the token's devices
//! is answered 404, exactly as a device that does not exist. Lists and data queries are
//! narrowed by their handlers (`AppAccess::devices`). The device is judged as it is at the
//! request (from the device cache, which every device change updates before it returns), so
//! a device that gains a tag is reachable at once and one that loses it is not.

use tollgate_core::restrictions::Devices;
use tollgate_store::devices::{Device, Tag};

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

/// Would a device with this id (`None`: one not created yet) and these tags be among
/// `devices`? A device-restricted token may create or change a device only so that it stays
/// within its devices: it cannot make a device it could not reach, nor move one of its own out
/// of its reach (into another token's).
pub fn would_admit(devices: &Devices, id: Option<&str>, tags: &[Tag]) -> bool {
    devices.admits(
        id.unwrap_or(""),
        tags.iter().map(|t| (t.key.as_str(), t.value.as_str())),
    )
}

/// The message of a refused device write, naming the rule.
pub fn outside_message(devices: &Devices, creating: bool) -> String {
    let what = if creating {
        "the new device would be outside them"
    } else {
        "the change would move the device outside them"
    };
    let mut rule = Vec::new();
    if !devices.ids.is_empty() {
        rule.push(format!("{} listed device ids", devices.ids.len()));
    }
    if !devices.tags.is_empty() {
        let tags: Vec<String> = devices.tags.iter().map(|t| t.to_string()).collect();
        rule.push(format!("devices tagged {}", tags.join(" or ")));
    }
    format!(
        "This API token is restricted to {}: {what}",
        rule.join(" and ")
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
