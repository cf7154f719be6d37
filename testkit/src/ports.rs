//! Free loopback ports for the nodes a test or benchmark starts.

use std::{
    net::{TcpListener, UdpSocket},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{Error, Result};

/// First port handed out (10000 is `--xds-files-listen`'s default, so start above it).
const LOW: u32 = 12_000;
/// How many ports are candidates: 12000..32000, below Linux's ephemeral range (32768-60999).
const SPAN: u32 = 20_000;

/// A free loopback port, TCP and UDP (bound then released), below Linux's ephemeral range
/// (32768-60999), a new one at each call of a process.
///
/// The ports the OS hands out for port 0 and for outgoing connections never land there, so a
/// port found free here is not taken by a node's own connection before the node it is meant
/// for binds it (with 25-30 nodes starting at once, a port 0 choice was taken that way:
/// "Address already in use"). Processes start at different offsets (from their pid), so test
/// binaries running at once rarely try the same ports.
pub fn free_port() -> Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = candidate(start, n);
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(Error::NoFreePort {
        low: LOW as u16,
        high: (LOW + SPAN) as u16,
    })
}

/// The `n`th candidate port of a process whose sequence starts at `start`.
fn candidate(start: u32, n: u32) -> u16 {
    (LOW + start.wrapping_add(n) % SPAN) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_stay_below_the_ephemeral_range_and_wrap() {
        assert_eq!(candidate(0, 0), 12_000);
        assert_eq!(candidate(SPAN - 1, 0), 31_999);
        assert_eq!(candidate(SPAN - 1, 1), 12_000);
    }

    #[test]
    fn ports_are_distinct_and_bindable() {
        let a = free_port().expect("a free port");
        let b = free_port().expect("another free port");
        assert_ne!(a, b);
        for p in [a, b] {
            assert!((12_000..32_000).contains(&p), "{p}");
            TcpListener::bind(("127.0.0.1", p)).expect("free for TCP");
            UdpSocket::bind(("127.0.0.1", p)).expect("free for UDP");
        }
    }
}
