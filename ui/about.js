// The About window: the version and where Lockstep keeps things, for site IT on the phone.

import { $, invoke } from "./lib.js";

const about = await invoke("about");
$("version").textContent = about.version;
$("hub-url").textContent = about.hubUrl;
$("config-file").textContent = about.configFile ?? "—";
$("log-dir").textContent = about.logDir ?? "—";
$("database").textContent = about.database ?? "—";
