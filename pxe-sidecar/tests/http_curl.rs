//! The HTTP server against a real peer: `curl` on 127.0.0.1 (a random port).
//!
//! Skipped when curl is missing, failing under `MACHINIST_E2E=require`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use machinist_boot::http::{self, HttpConfig, RamDisk};
use machinist_boot::machines::{BootRecord, InMemoryMachines, MacAddr};
use machinist_crds::machine::{BootMenu, BootTarget, OnSuccess};
use tokio_util::sync::CancellationToken;

mod common;
use common::{check, curl, expect_status};

const KNOWN: &str = "52:54:00:12:34:56";
const MENU: &str = "52:54:00:12:34:57";
const TOKEN: &str = "s3cret-token-m1";
const LIMIT: usize = 64 * 1024;

/// A running server over a temporary artifact root; stops on drop.
struct Server {
    base: String,
    machines: InMemoryMachines,
    root: tempfile::TempDir,
    _outside: tempfile::TempDir,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), http::ServeError>>>,
}

impl Server {
    async fn start() -> Result<Self, String> {
        let root = tempfile::tempdir().map_err(|e| e.to_string())?;
        let outside = tempfile::tempdir().map_err(|e| e.to_string())?;
        let kernel: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::create_dir(root.path().join("boot")).map_err(|e| e.to_string())?;
        std::fs::write(root.path().join("boot/vmlinuz"), &kernel).map_err(|e| e.to_string())?;
        std::fs::write(outside.path().join("secret"), "outside the root").map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("escape"))
            .map_err(|e| e.to_string())?;

