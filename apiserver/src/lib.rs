//! machinist's embedded control plane (`machinist up`).
//!
//! Not yet built: the API server arrives with the "Embedded control plane" issue. The crate
//! exists so the workspace has its final shape; it exports nothing that claims to work.
