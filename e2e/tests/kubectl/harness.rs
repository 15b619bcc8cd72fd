//! A control plane of its own for each test, and the real `kubectl` pointed at it: every
//! command runs with the server's kubeconfig, its own discovery cache, no standard input and a
//! time limit, and what it printed is kept for assertion messages.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use machinist_e2e::prereq::{self, Missing, Mode, Verdict};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// The longest any one kubectl command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a running command (`-w`, a blocking delete or wait) may take to print a line.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `examples/<name>` or `crds/manifests` and the like, from the repository root.
pub fn repo_path(relative: &str) -> String {
    repo_root().join(relative).to_string_lossy().into_owned()
}

/// kubectl as `scripts/deps` installs it (`.tools/bin/kubectl`), else the one on `PATH`.
fn kubectl_program() -> Option<PathBuf> {
    let pinned = repo_root().join(".tools/bin/kubectl");
    prereq::find_program(&pinned.to_string_lossy(), None)
        .or_else(|| prereq::find_program("kubectl", std::env::var_os("PATH").as_deref()))
}

/// What one kubectl command did.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub command: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output and error together (kubectl prints results on one, warnings on the other).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "$ {}\n({})\n--- stdout\n{}--- stderr\n{}---", self.command, self.status, self.stdout, self.stderr)
    }
}

fn shell_words(args: &[&str]) -> String {
    let quote = |a: &&str| {
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c)) {
            (*a).to_owned()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    std::iter::once("kubectl").map(str::to_owned).chain(args.iter().map(quote)).collect::<Vec<_>>().join(" ")
}

