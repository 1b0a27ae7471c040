//! Scope grammar, matching, and the "no stronger than its creator" test.
//!
//! An application API token's scope is a list of grants:
//!
//! | string                  | grants                                                        |
//! |-------------------------|---------------------------------------------------------------|
//! | `all.Application`       | every application action, including ones added later          |
//! | `all.Application.read`  | every read action, including read actions added later         |
//! | `all.Application.bounded` | every application action except the writes of token management |
//! |                         | (`applicationApiTokens.post`, `applicationApiToken.patch`/`.delete`), |
//! |                         | including actions added later (a new write of a token resource is |
//! |                         | excluded, anything else included): the reference catalog's lists |
//! | `<resource>.*`          | every action of that resource, including ones added later     |
//! | `<resource>.<action>`   | exactly that action                                           |
//!
//! The matching rules are written once, generically over [`ActionMeta`], so that the property
//! tests can run them over hypothetical future registries: "including ones added later" is
//! checked, not assumed.

use std::collections::BTreeSet;
use std::fmt;

use crate::actionset::ActionSet;
use crate::registry::{Action, ActionDef, Family, REGISTRY, is_application_resource};

pub const ALL_APPLICATION: &str = "all.Application";
pub const ALL_APPLICATION_READ: &str = "all.Application.read";
pub const ALL_APPLICATION_BOUNDED: &str = "all.Application.bounded";

/// The resources whose write actions `all.Application.bounded` leaves out: token management.
/// Their read actions (listing and reading tokens) are in it, as in the reference catalog.
pub const TOKEN_RESOURCES: [&str; 2] = ["applicationApiTokens", "applicationApiToken"];

/// Is `action` one `all.Application.bounded` grants? (Everything but writes of tokens.)
pub fn bounded_covers<A: ActionMeta>(action: &A) -> bool {
    action.read_only() || !TOKEN_RESOURCES.contains(&action.resource())
}

/// What the matching rules need to know about an action.
pub trait ActionMeta {
    fn resource(&self) -> &str;
    fn read_only(&self) -> bool;
}

impl ActionMeta for Action {
    fn resource(&self) -> &str {
        self.def().resource()
    }
    fn read_only(&self) -> bool {
        self.def().read_only
    }
}

/// One element of a scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grant<A> {
    All,
    AllRead,
    /// `all.Application.bounded`.
    AllBounded,
    Resource(String),
    Action(A),
}

impl<A: ActionMeta + PartialEq> Grant<A> {
    /// Does this grant allow `action`? (The one definition of what a grant means.)
    pub fn covers(&self, action: &A) -> bool {
        match self {
            Grant::All => true,
            Grant::AllRead => action.read_only(),
            Grant::AllBounded => bounded_covers(action),
            Grant::Resource(r) => action.resource() == r,
            Grant::Action(a) => a == action,
        }
    }

    /// Is every action this grant could ever allow — now or after actions are added to the
    /// registry — allowed by `parent`?
    ///
    /// A wildcard reaches actions that do not exist yet, so only a parent wildcard at least as
    /// wide covers it: `all.Application.read` may later include a read action of a brand-new
    /// resource, which only `all.Application` or `all.Application.read` is sure to grant; a
    /// `device.*` may later include a new write action of `device`, which only `device.*`,
    /// `all.Application.bounded` or `all.Application` is sure to grant. An explicit action is
    /// fixed, so any parent grant that covers it will do. `all.Application.bounded` grants every
    /// read (so it covers `all.Application.read`) and every action of a resource other than the
    /// token resources (so it covers their `<resource>.*`).
    pub fn within(&self, parent: &[Grant<A>]) -> bool {
        match self {
            // `all.Application.bounded` plus both token wildcards is everything, now and later.
            Grant::All => {
                parent.iter().any(|p| matches!(p, Grant::All))
                    || (parent.contains(&Grant::AllBounded)
                        && TOKEN_RESOURCES.iter().all(|t| {
                            parent
                                .iter()
                                .any(|p| matches!(p, Grant::Resource(q) if q == t))
                        }))
            }
            Grant::AllBounded => parent
                .iter()
                .any(|p| matches!(p, Grant::All | Grant::AllBounded)),
            Grant::AllRead => parent
                .iter()
                .any(|p| matches!(p, Grant::All | Grant::AllBounded | Grant::AllRead)),
            Grant::Resource(r) => parent.iter().any(|p| match p {
                Grant::All => true,
                Grant::AllBounded => !TOKEN_RESOURCES.contains(&r.as_str()),
                Grant::Resource(q) => q == r,
                _ => false,
            }),
            Grant::Action(a) => parent.iter().any(|p| p.covers(a)),
        }
    }
}

