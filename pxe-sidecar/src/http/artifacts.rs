//! `GET`/`HEAD /artifacts/{path}`: kernels, initrds and images under one root.
//!
//! - **Confined** ([`resolve`]): `..` and absolute paths are refused (403), the path is
//!   resolved with symlinks followed and must stay under the (canonical) root (403 when a
//!   link points out), missing files and directories are 404.
//! - **Streamed** from disk in 64 KiB chunks; nothing is read into memory whole.
//! - **Range** (RFC 9110 §14): one `bytes=` range → 206 with `Content-Range`; a range past
//!   the end → 416; several ranges or a syntax we do not know → the whole file (200), which
//!   the RFC allows. `If-Range` with a date equal to `Last-Modified` keeps the range (our
//!   ETags are weak, so an ETag in `If-Range` never matches).
//! - **Validators**: a weak `ETag` from size and modification time, `Last-Modified`;
//!   `If-None-Match` (which wins) or `If-Modified-Since` → 304.

use std::io::SeekFrom;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::Shared;

/// Chunk size of streamed files. Each chunk is one trip to the blocking pool and back: 256 KiB
/// quarters the trips of 64 KiB (the benchmark against nginx, docs/performance.md, measured
/// the difference). 1 MiB measured faster still on loopback, but a boot storm of a thousand
/// machines fetching their kernel would then hold gigabytes of buffers.
const CHUNK: usize = 256 * 1024;

/// Why a path is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing there (or a directory): 404.
    NotFound,
    /// Outside the root (`..`, absolute, a symlink out): 403.
    Forbidden,
}

/// Whether an open file lies under the (canonical) root, as the kernel sees it through
/// `/proc/self/fd`. Where `/proc` is not mounted the check made by [`resolve`] stands.
async fn opened_under(file: &tokio::fs::File, root: &Path) -> bool {
    use std::os::fd::AsRawFd;
    match tokio::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).await {
        Ok(opened) => opened.starts_with(root),
        Err(_) => true,
    }
}

/// The file `requested` (a URL path, already percent-decoded) names under `root`, which must
/// be canonical.
pub fn resolve(root: &Path, requested: &str) -> Result<PathBuf, Refusal> {
    if requested.contains('\0') || requested.contains('\\') {
        return Err(Refusal::Forbidden);
    }
    let relative = Path::new(requested);
    let mut joined = root.to_path_buf();
    for component in relative.components() {
        match component {
            Component::Normal(part) => joined.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return Err(Refusal::Forbidden),
        }
    }
    let resolved = std::fs::canonicalize(&joined).map_err(|_| Refusal::NotFound)?;
    if !resolved.starts_with(root) {
        return Err(Refusal::Forbidden);
    }
    if !resolved.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok(resolved)
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// The whole file.
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, included.
        end: u64,
    },
    /// Nothing of the file: 416.
    Unsatisfiable,
}

/// Reads a `Range` header value.
pub fn parse_range(value: &str, len: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return RangeRequest::Full };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeRequest::Full };
    let number = |s: &str| if s.bytes().all(|b| b.is_ascii_digit()) { s.parse::<u64>().ok() } else { None };
    match (first.is_empty(), last.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match number(last) {
            None => RangeRequest::Full,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial { start: len.saturating_sub(n), end: len - 1 },
        },
        (false, _) => {
            let Some(start) = number(first) else { return RangeRequest::Full };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match number(last) {
                    Some(end) if end >= start => end,
                    _ => return RangeRequest::Full,
                }
            };
            if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial { start, end: end.min(len - 1) }
            }
        }
        (true, true) => RangeRequest::Full,
    }
}

/// A weak validator from size and modification time.
pub fn etag(len: u64, modified: SystemTime) -> String {
    let nanos = modified.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("W/\"{len:x}-{nanos:x}\"")
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison).
pub fn none_match_hits(value: &str, etag: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    value.split(',').any(|tag| tag.trim() == "*" || bare(tag) == bare(etag))
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) of a time, to the second.
pub fn http_date(time: SystemTime) -> Option<String> {
    let timestamp = jiff::Timestamp::try_from(time).ok()?;
    jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&timestamp).ok()
}

