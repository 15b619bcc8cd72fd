//! The install tests' system image: `machinist_lab::system` (what `machinist up --demo`
//! installs), built once per process into this crate's cache ([`cache_root`]).

use std::sync::OnceLock;

pub use machinist_lab::system::{BOOTED, INIT_SCRIPT, NETWORK, PHONED_HOME, PROGRAMS, SystemImage};

use crate::boot::{Error, Result, cache_root};

/// The image, built the first time (cached on disk) and once per process.
pub fn get() -> Result<SystemImage> {
    static IMAGE: OnceLock<Result<SystemImage, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| SystemImage::build_cached(&cache_root()).map_err(|e| e.to_string()))
        .clone()
        .map_err(Error::Setup)
}
