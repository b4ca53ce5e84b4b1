//! Keeps GTK from loading a GL driver into the tray.
//!
//! GTK probes GL when it opens the display (to pick visuals for GL), and that probe loads the
//! system's GL driver whether or not anything ever draws with GL: under a software renderer
//! (Mesa's llvmpipe, with LLVM) some 30 MB of an idle tray that draws no GL at all. With GL off,
//! the windows' web views paint without accelerated compositing, which these pages (text, no
//! canvas, no animation) do not need and which costs their web content process more memory.
//!
//! GTK reads `GDK_GL` once, when it starts, so it has to be in the environment before the app
//! is built, and can be taken out again once GTK has read it.

/// Whether [`turn_off`] set `GDK_GL` (rather than finding it set, or leaving it out).
static SET_HERE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets `GDK_GL=disable` unless it is set already, or unless a WebDriver session drives the
/// app: WebKitGTK's WebDriver screenshots wait for a composited frame, which never comes
/// without compositing, so under automation the web views keep GL (and the tray its cost).
///
/// # Safety
///
/// Changes the environment: call before any other thread starts.
pub unsafe fn turn_off() {
    if std::env::var_os("GDK_GL").is_some() || crate::window::under_automation() {
        return;
    }
    // SAFETY: the caller guarantees that no other thread runs yet.
    unsafe { std::env::set_var("GDK_GL", "disable") };
    SET_HERE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Takes `GDK_GL` out of the environment again once GTK has read it, so the programs the agent
/// starts (viewers launched by URL, the browser) get GL as if the tray had not been there.
pub fn forget() {
    if SET_HERE.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: other threads run by now (the runtime's, GTK's), but none of them reads the
        // environment at this point, Rust readers take the same lock, and glibc frees no string
        // on removal, so a C reader racing with it could at worst not find `GDK_GL`.
        unsafe { std::env::remove_var("GDK_GL") };
    }
}
