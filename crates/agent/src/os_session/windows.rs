//! Windows: the session-change notifications (`WM_WTSSESSION_CHANGE`, after
//! `WTSRegisterSessionNotification` on a window of the tray app) mean what this mapping says.
//! The mapping is plain code, tested on every platform; the window hook itself needs a Windows
//! build and is not in this tree yet (see docs/site-it.md).

use super::SessionSignal;

/// `WTS_SESSION_LOGOFF`: the user signed out.
pub const WTS_SESSION_LOGOFF: u32 = 0x6;
/// `WTS_SESSION_LOCK`: the session locked.
pub const WTS_SESSION_LOCK: u32 = 0x7;
/// `WTS_SESSION_UNLOCK`: the session unlocked.
pub const WTS_SESSION_UNLOCK: u32 = 0x8;

/// The signal a `WM_WTSSESSION_CHANGE` code (its `wParam`) stands for; the others (console
/// connect, remote connect, ...) say nothing about the clinician being there.
pub fn from_session_change(code: u32) -> Option<SessionSignal> {
    match code {
        WTS_SESSION_LOCK => Some(SessionSignal::Locked),
        WTS_SESSION_UNLOCK => Some(SessionSignal::Unlocked),
        WTS_SESSION_LOGOFF => Some(SessionSignal::SignedOut),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_unlock_and_logoff_are_the_signals_and_nothing_else() {
        assert_eq!(from_session_change(0x7), Some(SessionSignal::Locked));
        assert_eq!(from_session_change(0x8), Some(SessionSignal::Unlocked));
        assert_eq!(from_session_change(0x6), Some(SessionSignal::SignedOut));
        // WTS_CONSOLE_CONNECT, WTS_REMOTE_CONNECT, WTS_SESSION_LOGON.
        for other in [0x1, 0x3, 0x5] {
            assert_eq!(from_session_change(other), None);
        }
    }
}
