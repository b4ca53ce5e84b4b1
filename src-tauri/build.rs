//! Build script: generates the Tauri context (config, assets, capabilities) for the shell.

fn main() {
    // The manifest sits at the repository root, so point Tauri at the capabilities that live
    // with the shell's sources rather than its default `./capabilities`.
    let attributes =
        tauri_build::Attributes::new().capabilities_path_pattern("src-tauri/capabilities/**/*");
    tauri_build::try_build(attributes).expect("the Tauri configuration and capabilities are valid");
}
