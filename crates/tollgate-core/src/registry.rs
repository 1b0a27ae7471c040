//! The action registry: the one place that knows every action the server implements.
//!
//! Each entry names the action as the official Losant clients do (`resource.action`), gives
//! its method and path (axum's `{param}` syntax, identical to the reference catalog), the
//! permission family it belongs to, whether it only reads, the least organization role a user
//! needs for it, and the reference JSON schemas of its request body and response.
//!
//! The router, the authorization layer, the console's custom-permission checklist, the OpenAPI
//! document and the README's permission table all derive from this table. Adding an action is
//! one entry here plus its handler (the server's handler table is an exhaustive `match`, so a
//! missing handler does not compile). A test checks every entry against the reference
//! `catalog.json`.

use crate::role::Role;

/// HTTP methods used by the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Who can be granted an action at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// No credentials needed (logging in).
    Public,
    /// A logged-in user acting for themselves (`all.User`).
    User,
    /// An organization, or the set of applications a user can see.
    Organization,
    /// Something inside one application: what application API tokens are for.
    Application,
}

impl Family {
    /// The name the reference catalog uses in `scopeFamily`.
    pub fn catalog_name(self) -> &'static str {
        match self {
            Family::Public => "none",
            Family::User => "user",
            Family::Organization => "organization",
            Family::Application => "application",
        }
    }
}

/// One registry entry.
#[derive(Debug)]
pub struct ActionDef {
    pub action: Action,
    /// `resource.action`, e.g. `device.sendState`.
    pub name: &'static str,
    pub method: Method,
    /// Path template, e.g. `/applications/{applicationId}/devices/{deviceId}/state`.
    pub path: &'static str,
    pub family: Family,
    /// True where `all.Application.read` grants it (the catalog's `readOnly`).
    pub read_only: bool,
    /// The least organization role a user needs (sandbox owners count as admin).
    pub min_role: Role,
    /// Status code of a successful response.
    pub success: u16,
    /// Reference schema of the request body, if the action takes one.
    pub body: Option<&'static str>,
    /// Reference schema of the successful response.
    pub response: &'static str,
    /// One line for the console's checklist and the OpenAPI document.
    pub description: &'static str,
}

/// Actions this server adds to the reference API (documented as extensions in the OpenAPI
/// document; the catalog test does not look for them in the reference catalog).
pub const EXTENSIONS: &[&str] = &[
    "auth.logout",
    "tokens.revoke",
    "applicationApiToken.roll",
    "applicationAuditLogs.get",
    "applicationApiToken.usage",
    "applicationApiToken.descendants",
    "applicationTokenPolicy.get",
    "applicationTokenPolicy.patch",
    "orgTokenPolicy.get",
    "orgTokenPolicy.patch",
    "applicationTokenWebhooks.get",
    "applicationTokenWebhooks.post",
    "applicationTokenWebhook.get",
    "applicationTokenWebhook.patch",
    "applicationTokenWebhook.delete",
    "applicationTokenWebhook.deliveries",
    "applicationTokenWebhook.retryDelivery",
];

impl ActionDef {
    /// True for an action the reference API does not have (see [`EXTENSIONS`]).
    pub fn is_extension(&self) -> bool {
        EXTENSIONS.contains(&self.name)
    }

    /// The part before the dot: `device` for `device.sendState`.
    pub fn resource(&self) -> &'static str {
        self.name.split_once('.').map_or(self.name, |(r, _)| r)
    }

    /// The part after the dot: `sendState` for `device.sendState`.
    pub fn verb(&self) -> &'static str {
        self.name.split_once('.').map_or(self.name, |(_, v)| v)
    }
}

macro_rules! registry {
    ($(
        $variant:ident: $name:literal $method:ident $path:literal,
            $family:ident, read_only: $ro:literal, min_role: $role:ident, $success:literal,
            body: $body:expr, response: $resp:literal,
            $desc:literal;
    )*) => {
        /// Every action the server implements, in registry order. `action as usize` is its
        /// bit in an [`ActionSet`](crate::ActionSet).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Action { $($variant),* }

        /// The registry table, indexed by `Action as usize`.
        pub static REGISTRY: &[ActionDef] = &[$(
            ActionDef {
                action: Action::$variant,
                name: $name,
                method: Method::$method,
                path: $path,
                family: Family::$family,
                read_only: $ro,
                min_role: Role::$role,
                success: $success,
                body: $body,
                response: $resp,
                description: $desc,
            }
        ),*];

        impl Action {
            /// All actions, in registry order.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];
        }
    };
}

