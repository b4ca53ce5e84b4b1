// Renders a Tauri WiX template with the data given as JSON: node render.mjs TEMPLATE DATA.json
// Tauri's bundler renders it with handlebars-rust; this is the JavaScript implementation of the
// same language, with HTML escaping off as the bundler has it.
import { readFileSync } from "node:fs";
import Handlebars from "handlebars";

const [template, data] = process.argv.slice(2);
const render = Handlebars.compile(readFileSync(template, "utf8"), { noEscape: true, strict: true });
process.stdout.write(render(JSON.parse(readFileSync(data, "utf8"))));
