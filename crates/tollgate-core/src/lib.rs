//! Tollgate's pure logic: what actions exist, what a scope grants, what a role may do, and what
//! a bearer secret looks like. Nothing here performs I/O, so all of it is tested in isolation
//! (table tests and property tests) and benchmarked in `benches/core.rs`.

pub mod actionset;
pub mod attribute;
pub mod permissions;
pub mod registry;
pub mod restrictions;
pub mod role;
pub mod scope;
pub mod secret;
pub mod timeseries;

pub use actionset::ActionSet;
pub use registry::{Action, ActionDef, Family, Method, REGISTRY};
pub use role::Role;
pub use scope::{Grant, Scope, ScopeError, Summary};
