//! eDeploy's decisions, in pure Rust: which hardware profile a machine gets, what its rules
//! capture, and which CMDB entry (address, hostname…) it receives — with the semantics of
//! eDeploy's successor library `hardware` (0.33), checked against it by a differential test.
//!
//! - [`rule`]: rules `[class, type, name, value]` parsed once ([`rule::RuleSet::parse`]).
//! - [`matcher`]: one report against one profile's rules ([`matcher::match_rules`]).
//! - [`profile`]: the profile a report gets ([`profile::select_profile`]).
//! - [`generate`]: `generate()` and the expanded CMDB ([`generate::expand_cmdb`]).
//! - [`cmdb`]: the entry a machine gets, and giving it back ([`cmdb::allocate`],
//!   [`cmdb::release`]).
//! - [`pyliteral`], [`edeploy`], [`import`]: importing an eDeploy configuration directory
//!   ([`import::import_edeploy_dir`]); `import` is the only module that touches the disk.
//!
//! `docs/matching.md` describes the semantics and every intended divergence.

pub mod cmdb;
pub mod edeploy;
pub mod generate;
pub mod import;
pub mod ipv4;
pub mod matcher;
pub mod profile;
pub mod pyliteral;
pub mod python;
pub mod rule;

pub use cmdb::{AllocationError, Choice, allocate, choose_entry, release};
pub use edeploy::{ImportError, ImportResult};
pub use generate::{Entry, GenerateError, expand_cmdb};
pub use import::import_edeploy_dir;
pub use matcher::{Captures, Hardware, Limits, Matcher, Outcome, match_rules};
pub use profile::{Candidate, CompiledProfile, PassedOver, Selection, select_profile};
pub use rule::{RuleError, RuleSet, RulesError};
