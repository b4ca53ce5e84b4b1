//! Whose application is calling: on a machine several people use at once (a terminal server, a
//! shared reading room), every user's loopback ports are reachable by everyone's applications,
//! and one user's application must never join, read or change another user's session. The hub
//! (and the CCOW bridge) serve a loopback connection only when the process at the other end runs
//! as the same OS user as Lockstep.
//!
//! On Linux the owner of the peer socket is read from `/proc/net/tcp` and `/proc/net/tcp6`.
//! Elsewhere the owner is not known here (Windows would ask `GetExtendedTcpTable`), and calls
//! are served as before: [`same_user`] says so by returning `Unknown`.

use std::net::{IpAddr, SocketAddr};

/// What is known of the user at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    SameUser,
    /// Another OS user (its uid).
    OtherUser(u32),
    /// The owner could not be found (not Linux, or the socket is gone).
    Unknown,
}

/// Whether the process connected from `peer` to Lockstep's `local` address runs as Lockstep's
/// user.
pub fn same_user(peer: SocketAddr, local: SocketAddr) -> Peer {
    let (Some(mine), Some(theirs)) = (own_uid(), socket_owner(peer, local)) else {
        return Peer::Unknown;
    };
    if mine == theirs {
        Peer::SameUser
    } else {
        Peer::OtherUser(theirs)
    }
}

#[cfg(target_os = "linux")]
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(not(target_os = "linux"))]
fn own_uid() -> Option<u32> {
    None
}

/// The socket listening on a loopback port, as the kernel's table shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The uid that opened it.
    pub uid: u32,
    /// The socket's inode: `/proc/<pid>/fd/*` links to `socket:[inode]` in the process that
    /// holds it.
    pub inode: u64,
}

/// The uid of the process listening on loopback `port` (IPv4 or IPv6), where it can be known.
pub fn listener_owner(port: u16) -> Option<u32> {
    listener(port).map(|l| l.uid)
}

/// The socket listening on loopback `port` (IPv4 or IPv6), where it can be known.
pub fn listener(port: u16) -> Option<Listener> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .find_map(|table| listener_in(&table, port))
}

/// The row listening (state 0A) on `port` in a `/proc/net/tcp*` table.
fn listener_in(table: &str, port: u16) -> Option<Listener> {
    table.lines().skip(1).find_map(|row| {
        let columns: Vec<&str> = row.split_whitespace().collect();
        let (local, state) = (columns.get(1)?, columns.get(3)?);
        let (uid, inode) = (columns.get(7)?, columns.get(9)?);
        let listening_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
        if *state != "0A" || listening_port != port {
            return None;
        }
        Some(Listener {
            uid: uid.parse().ok()?,
            inode: inode.parse().ok()?,
        })
    })
}

/// This process's uid, where it can be known.
pub fn own_user() -> Option<u32> {
    own_uid()
}

/// The uid owning the socket whose local end is `peer` and remote end `local`.
fn socket_owner(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .find_map(|table| owner_in(&table, peer, local))
}

/// Finds the row of a `/proc/net/tcp*` table for the connection `from` → `to`; its uid.
fn owner_in(table: &str, from: SocketAddr, to: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|row| {
        let columns: Vec<&str> = row.split_whitespace().collect();
        let (local, remote, uid) = (columns.get(1)?, columns.get(2)?, columns.get(7)?);
        (same_address(local, from) && same_address(remote, to))
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// Whether a table's `ADDR:PORT` (hex, the address in the kernel's byte order) is `addr`.
fn same_address(hex: &str, addr: SocketAddr) -> bool {
    let Some((ip, port)) = hex.split_once(':') else {
        return false;
    };
    if u16::from_str_radix(port, 16).ok() != Some(addr.port()) {
        return false;
    }
    let Some(bytes) = (0..ip.len())
        .step_by(2)
        .map(|i| {
            ip.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    // Each 32-bit word is written in host order (little-endian on the machines Lockstep runs).
    let words: Vec<u8> = bytes
        .chunks(4)
        .flat_map(|w| w.iter().rev().copied().collect::<Vec<_>>())
        .collect();
    let wanted = match addr.ip() {
        IpAddr::V4(v4) => match words.len() {
            4 => return words == v4.octets(),
            // An IPv4 connection in the IPv6 table: ::ffff:a.b.c.d.
            16 => v4.to_ipv6_mapped().octets().to_vec(),
            _ => return false,
        },
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    words == wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    // As the kernel writes them: 127.0.0.1:44610 -> 127.0.0.1:2116 owned by 1000, and the
    // server's side of it owned by 0.
    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0844 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:AE42 0100007F:0844 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0844 0100007F:AE42 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn the_peer_socket_s_owner_is_found_in_the_table() {
        let server: SocketAddr = "127.0.0.1:2116".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:44610".parse().unwrap();
        assert_eq!(owner_in(TABLE, client, server), Some(1000));
        assert_eq!(owner_in(TABLE, server, client), Some(0));
        let elsewhere: SocketAddr = "127.0.0.1:44611".parse().unwrap();
        assert_eq!(owner_in(TABLE, elsewhere, server), None);
    }

    #[test]
    fn the_listener_of_a_port_is_found_in_the_table() {
        assert_eq!(
            listener_in(TABLE, 2116),
            Some(Listener { uid: 0, inode: 1 })
        );
        assert_eq!(listener_in(TABLE, 44610), None);
    }

    #[test]
    fn ipv4_in_the_ipv6_table_is_matched() {
        // ::ffff:127.0.0.1 port 0x0844
        let hex = "0000000000000000FFFF00000100007F:0844";
        assert!(same_address(hex, "127.0.0.1:2116".parse().unwrap()));
        assert!(!same_address(hex, "127.0.0.2:2116".parse().unwrap()));
        assert!(!same_address("garbage", "127.0.0.1:2116".parse().unwrap()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_connection_of_this_process_is_its_own_user() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(local).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(same_user(peer, local), Peer::SameUser);
    }
}
