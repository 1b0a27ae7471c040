//! A fixed-size bitset over the registry: compiled scopes and role permissions.

use crate::registry::{Action, REGISTRY};

/// A set of registry actions, one bit each. Membership is a shift and a mask, so an
/// authorization decision costs a few instructions once a scope is compiled.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ActionSet([u64; 4]);

impl ActionSet {
    /// The largest registry this set can hold (the reference API has 237 application actions).
    pub const CAPACITY: usize = 256;

    pub const fn empty() -> Self {
        ActionSet([0; 4])
    }

    pub fn insert(&mut self, action: Action) {
        let i = action.index();
        self.0[i / 64] |= 1 << (i % 64);
    }

    #[inline]
    pub fn contains(&self, action: Action) -> bool {
        let i = action.index();
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    pub fn union(&self, other: &ActionSet) -> ActionSet {
        let mut out = *self;
        for (o, x) in out.0.iter_mut().zip(other.0) {
            *o |= x;
        }
        out
    }

    pub fn is_subset(&self, other: &ActionSet) -> bool {
        self.0.iter().zip(other.0).all(|(a, b)| a & !b == 0)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The actions in the set, in registry order.
    pub fn iter(&self) -> impl Iterator<Item = Action> + '_ {
        REGISTRY
            .iter()
            .map(|d| d.action)
            .filter(|a| self.contains(*a))
    }

    /// The set of registry actions for which `pred` holds.
    pub fn from_predicate(pred: impl Fn(&crate::ActionDef) -> bool) -> ActionSet {
        let mut set = ActionSet::empty();
        for def in REGISTRY.iter().filter(|d| pred(d)) {
            set.insert(def.action);
        }
        set
    }
}

impl std::fmt::Debug for ActionSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|a| a.name()))
            .finish()
    }
}

impl FromIterator<Action> for ActionSet {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Self {
        let mut set = ActionSet::empty();
        for a in iter {
            set.insert(a);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_union_subset() {
        let a: ActionSet = [Action::MeGet, Action::ApplicationGet]
            .into_iter()
            .collect();
        let b: ActionSet = [Action::ApplicationGet].into_iter().collect();
        assert!(a.contains(Action::MeGet));
        assert!(!b.contains(Action::MeGet));
        assert!(b.is_subset(&a));
        assert!(!a.is_subset(&b));
        assert_eq!(a.union(&b), a);
        assert_eq!(a.len(), 2);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![Action::MeGet, Action::ApplicationGet]
        );
        assert!(ActionSet::empty().is_empty());
    }
}
