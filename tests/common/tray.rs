//! Reads and clicks a process's tray menu over the session bus (`com.canonical.dbusmenu`), the
//! way a panel would, so tests need no tray host. Uses `gdbus` from GLib.

use std::process::Command;

use super::eventually;

const DBUSMENU: &str = "com.canonical.dbusmenu";

/// One entry of the menu as the panel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: i32,
    pub label: String,
    pub enabled: bool,
    pub separator: bool,
}

/// The exported menu of one process's tray icon.
pub struct TrayMenu {
    bus_name: String,
    path: String,
}

impl TrayMenu {
    /// Finds the menu that process `pid` exports, waiting for it to appear.
    pub fn of_process(pid: u32) -> Self {
        eventually("the tray menu on the session bus", || find(pid))
    }

    pub fn items(&self) -> Vec<Item> {
        let layout = gdbus(&[
            "call",
            "--session",
            "--dest",
            &self.bus_name,
            "--object-path",
            &self.path,
            "--method",
            &format!("{DBUSMENU}.GetLayout"),
            "--",
            "0",
            "-1",
            "[]",
        ])
        .expect("GetLayout on the tray menu");
        parse_layout(&layout)
    }

    pub fn labels(&self) -> Vec<String> {
        self.items()
            .into_iter()
            .filter(|item| !item.separator)
            .map(|item| item.label)
            .collect()
    }

    /// Clicks the item with this label, as a panel does when the user picks it.
    pub fn click(&self, label: &str) {
        let items = self.items();
        let item = items
            .iter()
            .find(|item| item.label == label)
            .unwrap_or_else(|| panic!("no {label:?} in the tray menu: {items:?}"));
        gdbus(&[
            "call",
            "--session",
            "--dest",
            &self.bus_name,
            "--object-path",
            &self.path,
            "--method",
            &format!("{DBUSMENU}.Event"),
            "--",
            &item.id.to_string(),
            "clicked",
            "<0>",
            "0",
        ])
        .expect("Event(clicked) on the tray menu");
    }
}

/// The process's connections on the bus, then the first object under any of them that
/// implements dbusmenu. A GTK app opens several connections; only one exports the menu.
fn find(pid: u32) -> Option<TrayMenu> {
    let names = gdbus(&[
        "call",
        "--session",
        "--dest",
        "org.freedesktop.DBus",
        "--object-path",
        "/org/freedesktop/DBus",
        "--method",
        "org.freedesktop.DBus.ListNames",
    ])?;
    quoted_strings(&names)
        .into_iter()
        .filter(|name| name.starts_with(':'))
        .filter(|name| owner_pid(name) == Some(pid))
        .find_map(|bus_name| {
            let path = menu_path(&bus_name)?;
            Some(TrayMenu { bus_name, path })
        })
}

fn owner_pid(bus_name: &str) -> Option<u32> {
    let reply = gdbus(&[
        "call",
        "--session",
        "--dest",
        "org.freedesktop.DBus",
        "--object-path",
        "/org/freedesktop/DBus",
        "--method",
        "org.freedesktop.DBus.GetConnectionUnixProcessID",
        bus_name,
    ])?;
    // "(uint32 12345,)"
    reply
        .trim()
        .trim_start_matches("(uint32 ")
        .trim_end_matches(",)")
        .parse()
        .ok()
}

fn menu_path(bus_name: &str) -> Option<String> {
    let tree = gdbus(&[
        "introspect",
        "--session",
        "--dest",
        bus_name,
        "--object-path",
        "/",
        "--recurse",
    ])?;
    let mut node = None;
    for line in tree.lines().map(str::trim) {
        if let Some(path) = line.strip_prefix("node ") {
            node = Some(path.trim_end_matches(" {").to_owned());
        } else if line.starts_with(&format!("interface {DBUSMENU} ")) {
            return node;
        }
    }
    None
}

fn gdbus(args: &[&str]) -> Option<String> {
    let output = Command::new("gdbus")
        .args(args)
        .output()
        .expect("run gdbus (Debian package libglib2.0-bin)");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Items from GetLayout's reply in GVariant text form, e.g.
/// `(uint32 2, (0, {...}, [<(2, {'enabled': <false>, 'label': <'Quit'>}, @av [])>, ...]))`.
/// Every `<(id, {properties}, children)>` is an item; the root `(0, ...)` is not.
pub fn parse_layout(text: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<(") {
        rest = &rest[start + 2..];
        let Some((id, after)) = rest.split_once(", {") else {
            break;
        };
        let Ok(id) = id.trim().parse() else {
            continue;
        };
        let (properties, after) = parse_properties(after);
        rest = after;
        let property = |key: &str| {
            properties
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value.as_str())
        };
        items.push(Item {
            id,
            label: property("label").unwrap_or_default().to_owned(),
            // dbusmenu's default for a missing `enabled` is true.
            enabled: property("enabled") != Some("false"),
            separator: property("type") == Some("separator"),
        });
    }
    items
}

/// `'key': <value>, ...}`: the properties and what follows the closing brace.
fn parse_properties(mut text: &str) -> (Vec<(String, String)>, &str) {
    let mut properties = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return (properties, after);
        }
        let Some((key, after)) = parse_string(text) else {
            return (properties, text);
        };
        let Some(after) = after.strip_prefix(": <") else {
            return (properties, after);
        };
        let (value, after) = match parse_string(after) {
            Some((value, after)) => (value, after),
            None => {
                let end = after.find('>').unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            }
        };
        properties.push((key, value));
        text = after.strip_prefix('>').unwrap_or(after);
    }
}

/// A GVariant string literal ('...' or "...", backslash escapes) at the start of `text`.
fn parse_string(text: &str) -> Option<(String, &str)> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let mut value = String::new();
    let mut chars = text[1..].char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => value.extend(chars.next().map(|(_, escaped)| escaped)),
            c if c == quote => return Some((value, &text[1 + index + 1..])),
            c => value.push(c),
        }
    }
    None
}

fn quoted_strings(text: &str) -> Vec<String> {
    let mut strings = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(['\'', '"']) {
        match parse_string(&rest[start..]) {
            Some((value, after)) => {
                strings.push(value);
                rest = after;
            }
            None => break,
        }
    }
    strings
}

#[test]
fn parses_a_layout_reply() {
    let reply = r#"(uint32 2, (0, {'children-display': <'submenu'>}, [<(2, {'enabled': <false>, 'label': <'DOE, Jane · 1970-01-02 · MRN 12345'>}, @av [])>, <(3, {'enabled': <true>, 'type': <'separator'>}, @av [])>, <(4, {'label': <"O'Brien's {study}">}, @av [])>]))"#;
    assert_eq!(
        parse_layout(reply),
        vec![
            Item {
                id: 2,
                label: "DOE, Jane · 1970-01-02 · MRN 12345".into(),
                enabled: false,
                separator: false
            },
            Item {
                id: 3,
                label: String::new(),
                enabled: true,
                separator: true
            },
            Item {
                id: 4,
                label: "O'Brien's {study}".into(),
                enabled: true,
                separator: false
            },
        ]
    );
}