/// The grants of `child` that `parent` does not cover (empty: the child is within the parent).
pub fn excess<'c, A: ActionMeta + PartialEq>(
    child: &'c [Grant<A>],
    parent: &[Grant<A>],
) -> Vec<&'c Grant<A>> {
    child.iter().filter(|g| !g.within(parent)).collect()
}

/// Every scope string that grants `action` (the catalog's `scopes` list, application part):
/// what a 403 names and the `scope` of its `WWW-Authenticate` challenge.
pub fn granting(action: &Action) -> Vec<String> {
    let def = action.def();
    let candidates = [
        Grant::Action(*action),
        Grant::Resource(def.resource().to_owned()),
        Grant::All,
        Grant::AllBounded,
        Grant::AllRead,
    ];
    candidates
        .into_iter()
        .filter(|g| g.covers(action))
        .map(|g| g.to_string())
        .collect()
}

/// Is `action` allowed by any grant of `scope`?
pub fn allows<A: ActionMeta + PartialEq>(scope: &[Grant<A>], action: &A) -> bool {
    scope.iter().any(|g| g.covers(action))
}

impl fmt::Display for Grant<Action> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::All => f.write_str(ALL_APPLICATION),
            Grant::AllRead => f.write_str(ALL_APPLICATION_READ),
            Grant::AllBounded => f.write_str(ALL_APPLICATION_BOUNDED),
            Grant::Resource(r) => write!(f, "{r}.*"),
            Grant::Action(a) => f.write_str(a.name()),
        }
    }
}

/// How the console summarizes a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    All,
    Bounded,
    ReadOnly,
    Custom,
}

impl Summary {
    pub fn label(self) -> &'static str {
        match self {
            Summary::All => "All permissions",
            Summary::Bounded => "All permissions except managing API tokens",
            Summary::ReadOnly => "Read only",
            Summary::Custom => "Custom permissions",
        }
    }
}

/// Why a list of scope strings was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    /// Every unknown string, in order; the message names the first five and counts the rest.
    #[error(
        "unknown scope {}: expected all.Application, all.Application.bounded, all.Application.read, <resource>.* or <resource>.<action> naming an application action this server implements",
        first_few(.0)
    )]
    Unknown(Vec<String>),
    #[error("scope is empty: a token must be granted at least one permission")]
    Empty,
}

/// "a, b, c, d, e and 19995 more".
fn first_few(items: &[String]) -> String {
    const NAMED: usize = 5;
    let mut out = items
        .iter()
        .take(NAMED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > NAMED {
        out.push_str(&format!(" and {} more", items.len() - NAMED));
    }
    out
}

/// A parsed application-token scope over the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    grants: Vec<Grant<Action>>,
}

impl Scope {
    /// `["all.Application"]`: the default when a token is created without a scope.
    pub fn all() -> Scope {
        Scope {
            grants: vec![Grant::All],
        }
    }

    /// `["all.Application.read"]`.
    pub fn read_only() -> Scope {
        Scope {
            grants: vec![Grant::AllRead],
        }
    }

    /// A scope from grants built in code (role bounds); may be empty.
    pub(crate) fn from_grants(grants: Vec<Grant<Action>>) -> Scope {
        Scope { grants }
    }

