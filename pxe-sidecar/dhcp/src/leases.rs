//! Lease state, persisted in SQLite so that a restart never hands one address to two machines.
//!
//! Why SQLite (rusqlite, bundled) rather than an append log: commits are durable
//! (`journal_mode=WAL`, `synchronous=FULL`: the WAL is fsync'd at every commit), the `ip`
//! primary key makes "one address, one holder" a database invariant, and there is no log
//! compaction to write.
//!
//! Writes go through a [`Journal`]: one thread owns the connection and commits every binding
//! queued while the previous commit was being fsync'd in one transaction (group commit). A
//! binding is applied in memory at once — so no other client can be offered the address —
//! and the ACK waits, outside the engine's lock, until its commit is durable
//! ([`LeaseStore::bind_deferred`] → [`Pending::wait`]). One fsync then serves many clients
//! instead of one, and offers never wait behind fsyncs. The whole table is also kept in memory
//! so that lookups never touch the disk; offers are memory-only (a client whose offer was lost
//! in a restart simply gets a fresh one).
//!
//! Expired leases stay in the table (so a returning client gets its previous address back) but
//! count as free for everyone else. Times are Unix seconds passed in by the caller.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, params};

use crate::config::DynamicRange;
use crate::mac::MacAddr;

/// A lease database error.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// SQLite failed.
    #[error("lease database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The journal thread is gone (it failed to start, or the store is being dropped).
    #[error("lease database: the journal thread stopped")]
    JournalStopped,
    /// A group commit failed.
    #[error("lease database: commit failed: {0}")]
    Commit(String),
    /// A row that does not parse.
    #[error("lease database holds a bad row for {ip}: {reason}")]
    BadRow {
        /// The row's address.
        ip: Ipv4Addr,
        /// What is wrong.
        reason: String,
    },
}

/// One binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The client.
    pub mac: MacAddr,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Unix time at which the lease ends.
    pub expires: u64,
    /// Declined by a client (DHCPDECLINE): the address is in use by something unknown.
    pub declined: bool,
}

/// Who holds an address now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Nobody.
    Free,
    /// A client, by lease or outstanding offer.
    Client(MacAddr),
    /// Declined and quarantined until it expires.
    Declined,
}

/// One write of the journal.
#[derive(Debug)]
enum Op {
    /// Bind `ip` to `mac` until `expires`, dropping the client's `previous` address.
    Bind { ip: Ipv4Addr, mac: MacAddr, expires: u64, previous: Option<Ipv4Addr> },
    /// End the lease on `ip` at `at`.
    Release { ip: Ipv4Addr, at: u64 },
    /// Quarantine `ip` until `until`.
    Decline { ip: Ipv4Addr, mac: MacAddr, until: u64 },
}

/// Most writes committed in one transaction.
const GROUP_MAX: usize = 512;

type Done = mpsc::Sender<Result<(), String>>;

/// The thread that owns the database connection and commits writes in groups.
#[derive(Debug)]
pub struct Journal {
    queue: mpsc::Sender<(Op, Done)>,
}

impl Journal {
    fn start(db: Connection) -> Result<Self, LeaseError> {
        let (queue, writes) = mpsc::channel::<(Op, Done)>();
        std::thread::Builder::new()
            .name("dhcp-lease-journal".into())
            .spawn(move || Self::run(db, &writes))
            .map_err(|e| LeaseError::Commit(format!("failed to start the journal thread: {e}")))?;
        Ok(Self { queue })
    }

    fn run(mut db: Connection, writes: &mpsc::Receiver<(Op, Done)>) {
        // Ends when every sender (the store) is gone.
        while let Ok(first) = writes.recv() {
            let mut group = vec![first];
            while group.len() < GROUP_MAX {
                match writes.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let result = Self::commit(&mut db, group.iter().map(|(op, _)| op)).map_err(|e| e.to_string());
            for (_, done) in group {
                // A waiter that gave up (packet timeout) no longer listens: nothing to do.
                let _ = done.send(result.clone());
            }
        }
    }

    fn commit<'a>(db: &mut Connection, ops: impl Iterator<Item = &'a Op>) -> Result<(), rusqlite::Error> {
        let tx = db.transaction()?;
        for op in ops {
            match *op {
                Op::Bind { ip, mac, expires, previous } => {
                    if let Some(old) = previous {
                        tx.execute(
                            "DELETE FROM leases WHERE ip = ?1 AND mac = ?2",
                            params![u32::from(old), mac.to_string()],
                        )?;
                    }
                    tx.execute(
                        "INSERT INTO leases (ip, mac, expires, declined) VALUES (?1, ?2, ?3, 0)
                         ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, expires = excluded.expires, declined = 0",
                        params![u32::from(ip), mac.to_string(), to_sql(expires)],
                    )?;
                }
                Op::Release { ip, at } => {
                    tx.execute("UPDATE leases SET expires = ?1 WHERE ip = ?2", params![to_sql(at), u32::from(ip)])?;
                }
                Op::Decline { ip, mac, until } => {
                    tx.execute(
                        "INSERT INTO leases (ip, mac, expires, declined) VALUES (?1, ?2, ?3, 1)
                         ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, expires = excluded.expires, declined = 1",
                        params![u32::from(ip), mac.to_string(), to_sql(until)],
                    )?;
                }
            }
        }
        tx.commit()
    }

