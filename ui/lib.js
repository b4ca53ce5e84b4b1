// What every page shares: the shell's commands and events, and display helpers. Every value
// from another application is set with textContent, never as markup.

const tauri = window.__TAURI__;

export const invoke = (command, args) => tauri.core.invoke(command, args);
export const listen = (event, handler) => tauri.event.listen(event, (e) => handler(e.payload));

export const $ = (id) => document.getElementById(id);

/// Creates an element with a class and text.
export function el(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text != null) element.textContent = text;
  return element;
}

/// A command failure as people read it: `{kind, message}` from the shell, or anything else.
export function describeError(error) {
  if (error && typeof error === "object" && "message" in error) return error.message;
  return String(error);
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const dayFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  day: "numeric",
  month: "long",
  year: "numeric",
});
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "medium",
});

/// A key for the local calendar day of an instant (rows are grouped by it).
export function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth() + 1}-${date.getDate()}`;
}

/// "Today", "Yesterday" or the full date, in local time.
export function dayLabel(date) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(date) === dayKey(today)) return `Today — ${dayFormat.format(date)}`;
  if (dayKey(date) === dayKey(yesterday)) return `Yesterday — ${dayFormat.format(date)}`;
  return dayFormat.format(date);
}

export const formatTime = (date) => timeFormat.format(date);

/// The time alone when it is today, else date and time.
export function formatWhen(date) {
  return dayKey(date) === dayKey(new Date()) ? timeFormat.format(date) : dateTimeFormat.format(date);
}

/// Copies text to the clipboard; falls back to a selection copy where the async API is absent.
export async function copyText(text) {
  if (navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      // fall through
    }
  }
  const area = el("textarea");
  area.value = text;
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  return copied;
}

/// Gives a button a short-lived "Copied" label.
export function flashCopied(button, copied) {
  const label = button.dataset.label ?? button.textContent;
  button.dataset.label = label;
  button.textContent = copied ? "Copied" : "Copy failed";
  setTimeout(() => {
    button.textContent = label;
  }, 1500);
}

// Ctrl+W (Cmd+W) closes the window, as in any desktop app. Closing destroys the window and its
// web view; the agent and the tray keep running.
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "w") {
    event.preventDefault();
    tauri.window.getCurrentWindow().close();
  }
});
