//! Counters of what the DHCP service did with each packet (no global state: they live in
//! the [`Engine`](crate::Engine) and are read with [`Counters::snapshot`]).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, shared by the server tasks.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of the counters at one moment.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CountersSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl CountersSnapshot {
            /// Every counter with its name, in declaration order (for metrics exporters).
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }

        impl Counters {
            /// Reads every counter.
            pub fn snapshot(&self) -> CountersSnapshot {
                CountersSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Packets received.
    received,
    /// Packets dropped because they could not be parsed or were not valid DHCP requests.
    malformed,
    /// Valid packets dropped on purpose (not for us, ignored client, no address free…).
    dropped,
    /// Clients whose MAC the directory did not know.
    unknown_clients,
    /// DHCPOFFERs built.
    offers,
    /// DHCPACKs built (including INFORM and proxy acks).
    acks,
    /// DHCPNAKs built.
    naks,
    /// DHCPRELEASEs applied.
    releases,
    /// DHCPDECLINEs applied.
    declines,
    /// Requests that found no free address.
    exhausted,
    /// Lease database errors (the packet gets no reply).
    store_errors,
    /// Packets whose handling exceeded the per-packet timeout.
    timeouts,
    /// Replies that could not be sent.
    send_errors,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
