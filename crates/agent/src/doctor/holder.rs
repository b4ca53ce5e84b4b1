//! Who holds a port: the user, and the program where this user may see it. Linux reads the
//! kernel's socket table and each process's open files; elsewhere the holder is not known here
//! (Windows would ask `GetExtendedTcpTable` for the owning process) and the doctor says only
//! that the port is taken.

use std::fmt;

/// The process listening on a port, as far as it can be seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Holder {
    pub uid: u32,
    /// The user's name, where the machine knows it.
    pub user: Option<String>,
    /// The program and its pid, where this user may see it (its own, or everyone's as root).
    pub program: Option<(String, u32)>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.program {
            Some((name, pid)) => write!(f, "`{name}` (pid {pid}) of ")?,
            None => write!(f, "a program of ")?,
        }
        match &self.user {
            Some(user) => write!(f, "user {user} (uid {})", self.uid),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// The holder of loopback `port`, if it can be found.
pub(super) fn holder(port: u16) -> Option<Holder> {
    let listener = lockstep_hub::peer::listener(port)?;
    Some(Holder {
        uid: listener.uid,
        user: user_name(listener.uid),
        program: program_with_socket(listener.inode),
    })
}

/// The process with `socket:[inode]` among its open files, and its name.
fn program_with_socket(inode: u64) -> Option<(String, u32)> {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let holds = std::fs::read_dir(entry.path().join("fd"))
                .ok()?
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == *wanted));
            if !holds {
                return None;
            }
            let name = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            Some((name.trim().to_owned(), pid))
        })
}

/// The user's name from the password database.
#[cfg(unix)]
fn user_name(uid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the stated size; the name, when found, points
    // into `buffer`, which outlives its use here.
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name is a NUL-terminated string inside `buffer`.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(not(unix))]
fn user_name(_uid: u32) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_port_this_process_holds_is_traced_to_it_and_its_user() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let found = holder(port).expect("the holder of a port this process holds");
        assert_eq!(Some(found.uid), lockstep_hub::peer::own_user());
        let (_, pid) = found
            .program
            .clone()
            .expect("this process's own socket is visible");
        assert_eq!(pid, std::process::id());
        assert!(found.user.is_some(), "{found}");
        assert!(found.to_string().contains(&format!("pid {pid}")), "{found}");
        drop(listener);
        assert_eq!(holder(port), None);
    }
}
