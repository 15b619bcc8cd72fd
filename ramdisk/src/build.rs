//! Building: gather the kernel, modules, busybox, agent and programs, compose the image, write
//! `vmlinuz`, `initrd.gz` and `manifest.json`; and the cache of finished builds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::elf::is_static_elf64;
use crate::error::{Error, Result, io};
use crate::firmware::{FirmwareRoots, select};
use crate::init::ModuleLoading;
use crate::kernel::{ModuleTree, default_kernel_package, extract, fetch_package, fetch_package_if_available, unpack};
use crate::layout::{Parts, compose};
use crate::manifest::{Built, MANIFEST_FILE, Manifest};
use crate::modules::{
    load_plan, modinfo_values, module_depends, module_firmware, render_modules_alias, render_modules_dep, resolve,
};
use crate::recipe::{HashInputs, RamdiskRecipe, recipe_hash};
use crate::run::{find_program, gzip, run};

/// The kernel's file name in an output directory.
pub const KERNEL_FILE: &str = "vmlinuz";
/// The RAM disk's file name in an output directory.
pub const INITRD_FILE: &str = "initrd.gz";
/// Where [`build_cached`] keeps downloaded kernel and firmware packages, under its cache root.
pub const DOWNLOADS_DIR: &str = "packages";

/// The inputs read from the host before building.
struct Gathered {
    package: String,
    busybox: Vec<u8>,
    agent: Option<Vec<u8>>,
    hash: u64,
}

fn gather(recipe: &RamdiskRecipe) -> Result<Gathered> {
    let package = match &recipe.kernel_package {
        Some(package) => package.clone(),
        None => default_kernel_package()?,
    };
    let busybox_path = find_program("busybox").ok_or_else(|| Error::MissingProgram {
        program: "busybox".into(),
        hint: "apt-get install busybox-static".into(),
    })?;
    let busybox = read_static(&busybox_path)?;
    let agent = recipe.agent.as_deref().map(read_static).transpose()?;
    let hash = recipe_hash(recipe, HashInputs { kernel_package: &package, busybox: &busybox, agent: agent.as_deref() });
    Ok(Gathered { package, busybox, agent, hash })
}

fn read_static(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
    if is_static_elf64(&bytes) { Ok(bytes) } else { Err(Error::NotStatic(path.to_path_buf())) }
}

/// Builds the kernel and RAM disk of `recipe` into `out_dir` (created; `vmlinuz`, `initrd.gz`,
/// `manifest.json` replaced), downloading the kernel and firmware packages into `downloads`
/// unless they are there already. Always builds; see [`build_cached`] for a cache.
pub fn build(recipe: &RamdiskRecipe, out_dir: &Path, downloads: &Path) -> Result<Built> {
    let gathered = gather(recipe)?;
    assemble(recipe, &gathered, out_dir, downloads)
}