    fn submit(&self, op: Op) -> Pending {
        let (done, result) = mpsc::channel();
        match self.queue.send((op, done)) {
            Ok(()) => Pending { result: Some(result) },
            Err(_) => Pending { result: None },
        }
    }
}

/// A write queued in the journal; [`wait`](Self::wait) returns once it is durable.
#[derive(Debug)]
#[must_use = "a binding is only durable once waited for"]
pub struct Pending {
    result: Option<mpsc::Receiver<Result<(), String>>>,
}

impl Pending {
    /// Blocks until the write's group is committed (or failed).
    pub fn wait(self) -> Result<(), LeaseError> {
        let result = self.result.ok_or(LeaseError::JournalStopped)?;
        result.recv().map_err(|_| LeaseError::JournalStopped)?.map_err(LeaseError::Commit)
    }
}

/// The lease table.
#[derive(Debug)]
pub struct LeaseStore {
    journal: Journal,
    by_ip: HashMap<Ipv4Addr, Lease>,
    by_mac: HashMap<MacAddr, Ipv4Addr>,
    offers: HashMap<Ipv4Addr, (MacAddr, u64)>,
}

const OFFER_PURGE_THRESHOLD: usize = 4096;

impl LeaseStore {
    /// Opens (creating if needed) the database at `path` and loads its leases.
    pub fn open(path: &Path) -> Result<Self, LeaseError> {
        Self::with(Connection::open(path)?)
    }

    /// A database in memory (nothing survives the process).
    pub fn in_memory() -> Result<Self, LeaseError> {
        Self::with(Connection::open_in_memory()?)
    }

