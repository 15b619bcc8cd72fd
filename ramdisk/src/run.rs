//! Running host programs (`apt-cache`, `apt-get`, `dpkg`, `busybox`, `gzip`; `ip` for the test
//! fixtures): stdout, or an error naming the command with its stderr.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result, io};

/// A command as one line (program and arguments), for messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command to completion (stdin null); its stdout, or an error with its stderr.
pub fn run(command: &mut Command) -> Result<String> {
    let output = command.stdin(Stdio::null()).output().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::MissingProgram {
                program: command.get_program().to_string_lossy().into_owned(),
                hint: "see docs/ramdisk.md (apt-get, dpkg, gzip, busybox-static)".into(),
            }
        } else {
            Error::Io { what: format!("running `{}`", describe(command)), source }
        }
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: describe(command),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// `program` on `PATH`.
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |path: &Path| path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|path| executable(path))
}

/// `gzip -6 -n` of `input` into `output`: no name, no timestamp, so the same input gives the
/// same bytes. Level 6, not 9: on the production image (kernel modules mostly) `-9` takes eight
/// times as long for under 1 % less.
pub(crate) fn gzip(input: &Path, output: &Path) -> Result<()> {
    let from = File::open(input).map_err(io(format!("opening {}", input.display())))?;
    let to = File::create(output).map_err(io(format!("creating {}", output.display())))?;
    let mut command = Command::new("gzip");
    command.args(["-6", "-n", "-c"]).stdin(from).stdout(to).stderr(Stdio::piped());
    let child = command.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::MissingProgram { program: "gzip".into(), hint: "apt-get install gzip".into() }
        } else {
            io("running gzip")(source)
        }
    })?;
    let result = child.wait_with_output().map_err(io("waiting for gzip"))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("gzip -6 -n -c < {} > {}", input.display(), output.display()),
            status: result.status.to_string(),
            stderr: String::from_utf8_lossy(&result.stderr).trim().to_owned(),
        })
    }
}
