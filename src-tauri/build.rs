//! Build script: generates the Tauri context (config, assets, capabilities) for the shell.

fn main() {
    // The manifest sits at the repository root, so point Tauri at the capabilities and
    // permissions that live with the shell's sources rather than its default `./capabilities`.
    // Declaring the app's permissions makes every app command need a grant (see
    // `permissions/windows.toml`), so each window reaches only its own commands.
    println!("cargo:rerun-if-changed=src-tauri/permissions");
    println!("cargo:rerun-if-changed=src-tauri/capabilities");
    println!("cargo:rerun-if-changed=tauri.conf.json");
    // The pages and icons are embedded in the binary when the context is generated.
    println!("cargo:rerun-if-changed=ui");
    println!("cargo:rerun-if-changed=icons");
    let manifest =
        tauri_build::AppManifest::new().permissions_path_pattern("src-tauri/permissions/**/*");
    let attributes = tauri_build::Attributes::new()
        .capabilities_path_pattern("src-tauri/capabilities/**/*")
        .app_manifest(manifest);
    tauri_build::try_build(attributes).expect("the Tauri configuration and capabilities are valid");
}
