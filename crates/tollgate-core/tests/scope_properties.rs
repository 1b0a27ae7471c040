//! Property tests of the scope rules over hypothetical registries.
//!
//! "Including actions added later" is a promise about registries that do not exist yet, so
//! these tests invent them: a random registry today, random scopes over it, and random future
//! registries that add actions to existing and brand-new resources. Two of the resources are
//! the token resources, so `all.Application.bounded` (everything but their writes) meets
//! future token reads and writes as well as future actions elsewhere.

use proptest::prelude::*;
use tollgate_core::scope::{ActionMeta, Grant, TOKEN_RESOURCES, allows, bounded_covers, excess};
use tollgate_core::{Action, Scope};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TestAction {
    resource: String,
    verb: String,
    read_only: bool,
}

impl ActionMeta for TestAction {
    fn resource(&self) -> &str {
        &self.resource
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
}

const RESOURCES: usize = 5;

/// Resource `i`'s name: 3 and 4 are the token resources `all.Application.bounded` treats apart.
fn resource_name(i: usize) -> String {
    match i {
        3 => TOKEN_RESOURCES[0].to_owned(),
        4 => TOKEN_RESOURCES[1].to_owned(),
        i => format!("r{i}"),
    }
}

fn action_in(resource: usize, verb: usize, read_only: bool) -> TestAction {
    TestAction {
        resource: resource_name(resource),
        verb: format!("v{verb}"),
        read_only,
    }
}

/// A registry of today: a few actions in each of a few resources.
fn registry() -> impl Strategy<Value = Vec<TestAction>> {
    prop::collection::vec((0..RESOURCES, any::<bool>()), 1..16).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (r, ro))| action_in(r, i, ro))
            .collect()
    })
}

fn grant(registry: &[TestAction]) -> impl Strategy<Value = Grant<TestAction>> + use<> {
    let actions = registry.to_vec();
    prop_oneof![
        1 => Just(Grant::All),
        2 => Just(Grant::AllRead),
        2 => Just(Grant::AllBounded),
        3 => (0..RESOURCES).prop_map(|r| Grant::Resource(resource_name(r))),
        6 => prop::sample::select(actions).prop_map(Grant::Action),
    ]
}

fn scope(registry: &[TestAction]) -> impl Strategy<Value = Vec<Grant<TestAction>>> + use<> {
    prop::collection::vec(grant(registry), 1..5)
}

/// Today's registry, two scopes over it, and a future registry that extends it.
fn world() -> impl Strategy<
    Value = (
        Vec<TestAction>,
        Vec<Grant<TestAction>>,
        Vec<Grant<TestAction>>,
    ),
> {
    registry().prop_flat_map(|reg| {
        let future_additions = prop::collection::vec((0..RESOURCES + 3, any::<bool>()), 0..8);
        (scope(&reg), scope(&reg), future_additions, Just(reg)).prop_map(
            |(child, parent, additions, mut reg)| {
                let base = reg.len();
                for (i, (r, ro)) in additions.into_iter().enumerate() {
                    reg.push(action_in(r, 1000 + base + i, ro));
                }
                (reg, child, parent)
            },
        )
    })
}

/// Every resource gets a new read and a new write action, and a brand-new resource appears.
fn worst_future(today: &[TestAction]) -> Vec<TestAction> {
    let mut reg = today.to_vec();
    for r in 0..=RESOURCES {
        reg.push(action_in(r, 9000 + 2 * r, true));
        reg.push(action_in(r, 9001 + 2 * r, false));
    }
    reg
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Soundness: a child accepted today never grants, in any future registry, an action its
    /// parent does not.
    #[test]
    fn accepted_child_stays_within_parent_forever((future, child, parent) in world()) {
        if excess(&child, &parent).is_empty() {
            for a in &future {
                prop_assert!(
                    !allows(&child, a) || allows(&parent, a),
                    "child {child:?} grants {a:?} that parent {parent:?} does not"
                );
            }
        }
    }

    /// Completeness: a refused child really could outgrow its parent: in the registry where
    /// every resource gains a read and a write action, it grants something the parent does not.
    #[test]
    fn refused_child_can_outgrow_parent((today, child, parent) in world()) {
        if !excess(&child, &parent).is_empty() {
            let future = worst_future(&today);
            prop_assert!(
                future.iter().any(|a| allows(&child, a) && !allows(&parent, a)),
                "child {child:?} was refused but never exceeds {parent:?}"
            );
        }
    }

    /// Every scope is within itself and within `all.Application`.
    #[test]
    fn within_is_reflexive_and_all_is_top((_reg, child, _parent) in world()) {
        prop_assert!(excess(&child, &child).is_empty());
        prop_assert!(excess(&child, &[Grant::All]).is_empty());
    }

    /// `all.Application.bounded` grants, in any future registry, every action `all.Application`
    /// does except the writes of the token resources, and every read.
    #[test]
    fn bounded_is_all_but_token_writes((future, _child, _parent) in world()) {
        for a in &future {
            let token_write = !a.read_only && TOKEN_RESOURCES.contains(&a.resource.as_str());
            prop_assert_eq!(allows(&[Grant::AllBounded], a), !token_write, "{:?}", a);
            prop_assert_eq!(bounded_covers(a), !token_write);
            if a.read_only {
                prop_assert!(allows(&[Grant::AllBounded], a));
            }
        }
    }

    /// Within is transitive.
    #[test]
    fn within_is_transitive(
        (reg, a, b) in world(),
        extra in prop::collection::vec(0usize..RESOURCES, 0..3),
    ) {
        let c: Vec<Grant<TestAction>> = b
            .iter()
            .cloned()
            .chain(extra.into_iter().map(|r| Grant::Resource(resource_name(r))))
            .collect();
        let _ = reg;
        if excess(&a, &b).is_empty() && excess(&b, &c).is_empty() {
            prop_assert!(excess(&a, &c).is_empty());
        }
    }

    /// On the real registry, an accepted child's compiled set is a subset of its parent's.
    #[test]
    fn real_registry_compiled_sets_agree(
        child in prop::collection::vec(real_scope_string(), 1..5),
        parent in prop::collection::vec(real_scope_string(), 1..5),
    ) {
        let child = Scope::parse(&child).unwrap();
        let parent = Scope::parse(&parent).unwrap();
        if child.within(&parent).is_ok() {
            prop_assert!(child.compile().is_subset(&parent.compile()));
        }
        for def in Action::application_actions() {
            prop_assert_eq!(child.compile().contains(def.action), allows(child.grants(), &def.action));
        }
    }
}

fn real_scope_string() -> impl Strategy<Value = String> {
    let mut strings = vec![
        "all.Application".to_owned(),
        "all.Application.read".to_owned(),
        "all.Application.bounded".to_owned(),
    ];
    for def in Action::application_actions() {
        strings.push(def.name.to_owned());
        strings.push(format!("{}.*", def.resource()));
    }
    prop::sample::select(strings)
}
