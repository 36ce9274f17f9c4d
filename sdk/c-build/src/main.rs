//! Turns C into Warden plugins, with the crates the wasm tools are made of:
//!
//! ```text
//! warden-c-build bindings WIT_DIR OUT_DIR      C bindings for the interceptor world (wit-bindgen c)
//! warden-c-build component CORE.wasm OUT.wasm  a wasm32-wasi core module → a component, with
//!                                              the WASI preview1 adapter (wasm-tools component new)
//! ```
//!
//! Debian's wasi-libc targets WASI preview1 only, so a C plugin is compiled to a
//! preview1 core module (clang --target=wasm32-wasi, wasm-ld) and adapted here.
//! See plugins/allowlist-c for the whole build.

use std::path::Path;

use anyhow::{bail, Context, Result};
use wit_bindgen_core::Files;
use wit_parser::Resolve;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["bindings", wit, out] => bindings(Path::new(wit), Path::new(out)),
        ["component", core, out] => component(Path::new(core), Path::new(out)),
        _ => bail!("usage: warden-c-build bindings WIT_DIR OUT_DIR | component CORE.wasm OUT.wasm"),
    }
}

/// Writes `interceptor.h`, `interceptor.c` and `interceptor_component_type.o` to `out`.
fn bindings(wit: &Path, out: &Path) -> Result<()> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_dir(wit).with_context(|| format!("reading {}", wit.display()))?;
    let world = resolve.select_world(&[package], Some("interceptor"))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default().build().generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out)?;
    for (name, contents) in files.iter() {
        std::fs::write(out.join(name), contents).with_context(|| format!("writing {name}"))?;
    }
    Ok(())
}

/// Wraps a preview1 core module (with the component type section the bindings
/// linked in) into a component for Warden.
fn component(core: &Path, out: &Path) -> Result<()> {
    let module = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
