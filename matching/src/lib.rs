//! eDeploy's decisions, in pure Rust: which hardware profile a machine gets and which CMDB
//! entry it receives. No I/O.