registry! {
    // --- public ---
    AuthAuthenticateUser: "auth.authenticateUser" Post "/auth/user",
        Public, read_only: false, min_role: None, 200,
        body: Some("userCredentials"), response: "authedUser",
        "Authenticates a user using the provided credentials";
    TokensRevoke: "tokens.revoke" Post "/tokens/revoke",
        Public, read_only: false, min_role: None, 202,
        body: Some("tokenLeakReport"), response: "tokenLeakReportAccepted",
        "Reports leaked tokens: every live application API token among them is deactivated with the reason \"reported as leaked\"; no credentials, always the same answer (extension: not in the reference API)";

    // --- the logged-in user ---
    AuthLogout: "auth.logout" Post "/auth/logout",
        User, read_only: false, min_role: None, 200,
        body: None, response: "success",
        "Ends the session whose token authenticates this request, on every node (extension: not in the reference API)";
    MeGet: "me.get" Get "/me",
        User, read_only: true, min_role: None, 200,
        body: None, response: "me",
        "Retrieves information on the current user";
    MePatch: "me.patch" Patch "/me",
        User, read_only: false, min_role: None, 200,
        body: Some("mePatch"), response: "me",
        "Updates the current user's name";
    MeChangePassword: "me.changePassword" Patch "/me/changePassword",
        User, read_only: false, min_role: None, 200,
        body: Some("changePassword"), response: "authedUser",
        "Changes the current user's password (the current one is required) and ends every other session";
    MeGenerateTwoFactorAuth: "me.generateTwoFactorAuth" Patch "/me/generateTwoFactorAuth",
        User, read_only: false, min_role: None, 200,
        body: None, response: "multiFactorAuthInfo",
        "Returns a new two-factor (TOTP) key for the current user, to confirm with me.enableTwoFactorAuth";
    MeEnableTwoFactorAuth: "me.enableTwoFactorAuth" Patch "/me/enableTwoFactorAuth",
        User, read_only: false, min_role: None, 200,
        body: Some("multiFactorAuthEnable"), response: "me",
        "Enables two-factor authentication for the current user; answers one-time recovery codes once";
    MeDisableTwoFactorAuth: "me.disableTwoFactorAuth" Patch "/me/disableTwoFactorAuth",
        User, read_only: false, min_role: None, 200,
        body: Some("multiFactorAuthDisable"), response: "me",
        "Disables two-factor authentication for the current user";
    MeInvites: "me.invites" Get "/me/invites",
        User, read_only: true, min_role: None, 200,
        body: None, response: "orgInvitesUser",
        "Retrieves pending organization invitations for a user";
    MeRespondToInvite: "me.respondToInvite" Post "/me/invites/{inviteId}",
        User, read_only: false, min_role: None, 200,
        body: Some("orgInviteActionUser"), response: "orgInviteResultUser",
        "Accepts or rejects an invitation to an organization";
    OrgsGet: "orgs.get" Get "/orgs",
        User, read_only: true, min_role: None, 200,
        body: None, response: "orgs",
        "Returns the organizations associated with the current user";
    OrgsPost: "orgs.post" Post "/orgs",
        User, read_only: false, min_role: None, 201,
        body: Some("orgPost"), response: "org",
        "Create a new organization";

    // --- organizations ---
    OrgGet: "org.get" Get "/orgs/{orgId}",
        Organization, read_only: true, min_role: View, 200,
        body: None, response: "org",
        "Retrieves information on an organization";
    OrgPatch: "org.patch" Patch "/orgs/{orgId}",
        Organization, read_only: false, min_role: Admin, 200,
        body: Some("orgPatch"), response: "org",
        "Updates information about an organization";
    OrgDelete: "org.delete" Delete "/orgs/{orgId}",
        Organization, read_only: false, min_role: Admin, 200,
        body: None, response: "success",
        "Deletes an organization";
    OrgInviteMember: "org.inviteMember" Post "/orgs/{orgId}/invites",
        Organization, read_only: false, min_role: Admin, 200,
        body: Some("orgInvitePost"), response: "orgInvites",
        "Invites a person to an organization (pending until they accept)";
    OrgPendingInvites: "org.pendingInvites" Get "/orgs/{orgId}/invites",
        Organization, read_only: true, min_role: Admin, 200,
        body: None, response: "orgInvites",
        "Gets the current pending invites";
    OrgRevokeInvite: "org.revokeInvite" Delete "/orgs/{orgId}/invites",
        Organization, read_only: false, min_role: Admin, 200,
        body: None, response: "orgInvites",
        "Revokes an existing invite";
    OrgModifyMember: "org.modifyMember" Patch "/orgs/{orgId}/member",
        Organization, read_only: false, min_role: Admin, 200,
        body: Some("orgMemberPatch"), response: "org",
        "Modifies a current org member's role";
    OrgRemoveMember: "org.removeMember" Delete "/orgs/{orgId}/member",
        Organization, read_only: false, min_role: Admin, 200,
        body: None, response: "org",
        "Removes a member from the org";
    AuditLogsGet: "auditLogs.get" Get "/orgs/{orgId}/audit-logs",
        Organization, read_only: true, min_role: Admin, 200,
        body: None, response: "auditLogs",
        "Returns the audit logs for the organization: who changed which token, application, device, flow, member or invitation, when and from where";
    AuditLogGet: "auditLog.get" Get "/orgs/{orgId}/audit-logs/{auditLogId}",
        Organization, read_only: true, min_role: Admin, 200,
        body: None, response: "auditLog",
        "Retrieves information on an audit log";
    OrgTokenPolicyGet: "orgTokenPolicy.get" Get "/orgs/{orgId}/token-policy",
        Organization, read_only: true, min_role: View, 200,
        body: None, response: "orgTokenPolicy",
        "Retrieves the organization's default token policy for its applications (maxLifetimeDays, expiryRequired, idleDeactivationDays, warningLeadDays; null: the built-in default) (extension: not in the reference API)";
    OrgTokenPolicyPatch: "orgTokenPolicy.patch" Patch "/orgs/{orgId}/token-policy",
        Organization, read_only: false, min_role: Admin, 200,
        body: Some("tokenPolicyPatch"), response: "orgTokenPolicy",
        "Changes the organization's default token policy (fields given only; null unsets one); no existing token is changed, the answer lists the tokens of its applications that break the new policy (extension: not in the reference API)";
    ApplicationsGet: "applications.get" Get "/applications",
        Organization, read_only: true, min_role: View, 200,
        body: None, response: "applications",
        "Returns the applications the current user has permission to see";
    ApplicationsPost: "applications.post" Post "/applications",
        Organization, read_only: false, min_role: Edit, 201,
        body: Some("applicationPost"), response: "application",
        "Create a new application";

    // --- inside one application ---
    ApplicationGet: "application.get" Get "/applications/{applicationId}",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "application",
        "Retrieves information on an application";
    ApplicationPatch: "application.patch" Patch "/applications/{applicationId}",
        Application, read_only: false, min_role: Collaborate, 200,
        body: Some("applicationPatch"), response: "application",
        "Updates information about an application";
    ApplicationDelete: "application.delete" Delete "/applications/{applicationId}",
        Application, read_only: false, min_role: Edit, 200,
        body: None, response: "success",
        "Deletes an application and everything it owns";
    ApplicationApiTokensGet: "applicationApiTokens.get" Get "/applications/{applicationId}/tokens",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "apiTokens",
        "Returns the API tokens for an application";
    ApplicationApiTokensPost: "applicationApiTokens.post" Post "/applications/{applicationId}/tokens",
        Application, read_only: false, min_role: Edit, 201,
        body: Some("applicationApiTokenPost"), response: "apiToken",
        "Create a new API token for an application";
    ApplicationApiTokenGet: "applicationApiToken.get" Get "/applications/{applicationId}/tokens/{apiTokenId}",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "apiToken",
        "Retrieves information on an API token";
    ApplicationApiTokenPatch: "applicationApiToken.patch" Patch "/applications/{applicationId}/tokens/{apiTokenId}",
        Application, read_only: false, min_role: Edit, 200,
        body: Some("apiTokenPatch"), response: "apiToken",
        "Updates information about an API token";
    ApplicationApiTokenDelete: "applicationApiToken.delete" Delete "/applications/{applicationId}/tokens/{apiTokenId}",
        Application, read_only: false, min_role: Edit, 200,
        body: None, response: "success",
        "Deletes an API token";
    ApplicationApiTokenUsage: "applicationApiToken.usage" Get "/applications/{applicationId}/tokens/{apiTokenId}/usage",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "tokenUsage",
        "What an API token did: requests per action in the last 1, 7, 30 and 90 days (authorized and refused), its last 100 requests, granted actions it did not use, and the narrowest scope that would have served it (extension: not in the reference API)";

    ApplicationApiTokenRoll: "applicationApiToken.roll" Post "/applications/{applicationId}/tokens/{apiTokenId}/roll",
        Application, read_only: false, min_role: Edit, 201,
        body: Some("apiTokenRoll"), response: "apiToken",
        "Replaces an API token with a new one (same name, description and scope; a new secret, shown once); the old one keeps working for overlapSeconds, then retires (extension: not in the reference API)";
    ApplicationApiTokenDescendants: "applicationApiToken.descendants" Get "/applications/{applicationId}/tokens/{apiTokenId}/descendants",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "apiTokenDescendants",
        "Lists the tokens created by an API token, by the tokens they created, and so on (nearest first, each with its depth and parentApiTokenId); they keep working when it is deleted or deactivated without cascade=true (extension: not in the reference API)";
    ApplicationAuditLogsGet: "applicationAuditLogs.get" Get "/applications/{applicationId}/audit-logs",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "auditLogs",
        "Returns the audit log of one application, with the query parameters of auditLogs.get (extension: not in the reference API; how the owner of a sandbox application, which has no organization, reads its log)";
    ApplicationTokenPolicyGet: "applicationTokenPolicy.get" Get "/applications/{applicationId}/token-policy",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "tokenPolicy",
        "Retrieves the application's effective token policy (its own fields over its organization's default over the built-in defaults, each with its source) and the tokens that break it (extension: not in the reference API)";
    ApplicationTokenPolicyPatch: "applicationTokenPolicy.patch" Patch "/applications/{applicationId}/token-policy",
        Application, read_only: false, min_role: Edit, 200,
        body: Some("tokenPolicyPatch"), response: "tokenPolicy",
        "Changes the application's own token policy (fields given only; null unsets one, so the organization's default applies): new tokens, rolls included, must satisfy it; no existing token is changed, the answer lists those that break it (extension: not in the reference API)";

    // --- token event webhooks (extensions; Losant's own `webhooks` are inbound, at /webhooks) ---
    ApplicationTokenWebhooksGet: "applicationTokenWebhooks.get" Get "/applications/{applicationId}/token-webhooks",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "tokenWebhooks",
        "Returns the webhook endpoints that receive an application's token events (extension: not in the reference API)";
    ApplicationTokenWebhooksPost: "applicationTokenWebhooks.post" Post "/applications/{applicationId}/token-webhooks",
        Application, read_only: false, min_role: Edit, 201,
        body: Some("tokenWebhookPost"), response: "tokenWebhookCreated",
        "Adds a webhook endpoint for token events (created, deleted, rolled, leaked, deactivated, expiring, expired, idle-deactivated, retired); its signing secret is in this answer only (extension: not in the reference API)";
    ApplicationTokenWebhookGet: "applicationTokenWebhook.get" Get "/applications/{applicationId}/token-webhooks/{webhookId}",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "tokenWebhook",
        "Retrieves a token-event webhook endpoint, with counts of its deliveries by status (extension: not in the reference API)";
    ApplicationTokenWebhookPatch: "applicationTokenWebhook.patch" Patch "/applications/{applicationId}/token-webhooks/{webhookId}",
        Application, read_only: false, min_role: Edit, 200,
        body: Some("tokenWebhookPatch"), response: "tokenWebhook",
        "Changes a token-event webhook endpoint's URL, events or enabled switch (extension: not in the reference API)";
    ApplicationTokenWebhookDelete: "applicationTokenWebhook.delete" Delete "/applications/{applicationId}/token-webhooks/{webhookId}",
        Application, read_only: false, min_role: Edit, 200,
        body: None, response: "success",
        "Deletes a token-event webhook endpoint and its queued deliveries (extension: not in the reference API)";
    ApplicationTokenWebhookDeliveries: "applicationTokenWebhook.deliveries" Get "/applications/{applicationId}/token-webhooks/{webhookId}/deliveries",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "tokenWebhookDeliveries",
        "Lists a webhook endpoint's deliveries, newest first (status pending, delivered or failed; attempts; last status code or error; next attempt) (extension: not in the reference API)";
    ApplicationTokenWebhookRetryDelivery: "applicationTokenWebhook.retryDelivery" Post "/applications/{applicationId}/token-webhooks/{webhookId}/deliveries/{deliveryId}/retry",
        Application, read_only: false, min_role: Edit, 200,
        body: None, response: "tokenWebhookDelivery",
        "Queues a delivery again now, with a new 24-hour retry window (extension: not in the reference API)";

    // --- devices ---
    DevicesGet: "devices.get" Get "/applications/{applicationId}/devices",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "devices",
        "Returns the devices for an application";
    DevicesPost: "devices.post" Post "/applications/{applicationId}/devices",
        Application, read_only: false, min_role: Collaborate, 201,
        body: Some("devicePost"), response: "device",
        "Create a new device for an application";
    DeviceGet: "device.get" Get "/applications/{applicationId}/devices/{deviceId}",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "device",
        "Retrieves information on a device";
    DevicePatch: "device.patch" Patch "/applications/{applicationId}/devices/{deviceId}",
        Application, read_only: false, min_role: Collaborate, 200,
        body: Some("devicePatch"), response: "device",
        "Updates information about a device";
    DeviceDelete: "device.delete" Delete "/applications/{applicationId}/devices/{deviceId}",
        Application, read_only: false, min_role: Collaborate, 200,
        body: None, response: "success",
        "Deletes a device and its state and commands";
    DeviceSendState: "device.sendState" Post "/applications/{applicationId}/devices/{deviceId}/state",
        Application, read_only: false, min_role: Collaborate, 200,
        body: Some("deviceStateOrStates"), response: "success",
        "Send the current state of the device (one report or an array of timed reports)";
    DeviceGetState: "device.getState" Get "/applications/{applicationId}/devices/{deviceId}/state",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "deviceStates",
        "Retrieve the last known state(s) of the device";
    DeviceGetCompositeState: "device.getCompositeState" Get "/applications/{applicationId}/devices/{deviceId}/compositeState",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "compositeDeviceState",
        "Retrieve the composite last complete state of the device";
    DeviceSendCommand: "device.sendCommand" Post "/applications/{applicationId}/devices/{deviceId}/command",
        Application, read_only: false, min_role: Collaborate, 200,
        body: Some("deviceCommand"), response: "success",
        "Send a command to a device";
    DeviceGetCommand: "device.getCommand" Get "/applications/{applicationId}/devices/{deviceId}/command",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "deviceCommands",
        "Retrieve the last known command(s) sent to the device";

    // --- data queries ---
    DataTimeSeriesQuery: "data.timeSeriesQuery" Post "/applications/{applicationId}/data/time-series-query",
        Application, read_only: true, min_role: View, 200,
        body: Some("timeSeriesQuery"), response: "timeSeriesData",
        "Returns the data for the given query";
    DataLastValueQuery: "data.lastValueQuery" Post "/applications/{applicationId}/data/last-value-query",
        Application, read_only: true, min_role: View, 200,
        body: Some("lastValueQuery"), response: "lastValueData",
        "Returns the last known data for the given attribute";

    // --- workflows (stored definitions) ---
    FlowsGet: "flows.get" Get "/applications/{applicationId}/flows",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "flows",
        "Returns the flows for an application";
    FlowsPost: "flows.post" Post "/applications/{applicationId}/flows",
        Application, read_only: false, min_role: Collaborate, 201,
        body: Some("flowPost"), response: "flow",
        "Create a new flow for an application";
    FlowGet: "flow.get" Get "/applications/{applicationId}/flows/{flowId}",
        Application, read_only: true, min_role: View, 200,
        body: None, response: "flow",
        "Retrieves information on a flow";
    FlowPatch: "flow.patch" Patch "/applications/{applicationId}/flows/{flowId}",
        Application, read_only: false, min_role: Collaborate, 200,
        body: Some("flowPatch"), response: "flow",
        "Updates information about a flow";
    FlowDelete: "flow.delete" Delete "/applications/{applicationId}/flows/{flowId}",
        Application, read_only: false, min_role: Collaborate, 200,
        body: None, response: "success",
        "Deletes a flow";
}

