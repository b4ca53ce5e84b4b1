//! Reads and clicks a process's tray menu over its session bus (`com.canonical.dbusmenu`), the
//! way a panel would, so tests need no tray host. Uses `gdbus` from GLib.

use std::path::{Path, PathBuf};
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
    bus: String,
    bus_name: String,
    path: String,
}

impl TrayMenu {
    /// Finds the menu that process `pid` exports on the bus at `bus` (an address), waiting
    /// for it to appear.
    pub fn of_process(bus: &str, pid: u32) -> Self {
        eventually("the tray menu on the session bus", || find(bus, pid))
    }

    /// The label of the item with this id (labels change: the patient line, Pause/Resume).
    pub fn label_of(&self, id: i32) -> Option<String> {
        self.items()
            .into_iter()
            .find(|item| item.id == id)
            .map(|item| item.label)
    }

    /// The id of the item with this label now.
    pub fn id_of(&self, label: &str) -> i32 {
        let items = self.items();
        items
            .iter()
            .find(|item| item.label == label)
            .unwrap_or_else(|| panic!("no {label:?} in the tray menu: {items:?}"))
            .id
    }

    pub fn items(&self) -> Vec<Item> {
        let layout = gdbus(&[
            "call",
            "--address",
            &self.bus,
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
        let id = self.id_of(label);
        gdbus(&[
            "call",
            "--address",
            &self.bus,
            "--dest",
            &self.bus_name,
            "--object-path",
            &self.path,
            "--method",
            &format!("{DBUSMENU}.Event"),
            "--",
            &id.to_string(),
            "clicked",
            "<0>",
            "0",
        ])
        .expect("Event(clicked) on the tray menu");
    }
}

impl TrayMenu {
    /// The file the panel is told to draw now (libayatana-appindicator's StatusNotifierItem
    /// `IconName`, which Tauri sets to the icon it wrote out).
    pub fn icon_file(&self) -> Option<PathBuf> {
        let tree = gdbus(&[
            "introspect",
            "--address",
            &self.bus,
            "--dest",
            &self.bus_name,
            "--object-path",
            "/",
            "--recurse",
        ])?;
        let path = object_with(&tree, "org.kde.StatusNotifierItem")?;
        let reply = gdbus(&[
            "call",
            "--address",
            &self.bus,
            "--dest",
            &self.bus_name,
            "--object-path",
            &path,
            "--method",
            "org.freedesktop.DBus.Properties.Get",
            "org.kde.StatusNotifierItem",
            "IconName",
        ])?;
        quoted_strings(&reply).into_iter().next().map(PathBuf::from)
    }

    /// Which of the app's tray icons (`icons/tray-STATE-PANEL[@2x].png`) the panel shows:
    /// the state's name, compared by pixels (the file is written out again, not copied).
    pub fn icon_state(&self) -> Option<String> {
        let shown = pixel_signature(&self.icon_file()?)?;
        let icons = Path::new(env!("CARGO_MANIFEST_DIR")).join("icons");
        ["idle", "patient", "problem", "paused"]
            .into_iter()
            .find(|state| {
                ["light", "dark", "light@2x", "dark@2x"]
                    .iter()
                    .any(|variant| {
                        pixel_signature(&icons.join(format!("tray-{state}-{variant}.png")))
                            .is_some_and(|signature| signature == shown)
                    })
            })
            .map(str::to_owned)
    }
}

/// ImageMagick's signature of an image's pixels: equal for equal pixels, whatever the PNG
/// encoding.
fn pixel_signature(path: &Path) -> Option<String> {
    let output = Command::new("identify")
        .args(["-format", "%#"])
        .arg(path)
        .output()
        .expect("run ImageMagick identify");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The first object in `gdbus introspect --recurse` output that implements `interface`.
fn object_with(tree: &str, interface: &str) -> Option<String> {
    let mut node = None;
    for line in tree.lines().map(str::trim) {
        if let Some(path) = line.strip_prefix("node ") {
            node = Some(path.trim_end_matches(" {").to_owned());
        } else if line.starts_with(&format!("interface {interface} ")) {
            return node;
        }
    }
    None
}

/// The process's connections on the bus, then the first object under any of them that
/// implements dbusmenu. A GTK app opens several connections; only one exports the menu.
fn find(bus: &str, pid: u32) -> Option<TrayMenu> {
    let names = gdbus(&[
        "call",
        "--address",
        bus,
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
        .filter(|name| owner_pid(bus, name) == Some(pid))
        .find_map(|bus_name| {
            let path = menu_path(bus, &bus_name)?;
            Some(TrayMenu {
                bus: bus.to_owned(),
                bus_name,
                path,
            })
        })
}

fn owner_pid(bus: &str, bus_name: &str) -> Option<u32> {
    let reply = gdbus(&[
        "call",
        "--address",
        bus,
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

fn menu_path(bus: &str, bus_name: &str) -> Option<String> {
    let tree = gdbus(&[
        "introspect",
        "--address",
        bus,
        "--dest",
        bus_name,
        "--object-path",
        "/",
        "--recurse",
    ])?;
    object_with(&tree, DBUSMENU)
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