/// A control plane and a kubectl configured for it.
pub struct Cluster {
    running: Option<machinist_apiserver::Running>,
    dir: tempfile::TempDir,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts a control plane for `test`, or returns `None` (after saying why) when kubectl is
    /// missing and that means a skip; fails the test when it is missing under
    /// `MACHINIST_E2E=require`.
    pub async fn start(test: &str) -> Option<Self> {
        let kubectl = kubectl_program();
        let missing = match kubectl {
            Some(_) => Vec::new(),
            None => vec![Missing::Program { program: "kubectl".into() }],
        };
        match Mode::from_env().unwrap_or_else(|e| panic!("{test}: {e}")).verdict(&missing) {
            Verdict::Run => {}
            Verdict::Skip(reason) => {
                eprintln!("skipping {test}: {reason}");
                return None;
            }
            Verdict::Fail(reason) => panic!("{test}: {reason}"),
        }
        let kubectl = kubectl?;
        let dir = tempfile::tempdir().unwrap();
        let config = machinist_apiserver::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            crds: machinist_crds::all_crds(),
            ..machinist_apiserver::Config::new(dir.path().join("home"))
        };
        let running = machinist_apiserver::start(config).await.unwrap_or_else(|e| panic!("{test}: {e}"));
        let kubeconfig = running.kubeconfig.clone();
        Some(Self { running: Some(running), dir, kubectl, kubeconfig })
    }

    /// Writes `text` to a file of the scratch directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// Writes an executable shell script to the scratch directory and returns its path.
    pub fn script(&self, name: &str, text: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write(name, text);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(&self.kubectl);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .env_remove("KUBE_EDITOR")
            .env_remove("EDITOR")
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .env_remove("KUBECTL_KUBERC")
            .env("KUBERC", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        command
    }

    /// Runs kubectl to the end (within [`COMMAND_TIMEOUT`]).
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[]).await
    }

    /// Runs kubectl with extra environment variables.
    pub async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let command = shell_words(args);
        let child = self.command(args, env).spawn().unwrap_or_else(|e| panic!("`{command}` did not start: {e}"));
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("`{command}` did not finish within {COMMAND_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("`{command}`: {e}"));
        Run {
            command,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs kubectl, which must succeed; returns what it printed on standard output.
    pub async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert!(run.status.success(), "kubectl failed:\n{run}");
        run.stdout
    }

    /// Runs kubectl, which must fail; returns the run (kubectl's message is on standard error).
    pub async fn fails(&self, args: &[&str]) -> Run {
        let run = self.run(args).await;
        assert!(!run.status.success(), "kubectl succeeded where it should fail:\n{run}");
        run
    }

    /// `kubectl <args> -o json`, parsed.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let stdout = self.ok(&all).await;
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{stdout}", shell_words(&all)))
    }

    /// Starts a kubectl that keeps running (`get -w`, a blocking `delete` or `wait`); its standard
    /// output is read line by line as it comes.
    pub fn spawn(&self, args: &[&str]) -> Streaming {
        let command = shell_words(args);
        let mut child = self.command(args, &[]).spawn().unwrap_or_else(|e| panic!("`{command}` did not start: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let errors = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&errors);
        tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Streaming { command, child, lines, seen: Vec::new(), stderr: errors }
    }

    /// Stops the control plane.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Creates the namespaces the examples use and applies `examples/` (the machinist kinds and
    /// the core ones; `examples/gitops` holds Argo CD and Flux kinds this server does not serve).
    pub async fn load_examples(&self) -> Run {
        for namespace in ["api", "edeploy", "web", "machinist-system"] {
            let out = self.ok(&["create", "namespace", namespace]).await;
            assert_eq!(out.trim(), format!("namespace/{namespace} created"));
        }
        let run = self.run(&example_args(&["apply"])).await;
        assert!(run.status.success(), "applying the examples failed:\n{run}");
        run
    }
}

/// `<verb…> -f examples/api-vms -f examples/edeploy -f examples/web-farm`.
pub fn example_args(verb: &[&'static str]) -> Vec<&'static str> {
    let mut args = verb.to_vec();
    for dir in EXAMPLE_DIRS.iter() {
        args.extend(["-f", dir.as_str()]);
    }
    args
}

static EXAMPLE_DIRS: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
    [repo_path("examples/api-vms"), repo_path("examples/edeploy"), repo_path("examples/web-farm")]
});

/// Every object of the examples, as `kubectl apply` names them (`machine.machinist.dev/api-01`).
pub const EXAMPLE_OBJECTS: [&str; 29] = [
    "cmdb.machinist.dev/api-lan",
    "hypervisor.machinist.dev/hv1",
    "hypervisor.machinist.dev/hv2",
    "hardwareprofile.machinist.dev/api-vm",
    "loadbalancerbackend.machinist.dev/api",
    "machine.machinist.dev/api-01",
    "machine.machinist.dev/api-02",
    "role.machinist.dev/base",
    "role.machinist.dev/ui",
    "role.machinist.dev/ui-test",
    "role.machinist.dev/api",
    "role.machinist.dev/api-test",
    "cmdb.machinist.dev/vm",
    "cmdb.machinist.dev/hp",
    "secret/bmc-hp-01",
    "machine.machinist.dev/hp-01",
    "machine.machinist.dev/hp-02",
    "machine.machinist.dev/mac-52-54-00-88-17-3c",
    "hardwareprofile.machinist.dev/hp",
    "hardwareprofile.machinist.dev/vm",
    "role.machinist.dev/mysql",
    "role.machinist.dev/web",
    "cmdb.machinist.dev/web",
    "hardwareprofile.machinist.dev/web-vm",
    "hypervisor.machinist.dev/web-hv",
    "loadbalancerbackend.machinist.dev/web",
    "machine.machinist.dev/web-1",
    "machine.machinist.dev/web-2",
    "machine.machinist.dev/web-3",
];

/// The distinct example objects.
pub fn example_objects() -> BTreeSet<&'static str> {
    EXAMPLE_OBJECTS.iter().copied().collect()
}

/// A kubectl that keeps running.
pub struct Streaming {
    command: String,
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Streaming {
    fn report(&self) -> String {
        format!(
            "--- stdout so far\n{}\n--- stderr so far\n{}---",
            self.seen.join("\n"),
            self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
        )
    }

    /// Waits (at most [`LINE_TIMEOUT`]) for the next line of standard output that `wanted`
    /// accepts, and returns it; the lines before it are kept for messages.
    pub async fn line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + LINE_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!("`{}` ended before printing {what}:\n{}", self.command, self.report()),
                Err(_) => panic!("`{}` printed no {what} within {LINE_TIMEOUT:?}:\n{}", self.command, self.report()),
            }
        }
    }

    /// Whether the command is still running (it has not exited yet).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Every line printed so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Waits (at most [`COMMAND_TIMEOUT`]) for the command to end; returns how it ended, with
    /// everything it printed.
    pub async fn finish(mut self) -> Run {
        let status = match tokio::time::timeout(COMMAND_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("`{}` did not finish within {COMMAND_TIMEOUT:?}:\n{}", self.command, self.report()),
        };
        // The reader ends at end of file, which follows the exit.
        while let Ok(Some(line)) = tokio::time::timeout(LINE_TIMEOUT, self.lines.recv()).await {
            self.seen.push(line);
        }
        let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        Run { command: self.command, status, stdout: self.seen.join("\n") + "\n", stderr }
    }

    /// Ends the command (a watch that would otherwise run on).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, self.child.wait()).await;
    }
}

