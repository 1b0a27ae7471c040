//! Organization roles, from least to most powerful.

use std::fmt;
use std::str::FromStr;

/// A member's role in an organization, or a per-application override of it.
///
/// The order matters: a role may do everything the roles below it may do. The owner of a
/// sandbox application acts as `Admin` there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Sees nothing of the organization's contents.
    None,
    /// Reads everything.
    View,
    /// Also modifies applications and their sub-resources (devices, workflows).
    Collaborate,
    /// Also creates and deletes applications and manages application API tokens.
    Edit,
    /// Also manages the organization itself and its members.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::None,
        Role::View,
        Role::Collaborate,
        Role::Edit,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::View => "view",
            Role::Collaborate => "collaborate",
            Role::Edit => "edit",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no role.
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, edit, collaborate, view or none")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_order() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!(Role::Admin > Role::Edit && Role::Edit > Role::Collaborate);
        assert!(Role::Collaborate > Role::View && Role::View > Role::None);
        assert!("owner".parse::<Role>().is_err());
    }
}
