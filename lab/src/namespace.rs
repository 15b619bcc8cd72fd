//! Threads inside a network namespace.

use std::fs::File;
use std::path::Path;
use std::thread::JoinHandle;

use crate::{Error, Result};

/// Runs `f` on a new thread that entered the network namespace at `netns` (`setns`, e.g.
/// `/run/netns/<name>`) first. Sockets created there belong to the namespace and may be used
/// from any thread afterwards; threads (and so Tokio runtimes) started from it are inside too.
///
/// Returns once the thread is inside, or with the error that kept it out (then `f` is not
/// run). The handle's value is `Some` of `f`'s result; `None` only if the thread did not enter,
/// which this function has already reported as an error.
pub fn spawn_in<T, F>(netns: &Path, f: F) -> Result<JoinHandle<Option<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let namespace = netns.display().to_string();
    let path = netns.to_path_buf();
    let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(1);
    let handle = std::thread::Builder::new()
        .name(format!("in-{}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()))
        .spawn(move || {
            let entered = File::open(&path)
                .and_then(|file| {
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
                })
                .map_err(|source| Error::Enter { namespace: path.display().to_string(), source });
            let ok = entered.is_ok();
            // The receiver waits for this message below; it cannot be gone.
            let _ = entered_tx.send(entered);
            ok.then(f)
        })
        .map_err(|source| Error::Thread { namespace: namespace.clone(), source })?;
    match entered_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(Error::NotEntered { namespace }),
    }
}
