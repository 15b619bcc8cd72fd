//! machinist's RAM-disk agent (`machinist-agent`): hardware inventory, report, install.
//!
//! Not yet built: the agent arrives with the "RAM-disk agent" issue. The crate exists so the
//! workspace has its final shape; it exports nothing that claims to work.