    fn with(db: Connection) -> Result<Self, LeaseError> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS leases (
                ip INTEGER PRIMARY KEY,
                mac TEXT NOT NULL,
                expires INTEGER NOT NULL,
                declined INTEGER NOT NULL DEFAULT 0
            );",
        )?;
        let rows: Vec<(u32, String, i64, bool)> = {
            let mut stmt = db.prepare("SELECT ip, mac, expires, declined FROM leases")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?
        };
        let mut store = Self {
            journal: Journal::start(db)?,
            by_ip: HashMap::new(),
            by_mac: HashMap::new(),
            offers: HashMap::new(),
        };
        for (ip, mac, expires, declined) in rows {
            let ip = Ipv4Addr::from(ip);
            let mac: MacAddr =
                mac.parse().map_err(|e: crate::mac::BadMac| LeaseError::BadRow { ip, reason: e.to_string() })?;
            let expires = u64::try_from(expires).map_err(|e| LeaseError::BadRow { ip, reason: e.to_string() })?;
            store.remember(Lease { mac, ip, expires, declined });
        }
        Ok(store)
    }

    fn remember(&mut self, lease: Lease) {
        if let Some(old) = self.by_ip.insert(lease.ip, lease)
            && old.mac != lease.mac
            && self.by_mac.get(&old.mac) == Some(&lease.ip)
        {
            self.by_mac.remove(&old.mac);
        }
        if !lease.declined {
            self.by_mac.insert(lease.mac, lease.ip);
        }
    }

    /// Who holds `ip` at `now`.
    pub fn holder(&self, ip: Ipv4Addr, now: u64) -> Holder {
        match self.by_ip.get(&ip) {
            Some(l) if l.expires > now && l.declined => return Holder::Declined,
            Some(l) if l.expires > now => return Holder::Client(l.mac),
            _ => {}
        }
        match self.offers.get(&ip) {
            Some((mac, until)) if *until > now => Holder::Client(*mac),
            _ => Holder::Free,
        }
    }

    /// Whether `mac` may have `ip` at `now` (free, or already its own).
    pub fn available_for(&self, ip: Ipv4Addr, mac: MacAddr, now: u64) -> bool {
        match self.holder(ip, now) {
            Holder::Free => true,
            Holder::Client(holder) => holder == mac,
            Holder::Declined => false,
        }
    }

    /// The lease `mac` holds or last held (possibly expired).
    pub fn lease_of(&self, mac: MacAddr) -> Option<Lease> {
        self.by_mac.get(&mac).and_then(|ip| self.by_ip.get(ip)).copied()
    }

    /// The lease on `ip`, if any (possibly expired).
    pub fn lease_on(&self, ip: Ipv4Addr) -> Option<Lease> {
        self.by_ip.get(&ip).copied()
    }

    /// An address of `range` for `mac`: its previous one if still available, else the first
    /// never-leased address, else the first whose lease expired.
    pub fn pick(&self, range: &DynamicRange, mac: MacAddr, now: u64) -> Option<Ipv4Addr> {
        if let Some(lease) = self.lease_of(mac)
            && range.contains(lease.ip)
            && self.available_for(lease.ip, mac, now)
        {
            return Some(lease.ip);
        }
        if let Some((ip, _)) = self.offers.iter().find(|(_, (m, until))| *m == mac && *until > now)
            && range.contains(*ip)
        {
            return Some(*ip);
        }
        range
            .addresses()
            .find(|ip| !self.by_ip.contains_key(ip) && self.available_for(*ip, mac, now))
            .or_else(|| range.addresses().find(|ip| self.available_for(*ip, mac, now)))
    }

    /// Holds `ip` for `mac` until `until` (memory only).
    pub fn offer(&mut self, ip: Ipv4Addr, mac: MacAddr, until: u64, now: u64) {
        if self.offers.len() >= OFFER_PURGE_THRESHOLD {
            self.offers.retain(|_, (_, u)| *u > now);
        }
        self.offers.retain(|_, (m, _)| *m != mac);
        self.offers.insert(ip, (mac, until));
    }

    /// Binds `ip` to `mac` until `expires`, durably; the client's other address, if any, is
    /// let go. The caller has checked [`available_for`](Self::available_for).
    pub fn bind(&mut self, ip: Ipv4Addr, mac: MacAddr, expires: u64) -> Result<Lease, LeaseError> {
        let (lease, pending) = self.bind_deferred(ip, mac, expires);
        pending.wait()?;
        Ok(lease)
    }

    /// [`bind`](Self::bind) applied in memory now; durable once the [`Pending`] is waited for
    /// (do that after letting go of any lock on the store, so other packets proceed and the
    /// write joins a group commit). Until then the address is held for `mac`: if the commit
    /// fails, it stays held (in memory) until `expires` — never given to two clients.
    pub fn bind_deferred(&mut self, ip: Ipv4Addr, mac: MacAddr, expires: u64) -> (Lease, Pending) {
        let previous = self.by_mac.get(&mac).copied().filter(|old| *old != ip);
        let pending = self.journal.submit(Op::Bind { ip, mac, expires, previous });
        if let Some(old) = previous {
            self.by_ip.remove(&old);
        }
        self.offers.remove(&ip);
        let lease = Lease { mac, ip, expires, declined: false };
        self.remember(lease);
        (lease, pending)
    }

    /// Ends `mac`'s lease on `ip` at `now` (DHCPRELEASE). Returns whether it held it.
    pub fn release(&mut self, ip: Ipv4Addr, mac: MacAddr, now: u64) -> Result<bool, LeaseError> {
        self.offers.retain(|_, (m, _)| *m != mac);
        match self.by_ip.get(&ip) {
            Some(l) if l.mac == mac && !l.declined => {
                let lease = Lease { expires: now, ..*l };
                self.journal.submit(Op::Release { ip, at: now }).wait()?;
                self.remember(lease);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Quarantines `ip` until `until` after `mac` declined it (DHCPDECLINE). Returns whether
    /// the address was `mac`'s to decline.
    pub fn decline(&mut self, ip: Ipv4Addr, mac: MacAddr, until: u64, now: u64) -> Result<bool, LeaseError> {
        if !self.available_for(ip, mac, now) {
            return Ok(false);
        }
        self.journal.submit(Op::Decline { ip, mac, until }).wait()?;
        self.offers.remove(&ip);
        if self.by_mac.get(&mac) == Some(&ip) {
            self.by_mac.remove(&mac);
        }
        self.remember(Lease { mac, ip, expires: until, declined: true });
        Ok(true)
    }
}

fn to_sql(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::NetworkSettings;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

    fn range() -> DynamicRange {
        DynamicRange {
            start: Ipv4Addr::new(10, 0, 0, 10),
            end: Ipv4Addr::new(10, 0, 0, 11),
            network: NetworkSettings { netmask: Some(Ipv4Addr::new(255, 255, 255, 0)), ..Default::default() },
        }
    }

    #[test]
    fn offers_hold_addresses_until_they_expire() -> Result<(), LeaseError> {
        let mut s = LeaseStore::in_memory()?;
        let ip =
            s.pick(&range(), A, 100).ok_or(LeaseError::BadRow { ip: Ipv4Addr::UNSPECIFIED, reason: "none".into() })?;
        s.offer(ip, A, 160, 100);
        assert_eq!(s.holder(ip, 100), Holder::Client(A));
        assert_ne!(s.pick(&range(), B, 100), Some(ip));
        assert_eq!(s.pick(&range(), A, 100), Some(ip));
        assert_eq!(s.holder(ip, 160), Holder::Free);
        Ok(())
    }

    #[test]
    fn bound_leases_survive_a_restart_and_expire() -> Result<(), LeaseError> {
        let dir =
            tempfile::tempdir().map_err(|e| LeaseError::BadRow { ip: Ipv4Addr::UNSPECIFIED, reason: e.to_string() })?;
        let path = dir.path().join("leases.sqlite");
        let ip = Ipv4Addr::new(10, 0, 0, 10);
        {
            let mut s = LeaseStore::open(&path)?;
            s.bind(ip, A, 1000)?;
        }
        let mut s = LeaseStore::open(&path)?;
        assert_eq!(s.holder(ip, 500), Holder::Client(A));
        assert!(!s.available_for(ip, B, 500));
        assert_eq!(s.pick(&range(), B, 500), Some(Ipv4Addr::new(10, 0, 0, 11)));
        // expired: free for others, but A would get it back first
        assert!(s.available_for(ip, B, 1000));
        assert_eq!(s.pick(&range(), A, 2000), Some(ip));
        // rebinding A elsewhere frees the old address
        s.bind(Ipv4Addr::new(10, 0, 0, 11), A, 3000)?;
        assert_eq!(s.lease_on(ip), None);
        Ok(())
    }

    #[test]
    fn concurrent_bindings_share_commits_and_all_survive_a_restart() -> Result<(), LeaseError> {
        let dir = tempfile::tempdir().map_err(|e| LeaseError::Commit(e.to_string()))?;
        let path = dir.path().join("leases.sqlite");
        let store = std::sync::Arc::new(std::sync::Mutex::new(LeaseStore::open(&path)?));
        let threads: Vec<_> = (0..64u8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mac = MacAddr([2, 0, 0, 0, 1, i]);
                    let ip = Ipv4Addr::new(10, 0, 1, i);
                    // As the engine does: apply under the lock, wait for durability without it.
                    let pending = match store.lock() {
                        Ok(mut leases) => leases.bind_deferred(ip, mac, 5000).1,
                        Err(_) => return Err(LeaseError::JournalStopped),
                    };
                    pending.wait()
                })
            })
            .collect();
        for thread in threads {
            thread.join().map_err(|_| LeaseError::JournalStopped)??;
        }
        drop(store);
        let reopened = LeaseStore::open(&path)?;
        for i in 0..64u8 {
            assert_eq!(reopened.holder(Ipv4Addr::new(10, 0, 1, i), 100), Holder::Client(MacAddr([2, 0, 0, 0, 1, i])));
        }
        Ok(())
    }

    #[test]
    fn release_and_decline() -> Result<(), LeaseError> {
        let mut s = LeaseStore::in_memory()?;
        let ip = Ipv4Addr::new(10, 0, 0, 10);
        s.bind(ip, A, 1000)?;
        assert!(!s.release(ip, B, 10)?, "B cannot release A's lease");
        assert!(s.release(ip, A, 10)?);
        assert_eq!(s.holder(ip, 10), Holder::Free);
        assert!(s.decline(ip, B, 500, 10)?);
        assert_eq!(s.holder(ip, 10), Holder::Declined);
        assert!(!s.available_for(ip, B, 10));
        assert_eq!(s.pick(&range(), A, 10), Some(Ipv4Addr::new(10, 0, 0, 11)));
        assert_eq!(s.holder(ip, 500), Holder::Free);
        Ok(())
    }
}
