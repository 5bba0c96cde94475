//! The layers of `src/` (docs/architecture.md): a module imports only modules
//! of layers below its own, so the core and the text helpers stay free of
//! adapters, and no adapter reaches up into the configuration or the pass.

use std::path::Path;

/// Each top-level module of `src/` and its layer; a new module must be placed here.
const LAYERS: [(&str, u8); 18] = [
    ("core", 0),
    ("text", 0),
    ("exit_codes", 0),
    ("regular_file", 0),
    ("net", 1),
    ("tls", 1),
    ("state_file", 2),
    ("docker", 2),
    ("store", 2),
    ("bus", 2),
    ("render", 2),
    ("metrics", 2),
    ("config", 3),
    ("pass", 4),
    ("doctor", 4),
    ("app", 5),
    ("lib", 6),
    ("main", 6),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("src/{module} has no layer in tests/it/architecture.rs"))
}

/// `src/store/mysql.rs` → `store`; `src/lib.rs` → `lib`.
fn top_module(file: &Path, src: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src/");
    let first = relative.components().next().expect("a file");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The top-level modules a file names as `crate::NAME`.
fn imports(text: &str) -> Vec<String> {
    text.match_indices("crate::")
        .map(|(at, _)| {
            text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn no_module_imports_one_on_its_own_layer_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let module = top_module(file, &src);
        let text = std::fs::read_to_string(file).expect("read a source file");
        for imported in imports(&text) {
            if imported != module && layer(&imported) >= layer(&module) {
                violations.push(format!(
                    "{} (layer {}) imports {imported} (layer {})",
                    file.strip_prefix(&src).expect("under src/").display(),
                    layer(&module),
                    layer(&imported)
                ));
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_layer_check_sees_an_upward_import() {
    assert_eq!(
        imports("use crate::config::Config; crate::core::plan(x)"),
        ["config", "core"]
    );
    assert!(
        layer("config") >= layer("store"),
        "store may not import config"
    );
}