    /// Explicit actions, as the console's custom checklist produces them.
    pub fn actions(actions: impl IntoIterator<Item = Action>) -> Scope {
        Scope {
            grants: actions.into_iter().map(Grant::Action).collect(),
        }
    }

    /// Parse scope strings; every unknown string is named in the error. Duplicates collapse.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Scope, ScopeError> {
        let mut grants = Vec::new();
        let mut unknown = Vec::new();
        for item in items {
            let s = item.as_ref();
            match parse_grant(s) {
                Some(g) if !grants.contains(&g) => grants.push(g),
                Some(_) => {}
                None => unknown.push(shown(s)),
            }
        }
        if !unknown.is_empty() {
            return Err(ScopeError::Unknown(unknown));
        }
        if grants.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(Scope { grants })
    }

    pub fn grants(&self) -> &[Grant<Action>] {
        &self.grants
    }

    /// The scope as the API shows it.
    pub fn to_strings(&self) -> Vec<String> {
        self.grants.iter().map(|g| g.to_string()).collect()
    }

    /// The set of registry actions this scope allows today. Only application actions: an
    /// application token never reaches user or organization actions.
    pub fn compile(&self) -> ActionSet {
        ActionSet::from_predicate(|d: &ActionDef| {
            d.family == Family::Application && allows(&self.grants, &d.action)
        })
    }

    /// `Ok` if every action this scope could ever allow is allowed by `parent`; otherwise the
    /// grants that reach further than the parent does.
    pub fn within(&self, parent: &Scope) -> Result<(), Vec<String>> {
        let over = excess(&self.grants, &parent.grants);
        if over.is_empty() {
            Ok(())
        } else {
            Err(over.into_iter().map(|g| g.to_string()).collect())
        }
    }

    pub fn summary(&self) -> Summary {
        if self.grants.contains(&Grant::All) {
            Summary::All
        } else if self.grants == [Grant::AllBounded] {
            Summary::Bounded
        } else if self.grants == [Grant::AllRead] {
            Summary::ReadOnly
        } else {
            Summary::Custom
        }
    }

    /// The actions the console lists for a custom scope (what it allows today).
    pub fn listed_actions(&self) -> BTreeSet<&'static str> {
        self.compile().iter().map(|a| a.name()).collect()
    }
}

/// How an unknown scope string is named in an error: as given, except that anything with a
/// secret's shape is hidden ([`crate::secret::redact`]: a token pasted by mistake, however
/// quoted or cased) and a string too long to be a scope name is cut short.
fn shown(s: &str) -> String {
    let s = crate::secret::redact(s);
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.into_owned()
    }
}

