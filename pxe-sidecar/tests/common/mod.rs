//! Helpers shared by the tests that drive the boot services with curl.

#![allow(dead_code)] // each test file uses its own subset

use std::time::Duration;

/// A response as curl saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs `curl -i` with `args` (bounded), and splits its output.
pub async fn curl(args: &[&str]) -> Result<Reply, String> {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "--path-as-is", "--include", "-H", "Expect:"])
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .map_err(|_| format!("curl {args:?} did not finish"))?
        .map_err(|e| format!("failed to run curl: {e}"))?;
    if !output.status.success() {
        return Err(format!("curl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let mut rest: &[u8] = &output.stdout;
    loop {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no header block in curl output")?;
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("no status line in {head:?}"))?;
        if status == 100 {
            continue;
        }
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        return Ok(Reply { status, headers, body: rest.to_vec() });
    }
}

pub fn check(condition: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(what()) }
}

pub fn expect_status(reply: &Reply, status: u16, what: &str) -> Result<(), String> {
    check(reply.status == status, || format!("{what}: expected {status}, got {} {:?}", reply.status, reply.text()))
}
