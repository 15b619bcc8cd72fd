//! The agent's log: written to the console (stderr) and kept, the newest bytes only, for
//! upload to the boot services when something fails.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A bounded copy of everything logged.
#[derive(Clone, Debug)]
pub struct LogBuffer {
    kept: Arc<Mutex<Vec<u8>>>,
    limit: usize,
}

impl LogBuffer {
    /// Keeps at most `limit` bytes (the newest).
    pub fn new(limit: usize) -> Self {
        Self { kept: Arc::default(), limit }
    }

    /// What is kept, as text (a cut in the middle of a character is replaced).
    pub fn text(&self) -> String {
        self.kept.lock().map(|kept| String::from_utf8_lossy(&kept).into_owned()).unwrap_or_default()
    }

    fn keep(&self, bytes: &[u8]) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.extend_from_slice(bytes);
            if kept.len() > self.limit {
                let excess = kept.len() - self.limit;
                kept.drain(..excess);
            }
        }
    }
}

/// Writes to stderr and to the buffer.
#[derive(Debug)]
pub struct Tee(LogBuffer);

impl Write for Tee {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.keep(bytes);
        // The console may be gone (no serial port): the buffer still has it.
        let _ = std::io::stderr().write_all(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = Tee;

    fn make_writer(&'a self) -> Self::Writer {
        Tee(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_bytes_are_kept() {
        let log = LogBuffer::new(8);
        let mut tee = Tee(log.clone());
        tee.write_all(b"0123456789").unwrap();
        assert_eq!(log.text(), "23456789");
        tee.write_all(b"ab").unwrap();
        assert_eq!(log.text(), "456789ab");
    }
}