fn parse_grant(s: &str) -> Option<Grant<Action>> {
    match s {
        ALL_APPLICATION => return Some(Grant::All),
        ALL_APPLICATION_READ => return Some(Grant::AllRead),
        ALL_APPLICATION_BOUNDED => return Some(Grant::AllBounded),
        _ => {}
    }
    if let Some(resource) = s.strip_suffix(".*") {
        return is_application_resource(resource).then(|| Grant::Resource(resource.to_owned()));
    }
    REGISTRY
        .iter()
        .find(|d| d.family == Family::Application && d.name == s)
        .map(|d| Grant::Action(d.action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(items: &[&str]) -> Scope {
        Scope::parse(items).unwrap()
    }

    #[test]
    fn parses_the_four_forms() {
        assert_eq!(scope(&["all.Application"]).grants(), &[Grant::All]);
        assert_eq!(scope(&["all.Application.read"]).grants(), &[Grant::AllRead]);
        assert_eq!(
            scope(&["applicationApiTokens.*"]).grants(),
            &[Grant::Resource("applicationApiTokens".into())]
        );
        assert_eq!(
            scope(&["application.get"]).grants(),
            &[Grant::Action(Action::ApplicationGet)]
        );
    }

    #[test]
    fn unknown_strings_are_all_named() {
        let err = Scope::parse(&["application.get", "nope", "all.Device", "orgs.get", "me.*"])
            .unwrap_err();
        assert_eq!(
            err,
            ScopeError::Unknown(vec![
                "nope".into(),
                "all.Device".into(),
                "orgs.get".into(),
                "me.*".into()
            ])
        );
        assert!(err.to_string().contains("nope, all.Device, orgs.get, me.*"));
        let many: Vec<String> = (0..20_000).map(|i| format!("bogus{i}")).collect();
        let text = Scope::parse(&many).unwrap_err().to_string();
        assert!(
            text.starts_with(
                "unknown scope bogus0, bogus1, bogus2, bogus3, bogus4 and 19995 more:"
            ),
            "{text}"
        );
        assert!(text.len() < 400, "{}", text.len());
        assert_eq!(Scope::parse::<&str>(&[]).unwrap_err(), ScopeError::Empty);
        let pasted = crate::secret::Secret::generate(crate::secret::SecretKind::ApplicationToken);
        let err = Scope::parse(&[pasted.expose()]).unwrap_err().to_string();
        assert!(!err.contains(&pasted.expose()[5..]), "{err}");
        assert!(err.contains(crate::secret::REDACTED), "{err}");
    }

    #[test]
    fn compile_table() {
        let cases: &[(&[&str], Action, bool)] = &[
            (&["all.Application"], Action::ApplicationDelete, true),
            (&["all.Application"], Action::MeGet, false),
            (&["all.Application"], Action::OrgsGet, false),
            (&["all.Application.read"], Action::ApplicationGet, true),
            (
                &["all.Application.read"],
                Action::ApplicationApiTokensGet,
                true,
            ),
            (&["all.Application.read"], Action::ApplicationPatch, false),
            (
                &["all.Application.read"],
                Action::ApplicationApiTokensPost,
                false,
            ),
            (
                &["applicationApiTokens.*"],
                Action::ApplicationApiTokensPost,
                true,
            ),
            (
                &["applicationApiTokens.*"],
                Action::ApplicationApiTokenGet,
                false,
            ),
            (&["application.get"], Action::ApplicationGet, true),
            (&["application.get"], Action::ApplicationPatch, false),
        ];
        for (items, action, expected) in cases {
            assert_eq!(
                scope(items).compile().contains(*action),
                *expected,
                "{items:?} / {}",
                action.name()
            );
        }
    }

    #[test]
    fn within_table() {
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["all.Application"], &["all.Application"], true),
            (&["all.Application.read"], &["all.Application"], true),
            (&["all.Application"], &["all.Application.read"], false),
            (&["application.get"], &["all.Application.read"], true),
            (&["application.patch"], &["all.Application.read"], false),
            (&["application.*"], &["all.Application.read"], false),
            // Every application action today, listed explicitly, still cannot mint a wildcard.
            (
                &["application.*"],
                &["application.get", "application.patch", "application.delete"],
                false,
            ),
            (&["application.get"], &["application.*"], true),
            (&["application.*"], &["application.*"], true),
            (
                &["application.get", "application.patch"],
                &["application.get"],
                false,
            ),
            (
                &["all.Application.read"],
                &["application.*", "applicationApiTokens.*"],
                false,
            ),
        ];
        for (child, parent, expected) in cases {
            assert_eq!(
                scope(child).within(&scope(parent)).is_ok(),
                *expected,
                "{child:?} within {parent:?}"
            );
        }
        assert_eq!(
            scope(&["application.get", "application.*"]).within(&scope(&["application.get"])),
            Err(vec!["application.*".to_owned()])
        );
    }

    /// `all.Application.bounded` grants exactly the application actions whose `scopes` list it
    /// appears in, over the whole reference catalog (implemented actions or not), and the
    /// strings `granting` names are exactly the catalog's application-scope strings.
    #[test]
    fn bounded_matches_the_reference_catalog() {
        struct Entry {
            resource: String,
            read_only: bool,
        }
        impl ActionMeta for Entry {
            fn resource(&self) -> &str {
                &self.resource
            }
            fn read_only(&self) -> bool {
                self.read_only
            }
        }
        let text = include_str!("../../../reference/losant-api/catalog.json");
        let catalog: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut application = 0;
        let mut excluded = Vec::new();
        for a in catalog["actions"].as_array().unwrap() {
            if a["scopeFamily"] != "application" {
                continue;
            }
            application += 1;
            let scopes: Vec<&str> = a["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            let entry = Entry {
                resource: a["resource"].as_str().unwrap().to_owned(),
                read_only: a["readOnly"].as_bool().unwrap(),
            };
            let name = a["name"].as_str().unwrap();
            assert_eq!(
                bounded_covers(&entry),
                scopes.contains(&ALL_APPLICATION_BOUNDED),
                "{name}"
            );
            if !bounded_covers(&entry) {
                excluded.push(name.to_owned());
            }
            if let Some(def) = REGISTRY.iter().find(|d| d.name == name) {
                let mut expected: Vec<&str> = scopes
                    .iter()
                    .copied()
                    .filter(|s| s.starts_with("all.Application") || !s.starts_with("all."))
                    .filter(|s| *s != "all.Application.cli")
                    .collect();
                expected.sort();
                let mut named = granting(&def.action);
                named.sort();
                // The catalog lets `application.get` grant a few other reads (its grantedBy).
                if a["grantedBy"] == name {
                    assert_eq!(named, expected, "{name}");
                }
            }
        }
        excluded.sort();
        assert!(application > 200, "{application}");
        assert_eq!(
            excluded,
            [
                "applicationApiToken.delete",
                "applicationApiToken.patch",
                "applicationApiTokens.post"
            ]
        );
    }

    #[test]
    fn bounded_table() {
        let s = scope(&["all.Application.bounded"]);
        assert!(s.compile().contains(Action::ApplicationDelete));
        assert!(s.compile().contains(Action::ApplicationApiTokensGet));
        assert!(!s.compile().contains(Action::ApplicationApiTokensPost));
        assert!(!s.compile().contains(Action::MeGet));
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["all.Application.bounded"], &["all.Application"], true),
            (&["all.Application"], &["all.Application.bounded"], false),
            (
                &["all.Application.read"],
                &["all.Application.bounded"],
                true,
            ),
            (
                &["all.Application.bounded"],
                &["all.Application.read"],
                false,
            ),
            (&["device.*"], &["all.Application.bounded"], true),
            (
                &["applicationApiTokens.*"],
                &["all.Application.bounded"],
                false,
            ),
            (
                &["applicationApiTokens.get"],
                &["all.Application.bounded"],
                true,
            ),
            (
                &["applicationApiTokens.post"],
                &["all.Application.bounded"],
                false,
            ),
        ];
        for (child, parent, expected) in cases {
            assert_eq!(
                scope(child).within(&scope(parent)).is_ok(),
                *expected,
                "{child:?} within {parent:?}"
            );
        }
        assert_eq!(s.summary(), Summary::Bounded);
        assert_eq!(s.to_strings(), ["all.Application.bounded"]);
    }

    #[test]
    fn summaries() {
        assert_eq!(scope(&["all.Application"]).summary(), Summary::All);
        assert_eq!(
            scope(&["all.Application.read"]).summary(),
            Summary::ReadOnly
        );
        assert_eq!(scope(&["application.get"]).summary(), Summary::Custom);
        assert_eq!(Summary::ReadOnly.label(), "Read only");
    }

    #[test]
    fn duplicates_collapse_and_strings_round_trip() {
        let s = scope(&["application.get", "application.get", "application.*"]);
        assert_eq!(s.to_strings(), vec!["application.get", "application.*"]);
    }
}
