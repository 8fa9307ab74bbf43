//! Exclusive address blocks: a running lab owns every `127.0.<block>.0/24` its servers live in,
//! so two labs on one machine never put servers (and their Talos and Kubernetes listeners) on
//! the same addresses.
//!
//! The claim is a listening TCP socket on the block's network address and the Talos port,
//! `127.0.<block>.0:50000`, held for as long as the lab runs. Servers get hosts `.1..=.254`, so
//! no lab listener ever binds `.0`. Why a socket and not a lock file:
//!
//! * the kernel releases it when the process dies, however it dies (SIGKILL included), so a
//!   killed lab never leaves a stale claim behind and nothing has to be cleaned up;
//! * it is scoped exactly like the conflict it prevents: addresses collide only inside one
//!   network namespace, and so does the socket (labs in separate namespaces, such as parallel
//!   test runs under `unshare -n`, keep their whole range of blocks each), where a lock file in
//!   a shared runtime directory would make them compete for blocks they do not share;
//! * it needs no writable, agreed-upon directory.
//!
//! A second `bind` of the same address and port fails with `EADDRINUSE` while the first socket
//! listens (Linux lets two sockets share an address with `SO_REUSEADDR` only when neither
//! listens, `socket(7)`), which is what makes the claim exclusive.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::Mutex;

use crate::LabError;

/// The port of the claim socket (the Talos API port, on the block's `.0` address).
const CLAIM_PORT: u16 = crate::talos::TALOS_API_PORT;

/// Where a lab picks a block when none is configured (and where it starts looking for a free
/// one): `127.0.10.0` and up, leaving the lowest blocks to whoever else uses loopback.
const AUTO_FIRST: u8 = 10;

/// The blocks one lab holds.
#[derive(Debug, Default)]
pub(crate) struct BlockClaims {
    held: Mutex<BTreeMap<u8, TcpListener>>,
}

/// The address of the claim socket of `block`.
pub(crate) fn claim_addr(block: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, block, 0), CLAIM_PORT)
}

/// Tries to claim `block`: `Ok(None)` when another process (or another lab in this one)
/// holds it.
fn try_claim(block: u8) -> Result<Option<TcpListener>, std::io::Error> {
    match TcpListener::bind(claim_addr(block)) {
        Ok(socket) => Ok(Some(socket)),
        Err(e) if e.kind() == ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

impl BlockClaims {
    /// Whether this lab holds `block`, claiming it now if it is free. `Ok(false)`: another lab
    /// holds it.
    pub fn ensure(&self, block: u8) -> Result<bool, LabError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.contains_key(&block) {
            return Ok(true);
        }
        match try_claim(block).map_err(|source| claim_error(block, source))? {
            Some(socket) => {
                held.insert(block, socket);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Claims `preferred` when it is free, else the first free block after it (wrapping
    /// around `1..=255`). `None` starts at a random block in `10..=250`.
    pub fn claim_free(&self, preferred: Option<u8>) -> Result<u8, LabError> {
        let start = preferred.unwrap_or_else(|| {
            use rand::Rng;
            rand::rng().random_range(AUTO_FIRST..=250)
        });
        for offset in 0..255u16 {
            // 1..=255, starting at `start`.
            let block = ((u16::from(start.max(1)) - 1 + offset) % 255 + 1) as u8;
            if self.ensure(block)? {
                return Ok(block);
            }
        }
        Err(LabError::NoFreeBlock)
    }

    /// Gives every block up (a lab that has stopped serving its addresses).
    pub fn release_all(&self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The blocks held, in order.
    #[cfg(test)]
    pub fn held(&self) -> Vec<u8> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.keys().copied().collect()
    }
}

fn claim_error(block: u8, source: std::io::Error) -> LabError {
    LabError::ClaimBlock {
        addr: claim_addr(block).into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_block_is_not_claimed_twice_and_a_dropped_claim_frees_it() {
        let a = BlockClaims::default();
        let b = BlockClaims::default();
        let got = a.claim_free(Some(77)).unwrap();
        assert!(a.ensure(got).unwrap(), "the holder keeps it");
        assert!(!b.ensure(got).unwrap(), "another lab cannot claim it");
        let other = b.claim_free(Some(got)).unwrap();
        assert_ne!(other, got, "the second lab moves on to a free block");
        assert_eq!(b.held(), vec![other]);
        drop(a);
        assert!(
            b.ensure(got).unwrap(),
            "a lab that is gone releases its block"
        );
    }
}
