//! Rules that are more than a permission check, in one place for every client of them: the
//! REST handlers (`api`) and the console (`console`) call these functions and only word
//! the answers differently.

pub mod lifecycle;
pub mod lineage;
pub mod policy;
pub mod tokens;
pub mod webhooks;
