//! `warden plugin new`: a working plugin skeleton per language, which builds
//! with one command (`./build.sh`). The templates live in `sdk/templates/`;
//! the JavaScript, Python and C ones get a copy of the WIT contract.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The languages with a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with `warden-sdk`.
    Rust,
    /// JavaScript, with componentize-js.
    Js,
    /// Python, with componentize-py.
    Python,
    /// C, with clang, wasi-libc and warden-c-build.
    C,
}

const WIT: &str = include_str!("../../wit/interceptor.wit");

/// (path in the skeleton, template text).
fn files(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => &[
            ("Cargo.toml", include_str!("../../sdk/templates/rust/Cargo.toml")),
            ("src/lib.rs", include_str!("../../sdk/templates/rust/src/lib.rs")),
            ("build.sh", include_str!("../../sdk/templates/rust/build.sh")),
        ],
        Lang::Js => &[
            ("plugin.js", include_str!("../../sdk/templates/js/plugin.js")),
            ("build.mjs", include_str!("../../sdk/templates/js/build.mjs")),
            ("package.json", include_str!("../../sdk/templates/js/package.json")),
            ("build.sh", include_str!("../../sdk/templates/js/build.sh")),
            ("wit/interceptor.wit", WIT),
        ],
        Lang::Python => &[
            ("app.py", include_str!("../../sdk/templates/python/app.py")),
            ("build.sh", include_str!("../../sdk/templates/python/build.sh")),
            ("wit/interceptor.wit", WIT),
        ],
        Lang::C => &[
            ("plugin.c", include_str!("../../sdk/templates/c/plugin.c")),
            ("build.sh", include_str!("../../sdk/templates/c/build.sh")),
            ("wit/interceptor.wit", WIT),
        ],
    }
}

/// Writes the skeleton of plugin `name` in `lang` to `dir/name`; returns that folder.
pub fn new_plugin(lang: Lang, name: &str, dir: &Path) -> Result<PathBuf> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        bail!("plugin name {name:?}: use lowercase letters, digits and dashes, starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let sdk = std::env::var("WARDEN_SDK").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk").to_owned());
    let c_build = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|bin| bin.join("warden-c-build")))
        .map_or_else(|| "warden-c-build".to_owned(), |p| p.display().to_string());
    for (path, template) in files(lang) {
        let text = template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk)
            .replace("{{c_build}}", &c_build);
        let target = root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
        if path.ends_with(".sh") {
            make_executable(&target)?;
        }
    }
    let config = if lang == Lang::C { "deny = \"delete_everything\"" } else { "deny = [\"delete_everything\"]" };
    let manifest =
        format!("# {name}: sample config (copy beside {name}.wasm in the plugins folder)\n[config]\n{config}\n");
    std::fs::write(root.join(format!("{name}.toml")), manifest)?;
    Ok(root)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<()> {
    Ok(())
}
