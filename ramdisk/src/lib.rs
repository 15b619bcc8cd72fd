//! machinist's RAM disk: a Debian kernel and a small, reproducible initramfs built around a
//! static busybox, the NIC and disk drivers of the kernel package, and the agent.
//!
//! ```no_run
//! use machinist_ramdisk::{RamdiskRecipe, build_cached};
//! let recipe = RamdiskRecipe::production(Some("target/x86_64-unknown-linux-musl/release/machinist-agent".into()));
//! let built = build_cached(&recipe, std::path::Path::new(".machinist/ramdisk-cache"))?;
//! println!("{} {} ({} bytes)", built.kernel.display(), built.initrd.display(), built.manifest.initrd_size);
//! # Ok::<(), machinist_ramdisk::Error>(())
//! ```
//!
//! How (see `docs/ramdisk.md`): the kernel package is the one `linux-image-amd64` depends on
//! unless named ([`kernel`]: `apt-get download` once into a cache, `dpkg -x`); the wanted
//! modules and their dependencies are ordered from each module's `depends=` field, built-in
//! ones (`modules.builtin`) and missing ones left out with a warning, and indexed for
//! `modprobe` (`modules.dep`, `modules.alias`) so that `/init` loads the drivers of the PCI
//! devices present only ([`modules`]); the files their `firmware=` fields name come from
//! firmware directories and Debian firmware packages, missing ones a warning ([`firmware`]);
//! dynamically linked programs (kexec-tools' `kexec`) come with their dynamic loader and
//! libraries, all from Debian packages ([`programs`]);
//! the image ([`layout`]) holds busybox with its applet links, the agent, the programs, the modules, their
//! load order and index, the firmware, a `udhcpc` script and `/init` ([`init`]); it is written
//! as a `newc` cpio archive with fixed owners, times and inode numbers in path order
//! ([`image`]) and compressed with `gzip -6 -n`, so the same inputs give the same bytes.
//! [`build_cached`] keys a cache by the kernel package and [`recipe_hash`](recipe::recipe_hash).
//!
//! Host programs: `apt-cache`, `apt-get`, `dpkg`, `dpkg-deb`, `gzip` and a static `busybox`
//! (`busybox-static`).

mod build;
pub mod elf;
mod error;
pub mod firmware;
pub mod image;
pub mod init;
pub mod kernel;
pub mod layout;
mod manifest;
pub mod modules;
pub mod programs;
pub mod recipe;
pub mod run;

pub use build::{DOWNLOADS_DIR, INITRD_FILE, KERNEL_FILE, build, build_cached};
pub use error::{Error, Result};
pub use firmware::FirmwareSources;
pub use init::{Init, ModuleLoading};
pub use manifest::{Built, MANIFEST_FILE, Manifest};
pub use programs::{PackageFile, Program};
pub use recipe::{PRODUCTION_FIRMWARE_PACKAGES, PRODUCTION_MODULES, RamdiskRecipe};