        let listener = http::bind(Some("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("nothing bound")?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let base = format!("http://{addr}");
        let config = HttpConfig {
            listen: Some(addr),
            public_url: base.clone(),
            artifact_root: Some(root.path().to_path_buf()),
            ramdisk: RamDisk {
                kernel: "boot/vmlinuz".into(),
                initrd: "boot/initrd".into(),
                args: vec!["console=ttyS0".into()],
            },
            report_limit: LIMIT,
            log_limit: LIMIT,
        };
        let settings = config.validate().map_err(|e| e.to_string())?;
        let machines = InMemoryMachines::new();
        machines.insert(
            KNOWN.parse().map_err(|e| format!("{e}"))?,
            BootRecord {
                name: "m1".into(),
                boot_target: Some(BootTarget::Discovery),
                boot_menu: None,
                token: TOKEN.into(),
                on_success: OnSuccess::default(),
                debug: false,
                installed: false,
            },
        );
        machines.insert(
            MENU.parse::<MacAddr>().map_err(|e| format!("{e}"))?,
            BootRecord {
                name: "m2".into(),
                boot_target: Some(BootTarget::Menu),
                boot_menu: Some(BootMenu {
                    roles: vec!["base".into(), "api".into()],
                    default: "api".into(),
                    timeout_seconds: 10,
                }),
                token: "other-token".into(),
                on_success: OnSuccess::default(),
                debug: false,
                installed: false,
            },
        );
        let router = http::router(settings, Arc::new(machines.clone()), Arc::new(machines.clone()));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(http::serve(listener, router, shutdown.clone()));
        Ok(Self { base, machines, root, _outside: outside, shutdown, task: Some(task) })
    }

    /// Stops the server and waits (bounded) for it to exit cleanly.
    async fn stop(mut self) -> Result<(), String> {
        self.shutdown.cancel();
        let task = self.task.take().ok_or("already stopped")?;
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .map_err(|_| "server did not stop within 10 s".to_owned())?
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test]
async fn curl_fetches_scripts() -> Result<(), String> {
    if !machinist_e2e::prereq::need_programs("curl_fetches_scripts", &["curl"])? {
        return Ok(());
    }
    let server = Server::start().await?;
    let base = &server.base;

    let health = curl(&[&format!("{base}/healthz")]).await?;
    expect_status(&health, 200, "healthz")?;

    let script = curl(&[&format!("{base}/ipxe/{KNOWN}")]).await?;
    expect_status(&script, 200, "known MAC")?;
    check(script.header("content-type").is_some_and(|t| t.starts_with("text/plain")), || format!("{script:?}"))?;
    let expected = format!(
        "#!ipxe\nkernel --name vmlinuz {base}/artifacts/boot/vmlinuz initrd=initrd console=ttyS0 machinist.url={base} \
         machinist.machine=m1 machinist.token={TOKEN} machinist.mac={KNOWN} machinist.mode=discovery machinist.onSuccess=reboot\n\
         initrd --name initrd {base}/artifacts/boot/initrd\n"
    );
    check(script.text().starts_with(&expected), || {
        format!("script:\n{}\nexpected to start with:\n{expected}", script.text())
    })?;

    let hyphens = curl(&[&format!("{base}/ipxe/52-54-00-12-34-56")]).await?;
    check(hyphens.body == script.body, || format!("hyphenated MAC: {}", hyphens.text()))?;

    let menu = curl(&[&format!("{base}/ipxe/{MENU}")]).await?;
    expect_status(&menu, 200, "menu")?;
    check(menu.text().contains("choose --default api --timeout 10000 target"), || menu.text())?;
    check(menu.text().contains(&format!(":base\nchain --replace --autofree {base}/ipxe/{MENU}?role=base\n")), || {
        menu.text()
    })?;
    let chosen = curl(&[&format!("{base}/ipxe/{MENU}?role=base")]).await?;
    check(chosen.text().contains("machinist.mode=install machinist.onSuccess=reboot machinist.role=base\n"), || {
        chosen.text()
    })?;
    let bad_role = curl(&[&format!("{base}/ipxe/{MENU}?role=Bad%20Role")]).await?;
    expect_status(&bad_role, 400, "bad role")?;

    let unknown = curl(&[&format!("{base}/ipxe/02:00:00:00:00:99")]).await?;
    expect_status(&unknown, 200, "unknown MAC")?;
    check(unknown.text().ends_with("exit 1\n"), || unknown.text())?;

    for garbage in ["not-a-mac", "52:54:00:12:34", "52:54:00:12:34:5g", "%2e%2e"] {
        let reply = curl(&[&format!("{base}/ipxe/{garbage}")]).await?;
        expect_status(&reply, 400, garbage)?;
        check(reply.text().contains("is not a MAC address"), || reply.text())?;
    }
    server.stop().await
}

#[tokio::test]
async fn curl_fetches_artifacts_whole_ranged_and_conditionally() -> Result<(), String> {
    if !machinist_e2e::prereq::need_programs("curl_fetches_artifacts_whole_ranged_and_conditionally", &["curl"])? {
        return Ok(());
    }
    let server = Server::start().await?;
    let url = format!("{}/artifacts/boot/vmlinuz", server.base);
    let kernel = std::fs::read(server.root.path().join("boot/vmlinuz")).map_err(|e| e.to_string())?;

    let full = curl(&[&url]).await?;
    expect_status(&full, 200, "full")?;
    check(full.body == kernel, || format!("full body: {} bytes, expected {}", full.body.len(), kernel.len()))?;
    check(full.header("content-length") == Some("10000"), || format!("{:?}", full.headers))?;
    check(full.header("accept-ranges") == Some("bytes"), || format!("{:?}", full.headers))?;
    let etag = full.header("etag").ok_or("no ETag")?.to_owned();
    let last_modified = full.header("last-modified").ok_or("no Last-Modified")?.to_owned();
    check(etag.starts_with("W/\""), || etag.clone())?;

    let ranged = curl(&["-r", "0-99", &url]).await?;
    expect_status(&ranged, 206, "range 0-99")?;
    check(ranged.body == kernel[..100], || format!("range body: {} bytes", ranged.body.len()))?;
    check(ranged.header("content-range") == Some("bytes 0-99/10000"), || format!("{:?}", ranged.headers))?;

    let tail = curl(&["-r", "-10", &url]).await?;
    expect_status(&tail, 206, "suffix range")?;
    check(tail.body == kernel[9990..], || "suffix body".into())?;
    check(tail.header("content-range") == Some("bytes 9990-9999/10000"), || format!("{:?}", tail.headers))?;

    let middle = curl(&["-r", "5000-", &url]).await?;
    check(middle.status == 206 && middle.body == kernel[5000..], || format!("open range: {}", middle.status))?;

    let past = curl(&["-r", "20000-", &url]).await?;
    expect_status(&past, 416, "range past the end")?;
    check(past.header("content-range") == Some("bytes */10000"), || format!("{:?}", past.headers))?;

    let cached = curl(&["-H", &format!("If-None-Match: {etag}"), &url]).await?;
    expect_status(&cached, 304, "If-None-Match")?;
    check(cached.body.is_empty(), || "304 with a body".into())?;
    let stale = curl(&["-H", "If-None-Match: W/\"0-0\"", &url]).await?;
    expect_status(&stale, 200, "other ETag")?;
    let since = curl(&["-H", &format!("If-Modified-Since: {last_modified}"), &url]).await?;
    expect_status(&since, 304, "If-Modified-Since")?;
    let old = curl(&["-H", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT", &url]).await?;
    expect_status(&old, 200, "If-Modified-Since long ago")?;
    let if_range = curl(&["-r", "0-9", "-H", &format!("If-Range: {last_modified}"), &url]).await?;
    expect_status(&if_range, 206, "If-Range with the date")?;
    let if_range_etag = curl(&["-r", "0-9", "-H", &format!("If-Range: {etag}"), &url]).await?;
    expect_status(&if_range_etag, 200, "If-Range with a weak ETag")?;

    let head = curl(&["--head", &url]).await?;
    expect_status(&head, 200, "HEAD")?;
    check(head.header("content-length") == Some("10000") && head.body.is_empty(), || format!("{head:?}"))?;

    let base = &server.base;
    for (path, status) in [
        ("../secret", 403),
        ("boot/../../secret", 403),
        ("%2e%2e/secret", 403),
        ("%2Fetc%2Fpasswd", 403),
        ("escape", 403),
        ("missing", 404),
        ("boot", 404),
    ] {
        let reply = curl(&[&format!("{base}/artifacts/{path}")]).await?;
        expect_status(&reply, status, path)?;
        check(!reply.text().contains("outside the root"), || format!("{path} leaked the file"))?;
    }
    server.stop().await
}

fn write_file(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf, String> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|e| e.to_string())?;
    Ok(path)
}

#[tokio::test]
async fn curl_posts_reports_that_are_authenticated_bounded_and_validated() -> Result<(), String> {
    if !machinist_e2e::prereq::need_programs(
        "curl_posts_reports_that_are_authenticated_bounded_and_validated",
        &["curl"],
    )? {
        return Ok(());
    }
    let server = Server::start().await?;
    let url = format!("{}/machines/m1/report", server.base);
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let good = br#"{"items": [["system","product","vendor","ACME"],["cpu","logical","number","8"]]}"#;
    let good_file = write_file(scratch.path(), "good.json", good)?;
    let good_arg = format!("@{}", good_file.display());
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let post = |extra: Vec<String>| {
        let mut args: Vec<String> =
            vec!["-X".into(), "POST".into(), "-H".into(), "Content-Type: application/json".into()];
        args.extend(extra);
        args.push(url.clone());
        args
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs).await
    };

    let no_token = run(post(vec!["--data-binary".into(), good_arg.clone()])).await?;
    expect_status(&no_token, 401, "no token")?;
    check(no_token.header("www-authenticate") == Some("Bearer"), || format!("{:?}", no_token.headers))?;
    for wrong in ["Authorization: Bearer wrong", "Authorization: Bearer other-token", "Authorization: Basic czNjcmV0"] {
        let reply = run(post(vec!["-H".into(), wrong.into(), "--data-binary".into(), good_arg.clone()])).await?;
        expect_status(&reply, 401, wrong)?;
    }
    let other_machine = run(vec![
        "-H".into(),
        bearer.clone(),
        "--data-binary".into(),
        good_arg.clone(),
        format!("{}/machines/m9/report", server.base),
    ])
    .await?;
    expect_status(&other_machine, 401, "token of another machine")?;

    let huge = format!(r#"{{"items": [["a","b","c","{}"]]}}"#, "x".repeat(LIMIT));
    let huge_arg = format!("@{}", write_file(scratch.path(), "huge.json", huge.as_bytes())?.display());
    let oversized = run(post(vec!["-H".into(), bearer.clone(), "--data-binary".into(), huge_arg.clone()])).await?;
    expect_status(&oversized, 413, "oversized")?;
    let chunked = run(post(vec![
        "-H".into(),
        bearer.clone(),
        "-H".into(),
        "Transfer-Encoding: chunked".into(),
        "--data-binary".into(),
        huge_arg,
    ]))
    .await?;
    expect_status(&chunked, 413, "oversized, chunked")?;

    for (body, message) in [
        (r#"{"items": [["a","b","c"]]}"#, "exactly four elements"),
        (r#"{"items": [["a","b","c",1]]}"#, "expected a string"),
        (r#"{"items": []}"#, "items is empty"),
        (r#"{"hardware": []}"#, "unknown field `hardware`"),
        ("not json", "invalid hardware report"),
    ] {
        let reply = run(post(vec!["-H".into(), bearer.clone(), "--data-binary".into(), body.into()])).await?;
        expect_status(&reply, 400, body)?;
        check(reply.text().contains(message), || format!("{body}: {}", reply.text()))?;
    }
    check(server.machines.reports().is_empty(), || {
        format!("refused reports reached the sink: {:?}", server.machines.reports())
    })?;

    let accepted = run(post(vec!["-H".into(), bearer.clone(), "--data-binary".into(), good_arg])).await?;
    expect_status(&accepted, 204, "good report")?;
    let reports = server.machines.reports();
    check(reports.len() == 1 && reports[0].0 == "m1", || format!("{reports:?}"))?;
    let items: Vec<[&str; 4]> = reports[0].1.items.iter().map(|q| q.elements()).collect();
    check(items == [["system", "product", "vendor", "ACME"], ["cpu", "logical", "number", "8"]], || {
        format!("{items:?}")
    })?;
    server.stop().await
}