/// Seconds since the epoch of an HTTP date.
fn parse_http_date(value: &str) -> Option<i64> {
    jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(value.trim()).ok().map(|t| t.as_second())
}

fn unix_seconds(time: SystemTime) -> Option<i64> {
    jiff::Timestamp::try_from(time).ok().map(|t| t.as_second())
}

fn status(code: StatusCode) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{code}\n")).into_response()
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

pub(super) async fn serve(
    State(state): Shared,
    method: Method,
    UrlPath(requested): UrlPath<String>,
    request_headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Response {
    let Some(root) = &state.settings.artifact_root else { return status(StatusCode::NOT_FOUND) };
    serve_under(&state, root, &requested, &method, &request_headers, &extensions).await
}

/// `GET`/`HEAD /ipxe-binaries/{name}`: the iPXE binaries the TFTP server serves (`ipxe.efi`,
/// `ipxe-arm64.efi`, `undionly.kpxe`), for UEFI HTTP boot clients. Any other name is 404.
pub(super) async fn ipxe_binary(
    State(state): Shared,
    method: Method,
    UrlPath(name): UrlPath<String>,
    request_headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Response {
    let known = machinist_boot_tftp::IPXE_BINARIES.iter().any(|b| b.served_name == name);
    let Some(root) = state.settings.ipxe_binaries.as_ref().filter(|_| known) else {
        return status(StatusCode::NOT_FOUND);
    };
    serve_under(&state, root, &name, &method, &request_headers, &extensions).await
}

async fn serve_under(
    state: &super::AppState,
    root: &Path,
    requested: &str,
    method: &Method,
    request_headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Response {
    let requested = requested.to_owned();
    let path = match resolve(root, &requested) {
        Ok(path) => path,
        Err(refusal) => {
            tracing::info!(path = %requested, ?refusal, "artifact refused");
            return status(match refusal {
                Refusal::NotFound => StatusCode::NOT_FOUND,
                Refusal::Forbidden => StatusCode::FORBIDDEN,
            });
        }
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "failed to open artifact");
            return status(StatusCode::NOT_FOUND);
        }
    };
    // A link swapped in between `resolve` and the open would escape the root: check what the
    // kernel actually opened.
    if !opened_under(&file, root).await {
        tracing::warn!(path = %path.display(), "artifact changed into a path outside the root while opening");
        return status(StatusCode::FORBIDDEN);
    }
    let metadata = match file.metadata().await {
        Ok(metadata) => metadata,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "failed to read artifact metadata");
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let len = metadata.len();
    let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let tag = etag(len, modified);
    let last_modified = http_date(modified);

    let mut headers = HeaderMap::new();
    set(&mut headers, header::ETAG, &tag);
    if let Some(date) = &last_modified {
        set(&mut headers, header::LAST_MODIFIED, date);
    }
    set(&mut headers, header::ACCEPT_RANGES, "bytes");

    let header_str = |name: header::HeaderName| request_headers.get(name).and_then(|v| v.to_str().ok());
    let not_modified = match header_str(header::IF_NONE_MATCH) {
        Some(value) => none_match_hits(value, &tag),
        None => match (header_str(header::IF_MODIFIED_SINCE).and_then(parse_http_date), unix_seconds(modified)) {
            (Some(since), Some(mtime)) => mtime <= since,
            _ => false,
        },
    };
    if not_modified {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }

    let range_applies = match header_str(header::IF_RANGE) {
        None => true,
        Some(value) => match (parse_http_date(value), unix_seconds(modified)) {
            (Some(date), Some(mtime)) => date == mtime,
            _ => false,
        },
    };
    let range = match header_str(header::RANGE) {
        Some(value) if range_applies => parse_range(value, len),
        _ => RangeRequest::Full,
    };
    let (code, start, count) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Partial { start, end } => {
            set(&mut headers, header::CONTENT_RANGE, &format!("bytes {start}-{end}/{len}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            set(&mut headers, header::CONTENT_RANGE, &format!("bytes */{len}"));
            return (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response();
        }
    };
    set(&mut headers, header::CONTENT_TYPE, "application/octet-stream");
    set(&mut headers, header::CONTENT_LENGTH, &count.to_string());
    if *method == Method::HEAD {
        return (code, headers).into_response();
    }
    if start > 0
        && let Err(error) = file.seek(SeekFrom::Start(start)).await
    {
        tracing::warn!(path = %path.display(), %error, "failed to seek in artifact");
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    }
    tracing::info!(path = %requested, status = code.as_u16(), start, bytes = count, "serving artifact");
    state.counters.bump(&state.counters.artifacts);
    if let (Some(timeline), Some(ip)) = (&state.timeline, super::peer(extensions)) {
        let detail = match range {
            RangeRequest::Partial { start, end } => format!("{requested} bytes {start}-{end}"),
            _ => format!("{requested} ({len} bytes)"),
        };
        timeline.record_at(ip, machinist_crds::machine::BootStepKind::Artifact, detail);
    }
    let body = Body::from_stream(ReaderStream::with_capacity(file.take(count), CHUNK));
    (code, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Partial { start: 0, end: 99 });
        assert_eq!(parse_range("bytes=900-", 1000), Partial { start: 900, end: 999 });
        assert_eq!(parse_range("bytes=900-5000", 1000), Partial { start: 900, end: 999 });
        assert_eq!(parse_range("bytes=-100", 1000), Partial { start: 900, end: 999 });
        assert_eq!(parse_range("bytes=-5000", 1000), Partial { start: 0, end: 999 });
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        for ignored in ["items=0-1", "bytes=0-1,5-6", "bytes=5-1", "bytes=a-b", "bytes=-", "bytes=+1-2", "bytes=1"] {
            assert_eq!(parse_range(ignored, 1000), Full, "{ignored}");
        }
    }

    #[test]
    fn validators_compare_weakly() {
        let tag = etag(100, SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1));
        assert_eq!(tag, "W/\"64-3b9aca00\"");
        assert!(none_match_hits(&tag, &tag));
        assert!(none_match_hits("\"64-3b9aca00\"", &tag));
        assert!(none_match_hits("\"x\", W/\"64-3b9aca00\"", &tag));
        assert!(none_match_hits("*", &tag));
        assert!(!none_match_hits("W/\"65-3b9aca00\"", &tag));
    }

    #[test]
    fn http_dates_round_trip() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(http_date(time).as_deref(), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn paths_stay_under_the_root() -> std::io::Result<()> {
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("secret"), "s")?;
        let dir = tempfile::tempdir()?;
        let root = std::fs::canonicalize(dir.path())?;
        std::fs::create_dir(root.join("boot"))?;
        std::fs::write(root.join("boot/vmlinuz"), "k")?;
        std::os::unix::fs::symlink(root.join("boot/vmlinuz"), root.join("inside-link"))?;
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("outside-link"))?;
        assert_eq!(resolve(&root, "boot/vmlinuz"), Ok(root.join("boot/vmlinuz")));
        assert_eq!(resolve(&root, "./boot//vmlinuz"), Ok(root.join("boot/vmlinuz")));
        assert_eq!(resolve(&root, "inside-link"), Ok(root.join("boot/vmlinuz")));
        assert_eq!(resolve(&root, "outside-link"), Err(Refusal::Forbidden));
        assert_eq!(resolve(&root, "../secret"), Err(Refusal::Forbidden));
        assert_eq!(resolve(&root, "boot/../../secret"), Err(Refusal::Forbidden));
        assert_eq!(resolve(&root, "/etc/passwd"), Err(Refusal::Forbidden));
        assert_eq!(resolve(&root, "boot"), Err(Refusal::NotFound));
        assert_eq!(resolve(&root, "missing"), Err(Refusal::NotFound));
        Ok(())
    }
}
