//! Configuration of the TFTP service, with each option's default, limit and RFC.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::TftpError;

/// Smallest block size RFC 2348 allows.
pub const MIN_BLOCK_SIZE: u16 = 8;
/// Largest block size RFC 2348 allows.
pub const MAX_BLOCK_SIZE: u16 = 65464;
/// Default ceiling on the negotiated block size: the largest that fits an Ethernet frame
/// (1500 − 20 IPv4 − 8 UDP − 4 TFTP), so transfers are never IP-fragmented.
pub const DEFAULT_BLOCK_SIZE_LIMIT: u16 = 1468;
/// Default ceiling on the negotiated window size (RFC 7440 allows 1–65535).
pub const DEFAULT_WINDOW_SIZE_LIMIT: u16 = 64;
/// Default retransmission timeout, used unless the client asks for another (RFC 2349).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest timeout RFC 2349 allows a client to ask for, and the largest accepted here.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(255);
/// Default number of times a block (or window) is resent before the transfer is abandoned.
pub const DEFAULT_MAX_SEND_RETRIES: u32 = 10;

/// How the TFTP service runs. See the crate documentation for the option table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TftpConfig {
    /// Address to listen on. `None` (the default): nothing is bound and TFTP stays off.
    pub bind: Option<SocketAddr>,
    /// The directory served; every request resolves under it.
    pub root: PathBuf,
    /// Retransmission timeout when the client does not negotiate `timeout` (RFC 2349).
    /// Default [`DEFAULT_TIMEOUT`]; between 1 ms and [`MAX_TIMEOUT`].
    pub timeout: Duration,
    /// Ceiling on the block size a client may negotiate with `blksize` (RFC 2348).
    /// Default [`DEFAULT_BLOCK_SIZE_LIMIT`]; between [`MIN_BLOCK_SIZE`] and [`MAX_BLOCK_SIZE`].
    pub block_size_limit: u16,
    /// Ceiling on the window size a client may negotiate with `windowsize` (RFC 7440).
    /// Default [`DEFAULT_WINDOW_SIZE_LIMIT`]; at least 1 (1 is plain RFC 1350 lock-step).
    pub window_size_limit: u16,
    /// Resends of a block before a transfer is abandoned. Default
    /// [`DEFAULT_MAX_SEND_RETRIES`]; at least 1.
    pub max_send_retries: u32,
}

impl TftpConfig {
    /// A configuration serving `root`, with every other option at its default (nothing bound).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            bind: None,
            root: root.into(),
            timeout: DEFAULT_TIMEOUT,
            block_size_limit: DEFAULT_BLOCK_SIZE_LIMIT,
            window_size_limit: DEFAULT_WINDOW_SIZE_LIMIT,
            max_send_retries: DEFAULT_MAX_SEND_RETRIES,
        }
    }

    /// The same configuration, listening on `addr`.
    pub fn with_bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// Checks every option against its limits.
    pub fn validate(&self) -> Result<(), TftpError> {
        let invalid = |option: &'static str, reason: String| Err(TftpError::InvalidOption { option, reason });
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.block_size_limit) {
            return invalid(
                "block_size_limit",
                format!("{} is not within {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE} (RFC 2348)", self.block_size_limit),
            );
        }
        if self.window_size_limit == 0 {
            return invalid("window_size_limit", "must be at least 1 (RFC 7440)".into());
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return invalid("timeout", format!("{:?} is not within 1ms..=255s (RFC 2349)", self.timeout));
        }
        if self.max_send_retries == 0 {
            return invalid("max_send_retries", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bind_nothing_and_validate() {
        let config = TftpConfig::new("/srv/tftp");
        assert_eq!(config.bind, None);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn limits_are_checked() {
        let base = TftpConfig::new("/srv/tftp");
        let cases = [
            TftpConfig { block_size_limit: 7, ..base.clone() },
            TftpConfig { block_size_limit: 65465, ..base.clone() },
            TftpConfig { window_size_limit: 0, ..base.clone() },
            TftpConfig { timeout: Duration::ZERO, ..base.clone() },
            TftpConfig { timeout: Duration::from_secs(256), ..base.clone() },
            TftpConfig { max_send_retries: 0, ..base.clone() },
        ];
        for case in cases {
            assert!(matches!(case.validate(), Err(TftpError::InvalidOption { .. })), "{case:?}");
        }
    }
}