/// kubectl's table output as rows of named cells. Columns are found from the header line:
/// kubectl aligns every cell under its header, at least three spaces after the previous
/// column (a header such as `CREATED AT` holds single spaces), so a cell is the text from its
/// header's column to the next header's (empty cells stay empty, where splitting on blanks
/// would shift them).
pub fn table(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    let mut starts = Vec::new();
    let mut blanks = 2;
    for (index, c) in header.char_indices() {
        if c != ' ' && blanks >= 2 {
            starts.push(index);
        }
        blanks = if c == ' ' { blanks + 1 } else { 0 };
    }
    let names = (0..starts.len())
        .map(|i| header[starts[i]..starts.get(i + 1).copied().unwrap_or(header.len())].trim().to_owned())
        .collect();
    let rows = lines
        .map(|line| {
            (0..starts.len())
                .map(|i| {
                    let start = starts[i].min(line.len());
                    let end = if i + 1 < starts.len() { starts[i + 1].min(line.len()) } else { line.len() };
                    line.get(start..end).unwrap_or_default().trim().to_owned()
                })
                .collect()
        })
        .collect();
    (names, rows)
}

/// The row of `rows` whose cell `column` is `value`.
pub fn row<'a>(names: &[String], rows: &'a [Vec<String>], column: &str, value: &str) -> Option<&'a Vec<String>> {
    let index = names.iter().position(|n| n == column)?;
    rows.iter().find(|r| r.get(index).is_some_and(|c| c == value))
}

/// One cell of a row, by column name.
pub fn cell<'a>(names: &[String], row: &'a [String], column: &str) -> &'a str {
    let index = names.iter().position(|n| n == column).unwrap_or_else(|| panic!("no column {column} in {names:?}"));
    row.get(index).map(String::as_str).unwrap_or_default()
}

/// `kubectl apply`'s lines (`machine.machinist.dev/web-1 configured`) as object → verb.
pub fn applied(stdout: &str) -> std::collections::BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| line.trim().rsplit_once(' '))
        .map(|(object, verb)| (object.to_owned(), verb.to_owned()))
        .collect()
}

/// Text with every run of blanks (spaces, tabs, new lines) made one space: kubectl wraps
/// descriptions to the terminal width.
pub fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The paths (`spec.provider.libvirt.memoryMiB`) at which two JSON documents differ.
pub fn differences(before: &Value, after: &Value) -> Vec<String> {
    fn walk(before: &Value, after: &Value, path: &str, out: &mut Vec<String>) {
        let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
        match (before, after) {
            (Value::Object(a), Value::Object(b)) => {
                let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for key in keys {
                    walk(a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null), &join(key), out);
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(x, y, &format!("{path}[{i}]"), out);
                }
            }
            _ if before != after => out.push(path.to_owned()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(before, after, "", &mut out);
    out
}

/// An object without what every write changes (resource version, generation, managed fields,
/// kubectl's last-applied annotation), to compare what a write changed besides.
pub fn content(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["resourceVersion", "generation", "managedFields"] {
            metadata.remove(key);
        }
        if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    object
}

/// Replaces `from` by `to` in the one document of a multi-document YAML file that names
/// `name`, leaving the others as they are.
pub fn edit_document(text: &str, name: &str, from: &str, to: &str) -> String {
    let mut found = false;
    let documents: Vec<String> = text
        .split("\n---\n")
        .map(|document| {
            if document.contains(&format!("\n  name: {name}\n")) {
                assert!(document.contains(from), "{from:?} is not in the document of {name}:\n{document}");
                found = true;
                document.replacen(from, to, 1)
            } else {
                document.to_owned()
            }
        })
        .collect();
    assert!(found, "no document names {name}");
    documents.join("\n---\n")
}

/// Now, as the API server writes `metav1.Time` (`2026-01-02T03:04:05Z`).
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now, as `metav1.MicroTime` (`2026-01-02T03:04:05.000000Z`).
pub fn now_micro() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}
