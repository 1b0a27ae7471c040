//! What each organization role may do, derived from the registry's `min_role`.

use crate::actionset::ActionSet;
use crate::registry::{Action, Family, REGISTRY};
use crate::role::Role;
use crate::scope::{Grant, Scope};

/// The organization and application actions a member with `role` may perform.
/// (User-family actions need only a login; public ones need nothing.)
pub fn role_actions(role: Role) -> ActionSet {
    if role == Role::None {
        return ActionSet::empty();
    }
    ActionSet::from_predicate(|d| {
        matches!(d.family, Family::Organization | Family::Application) && d.min_role <= role
    })
}

/// The strongest token scope a user with `role` in an application may create: users are
/// bounded by their role just as tokens are bounded by their own scope.
pub fn role_token_bound(role: Role) -> Scope {
    let grants = match role {
        // Every application action needs at most `edit`, today; and the rule for future
        // actions is the same (nothing inside an application is reserved to admins).
        Role::Admin | Role::Edit => vec![Grant::All],
        Role::Collaborate => {
            let mut g = vec![Grant::AllRead];
            g.extend(
                Action::application_actions()
                    .filter(|d| !d.read_only && d.min_role <= Role::Collaborate)
                    .map(|d| Grant::Action(d.action)),
            );
            g
        }
        Role::View => vec![Grant::AllRead],
        Role::None => vec![],
    };
    Scope::from_grants(grants)
}

/// The README's permission table: one row per action, one column per role.
pub fn permission_table_markdown() -> String {
    let mut out = String::from(
        "| action | method and path | view | collaborate | edit | admin |\n|---|---|---|---|---|---|\n",
    );
    for def in REGISTRY {
        let cells: Vec<&str> = [Role::View, Role::Collaborate, Role::Edit, Role::Admin]
            .into_iter()
            .map(|role| match def.family {
                Family::Public => "anyone",
                Family::User => "any user",
                _ if def.min_role <= role => "yes",
                _ => "—",
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | `{} {}` | {} |\n",
            def.name,
            def.method.as_str(),
            def.path,
            cells.join(" | ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table() {
        let cases = [
            (Role::View, Action::ApplicationGet, true),
            (Role::View, Action::ApplicationApiTokensGet, true),
            (Role::View, Action::ApplicationPatch, false),
            (Role::Collaborate, Action::ApplicationPatch, true),
            (Role::Collaborate, Action::ApplicationApiTokensPost, false),
            (Role::Collaborate, Action::ApplicationDelete, false),
            (Role::Edit, Action::ApplicationApiTokensPost, true),
            (Role::Edit, Action::ApplicationDelete, true),
            (Role::Edit, Action::ApplicationsPost, true),
            (Role::Edit, Action::OrgPatch, false),
            (Role::Admin, Action::OrgInviteMember, true),
            (Role::None, Action::ApplicationGet, false),
            (Role::Admin, Action::MeGet, false),
        ];
        for (role, action, expected) in cases {
            assert_eq!(
                role_actions(role).contains(action),
                expected,
                "{role} {}",
                action.name()
            );
        }
    }

    #[test]
    fn roles_only_grow() {
        for pair in Role::ALL.windows(2) {
            assert!(role_actions(pair[0]).is_subset(&role_actions(pair[1])));
        }
    }

    #[test]
    fn token_bounds_match_role_actions() {
        for role in Role::ALL {
            let bound = role_token_bound(role).compile();
            let can = role_actions(role);
            for def in Action::application_actions() {
                assert_eq!(
                    bound.contains(def.action),
                    can.contains(def.action),
                    "{role} {}",
                    def.name
                );
            }
        }
    }

    #[test]
    fn readme_table_has_a_row_per_action() {
        let t = permission_table_markdown();
        assert_eq!(t.lines().count(), REGISTRY.len() + 2);
        assert!(t.contains("| `applicationApiTokens.post` | `POST /applications/{applicationId}/tokens` | — | — | yes | yes |"));
    }
}