/// Registry lookups.
impl Action {
    pub fn def(self) -> &'static ActionDef {
        &REGISTRY[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The action called `name`, if the server implements it.
    pub fn from_name(name: &str) -> Option<Action> {
        REGISTRY.iter().find(|d| d.name == name).map(|d| d.action)
    }

    /// Actions an application API token can ever be granted, in registry order.
    pub fn application_actions() -> impl Iterator<Item = &'static ActionDef> {
        REGISTRY.iter().filter(|d| d.family == Family::Application)
    }
}

/// True if some application action belongs to `resource`.
pub fn is_application_resource(resource: &str) -> bool {
    Action::application_actions().any(|d| d.resource() == resource)
}

/// Application actions grouped by resource, in registry order: what the console's custom
/// permission checklist shows.
pub fn application_resources() -> Vec<(&'static str, Vec<&'static ActionDef>)> {
    let mut groups: Vec<(&'static str, Vec<&'static ActionDef>)> = Vec::new();
    for def in Action::application_actions() {
        match groups.iter_mut().find(|(r, _)| *r == def.resource()) {
            Some((_, defs)) => defs.push(def),
            None => groups.push((def.resource(), vec![def])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_indexed_by_action() {
        for (i, def) in REGISTRY.iter().enumerate() {
            assert_eq!(def.action as usize, i, "{} is out of place", def.name);
        }
        assert!(REGISTRY.len() <= crate::ActionSet::CAPACITY);
    }

    #[test]
    fn names_and_routes_are_unique() {
        for (i, a) in REGISTRY.iter().enumerate() {
            for b in &REGISTRY[i + 1..] {
                assert_ne!(a.name, b.name);
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} and {} share a route",
                    a.name,
                    b.name
                );
            }
        }
    }

    /// Every entry agrees with the reference catalog on method, path, family and read/write.
    #[test]
    fn registry_matches_reference_catalog() {
        let text = include_str!("../../../reference/losant-api/catalog.json");
        let catalog: serde_json::Value = serde_json::from_str(text).unwrap();
        let actions = catalog["actions"].as_array().unwrap();
        for def in REGISTRY {
            if def.is_extension() {
                assert!(
                    !actions.iter().any(|a| a["name"] == def.name),
                    "{} is in the reference catalog: it is not an extension",
                    def.name
                );
                continue;
            }
            let entry = actions
                .iter()
                .find(|a| a["name"] == def.name)
                .unwrap_or_else(|| panic!("{} is not in the catalog", def.name));
            assert_eq!(entry["method"], def.method.as_str(), "{}", def.name);
            assert_eq!(entry["path"], def.path, "{}", def.name);
            assert_eq!(
                entry["scopeFamily"],
                def.family.catalog_name(),
                "{}",
                def.name
            );
            assert_eq!(entry["readOnly"], def.read_only, "{}", def.name);
            let codes: Vec<u64> = entry["responses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["code"].as_u64().unwrap())
                .collect();
            assert!(codes.contains(&u64::from(def.success)), "{}", def.name);
        }
    }

    #[test]
    fn reads_need_view_and_writes_need_more() {
        for def in Action::application_actions() {
            if def.read_only {
                assert_eq!(def.min_role, Role::View, "{}", def.name);
            } else {
                assert!(def.min_role >= Role::Collaborate, "{}", def.name);
            }
        }
    }

    #[test]
    fn resources_group_in_registry_order() {
        let groups = application_resources();
        let names: Vec<&str> = groups.iter().map(|(r, _)| *r).collect();
        assert_eq!(names[0], "application");
        assert!(names.contains(&"applicationApiTokens"));
        let total: usize = groups.iter().map(|(_, d)| d.len()).sum();
        assert_eq!(total, Action::application_actions().count());
    }
}