/// The images of `recipe` under `cache_root/<kernel package>-<recipe hash>`, built there the
/// first time (kernel packages are kept in `cache_root/packages`). A build happens in a
/// temporary directory renamed into place, so concurrent processes are safe: the first rename
/// wins and the others use its result.
pub fn build_cached(recipe: &RamdiskRecipe, cache_root: &Path) -> Result<Built> {
    let gathered = gather(recipe)?;
    let dir = cache_root.join(format!("{}-{:016x}", gathered.package, gathered.hash));
    if let Some(built) = Built::load(&dir)? {
        return Ok(built);
    }
    std::fs::create_dir_all(cache_root).map_err(io(format!("creating {}", cache_root.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(cache_root)
        .map_err(io(format!("creating a build directory in {}", cache_root.display())))?;
    let out = scratch.path().join("out");
    assemble(recipe, &gathered, &out, &cache_root.join(DOWNLOADS_DIR))?;
    match std::fs::rename(&out, &dir) {
        Ok(()) => {}
        // Another process finished first: use its images.
        Err(e) if dir.join(MANIFEST_FILE).is_file() => drop(e),
        Err(e) => return Err(io(format!("renaming {} to {}", out.display(), dir.display()))(e)),
    }
    Built::load(&dir)?.ok_or_else(|| Error::Manifest {
        path: dir.join(MANIFEST_FILE),
        detail: "the cached build is incomplete right after building it".into(),
    })
}

fn assemble(recipe: &RamdiskRecipe, gathered: &Gathered, out_dir: &Path, downloads: &Path) -> Result<Built> {
    let deb = fetch_package(&gathered.package, downloads)?;
    std::fs::create_dir_all(out_dir).map_err(io(format!("creating {}", out_dir.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(out_dir)
        .map_err(io(format!("creating a scratch directory in {}", out_dir.display())))?;
    let unpacked = unpack(&deb, &scratch.path().join("pkg"))?;
    let tree = ModuleTree::read(&unpacked.modules_dir)?;

    // Resolve, reading each module once; the first read error stops the build.
    let mut failure = None;
    let mut contents = BTreeMap::new();
    let mut firmware_names = BTreeMap::new();
    let mut aliases = BTreeMap::new();
    let mut depends = BTreeMap::new();
    let resolution = resolve(&recipe.modules, &tree.builtin, |name| match tree.read_module(name) {
        Ok(Some((relative, bytes))) => {
            let dependencies = module_depends(&bytes);
            firmware_names.insert(name.to_owned(), module_firmware(&bytes));
            aliases.insert(name.to_owned(), modinfo_values(&bytes, "alias"));
            depends.insert(name.to_owned(), dependencies.clone());
            contents.insert(name.to_owned(), (relative, bytes));
            Some(dependencies)
        }
        Ok(None) => None,
        Err(e) => {
            failure.get_or_insert(e);
            None
        }
    });
    if let Some(error) = failure {
        return Err(error);
    }
    let mut warnings = resolution.warnings.clone();
    let module_dir = format!("/lib/modules/{}", unpacked.release);
    let relative_paths: BTreeMap<String, String> =
        contents.iter().map(|(name, (relative, _))| (name.clone(), relative.to_string_lossy().into_owned())).collect();
    let modules: Vec<(String, Vec<u8>)> = resolution
        .order
        .iter()
        .filter_map(|name| contents.remove(name))
        .map(|(relative, bytes)| (format!("{module_dir}/{}", relative.to_string_lossy()), bytes))
        .collect();
    // How /init loads them: the PCI drivers when their hardware is there (modprobe of the
    // devices' modalias), the rest as the plan says.
    let path = |name: &String| relative_paths.get(name).map(|relative| format!("{module_dir}/{relative}"));
    let plan = load_plan(&resolution.order, &recipe.modules, &depends, &aliases);
    let loading = ModuleLoading {
        always: plan.always.iter().filter_map(path).collect(),
        companions: plan.companions.iter().filter_map(|(name, after)| Some((path(name)?, after.clone()))).collect(),
    };
    let module_index = [
        (format!("{module_dir}/modules.dep"), render_modules_dep(&resolution.order, &depends, &relative_paths)),
        (format!("{module_dir}/modules.alias"), render_modules_alias(&resolution.order, &aliases)),
    ];

    // Firmware: the directories first, then the packages apt can download.
    let mut roots = FirmwareRoots::new();
    for dir in &recipe.firmware.dirs {
        roots.add_dir(dir);
    }
    let mut firmware_packages = Vec::new();
    for package in &recipe.firmware.packages {
        let Some(deb) = fetch_package_if_available(package, downloads)? else {
            warnings.push(format!(
                "firmware package {package} is not available from apt (is its component, e.g. \
                 non-free-firmware, in the apt sources? scripts/deps adds it): its firmware is left out"
            ));
            continue;
        };
        let into = scratch.path().join("firmware").join(package);
        firmware_packages.push(extract(&deb, &into)?);
        roots.add_package(&into);
    }
    let wanted_firmware: Vec<(String, Vec<String>)> = resolution
        .order
        .iter()
        .filter_map(|name| firmware_names.remove(name).map(|files| (name.clone(), files)))
        .filter(|(_, files)| !files.is_empty())
        .collect();
    let firmware = select(&wanted_firmware, |name| roots.read(name))?;
    warnings.extend(firmware.warnings.iter().cloned());

    let (programs, program_packages) =
        crate::programs::gather(&recipe.programs, &recipe.package_files, downloads, &scratch.path().join("programs"))?;

    let busybox_path = find_program("busybox").unwrap_or_else(|| PathBuf::from("busybox"));
    let applets: Vec<String> =
        run(Command::new(&busybox_path).arg("--list-full"))?.lines().map(str::to_owned).collect();
    let image = compose(&Parts {
        busybox: &gathered.busybox,
        applets: &applets,
        agent: gathered.agent.as_deref(),
        modules: &modules,
        loading: &loading,
        module_index: &module_index,
        programs: &programs,
        firmware: &firmware.files,
        init: &recipe.init,
        extra_files: &recipe.extra_files,
    })?;

    let cpio = scratch.path().join("initrd.cpio");
    let mut archive = Vec::new();
    image.write_newc(&mut archive).map_err(io("writing the cpio archive"))?;
    std::fs::write(&cpio, &archive).map_err(io(format!("writing {}", cpio.display())))?;
    let initrd = out_dir.join(INITRD_FILE);
    gzip(&cpio, &initrd)?;
    let kernel = out_dir.join(KERNEL_FILE);
    std::fs::copy(&unpacked.vmlinuz, &kernel).map_err(io(format!(
        "copying {} to {}",
        unpacked.vmlinuz.display(),
        kernel.display()
    )))?;

    let size =
        |path: &Path| std::fs::metadata(path).map(|m| m.len()).map_err(io(format!("reading {}", path.display())));
    let manifest = Manifest {
        kernel_package: gathered.package.clone(),
        release: unpacked.release.clone(),
        recipe_hash: format!("{:016x}", gathered.hash),
        modules: resolution.order,
        module_paths: modules.iter().map(|(path, _)| path.clone()).collect(),
        builtin: resolution.builtin,
        missing: resolution.missing,
        firmware: firmware.files.iter().map(|(name, _)| name.clone()).collect(),
        missing_firmware: firmware.missing,
        firmware_packages,
        program_packages,
        warnings,
        files: image.paths(),
        kernel_size: size(&kernel)?,
        initrd_size: size(&initrd)?,
        uncompressed_size: archive.len() as u64,
    };
    manifest.write(&out_dir.join(crate::manifest::MANIFEST_FILE))?;
    Ok(Built { kernel, initrd, manifest })
}
