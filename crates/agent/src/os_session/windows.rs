//! Windows: the session-change notifications (`WM_WTSSESSION_CHANGE`, after
//! `WTSRegisterSessionNotification` on a message-only window of the agent's own) mean what this
//! mapping says. The mapping is plain code, tested on every platform; the hook (`WtsWatcher`,
//! below) is a few lines of Win32 that no machine here can build: reviewed, not compiled (see
//! docs/site-it.md).

use super::SessionSignal;

#[cfg(windows)]
pub use hook::WtsWatcher;

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

#[cfg(windows)]
mod hook {
    use super::{SessionSignal, from_session_change};
    use crate::os_session::SessionWatcher;
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::Pin;
    use tokio::sync::mpsc;
    use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, WPARAM};
    use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
    use windows_sys::Win32::System::RemoteDesktop::{
        NOTIFY_FOR_THIS_SESSION, WTSRegisterSessionNotification,
    };
    use windows_sys::Win32::UI::WindowsAndMessaging::{
        CreateWindowExW, DefWindowProcW, DispatchMessageW, GetMessageW, HWND_MESSAGE, MSG,
        RegisterClassW, TranslateMessage, WM_WTSSESSION_CHANGE, WNDCLASSW,
    };

    thread_local! {
        /// Where the window's thread sends what it hears.
        static SIGNALS: RefCell<Option<mpsc::Sender<SessionSignal>>> = const { RefCell::new(None) };
    }

    /// Follows this session's lock, unlock and log-off.
    pub struct WtsWatcher;

    unsafe extern "system" fn window_proc(
        window: HWND,
        message: u32,
        wparam: WPARAM,
        lparam: LPARAM,
    ) -> LRESULT {
        if message == WM_WTSSESSION_CHANGE
            && let Some(signal) = from_session_change(wparam as u32)
        {
            SIGNALS.with(|signals| {
                if let Some(signals) = signals.borrow().as_ref() {
                    let _ = signals.blocking_send(signal);
                }
            });
            return 0;
        }
        unsafe { DefWindowProcW(window, message, wparam, lparam) }
    }

    impl SessionWatcher for WtsWatcher {
        fn watch(
            self: Box<Self>,
            signals: mpsc::Sender<SessionSignal>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            let (ended, done) = tokio::sync::oneshot::channel::<()>();
            // The window and its message loop live on a thread of their own.
            std::thread::spawn(move || {
                SIGNALS.with(|slot| *slot.borrow_mut() = Some(signals));
                let class: Vec<u16> = "LockstepSessionWatcher\0".encode_utf16().collect();
                // SAFETY: every pointer passed lives to the end of this thread; the class and
                // the window are this thread's, and the loop ends when the window's thread does.
                unsafe {
                    let instance = GetModuleHandleW(std::ptr::null());
                    let mut window_class: WNDCLASSW = std::mem::zeroed();
                    window_class.lpfnWndProc = Some(window_proc);
                    window_class.hInstance = instance;
                    window_class.lpszClassName = class.as_ptr();
                    RegisterClassW(&window_class);
                    let window = CreateWindowExW(
                        0,
                        class.as_ptr(),
                        class.as_ptr(),
                        0,
                        0,
                        0,
                        0,
                        0,
                        HWND_MESSAGE,
                        std::ptr::null_mut(),
                        instance,
                        std::ptr::null(),
                    );
                    if window.is_null()
                        || WTSRegisterSessionNotification(window, NOTIFY_FOR_THIS_SESSION) == 0
                    {
                        tracing::info!(
                            "the session-change notifications are not available: a screen lock is not followed"
                        );
                    } else {
                        let mut message: MSG = std::mem::zeroed();
                        while GetMessageW(&mut message, std::ptr::null_mut(), 0, 0) > 0 {
                            TranslateMessage(&message);
                            DispatchMessageW(&message);
                        }
                    }
                }
                let _ = ended.send(());
            });
            Box::pin(async move {
                let _ = done.await;
            })
        }
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
