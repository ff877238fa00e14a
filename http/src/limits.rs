//! Connection caps: a total, and optionally one per client address (the socket peer). Admission
//! is a permit held for the connection's life; dropping it frees the slots.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The caps of one listener and its connections now.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: Option<usize>,
    state: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; its slots are freed when it is dropped.
#[derive(Debug)]
pub struct Permit {
    ip: IpAddr,
    state: Arc<Mutex<Open>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.state.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    /// At most `max_total` connections, and `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: Option<usize>) -> ConnectionLimits {
        ConnectionLimits {
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.map(|n| n.max(1)),
            state: Arc::new(Mutex::new(Open::default())),
        }
    }

    /// A permit for a connection from `ip`, or `None` over a cap.
    pub fn admit(&self, ip: IpAddr) -> Option<Permit> {
        let mut open = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            return None;
        }
        let from_ip = open.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip.is_some_and(|max| from_ip >= max) {
            return None;
        }
        open.total += 1;
        open.per_ip.insert(ip, from_ip + 1);
        Some(Permit {
            ip,
            state: self.state.clone(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_address_and_frees_on_drop() {
        let l = ConnectionLimits::new(3, Some(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert!(l.admit(a).is_none(), "per-address cap");
        let _b1 = l.admit(b).unwrap();
        assert!(l.admit(b).is_none(), "total cap");
        assert_eq!(l.open(), 3);
        drop(a1);
        assert_eq!(l.open(), 2);
        let _b2 = l.admit(b).unwrap();
        assert!(l.admit(a).is_none());
    }
}
