//! Compiles arbitrary UTF-8 as one `.yaml` file (Istio import through saphyr-parser): errors are fine, panics are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut sources = compiler::Sources::new();
    sources.add("fuzz.yaml", text);
    match compiler::compile_sources(sources) {
        // Rendering walks every span back to file:line:col, so it is part of the surface too.
        Ok(compiled) => {
            let _ = compiled.render_warnings();
            let _ = spec::encode(&compiled.snapshot);
        }
        Err(failed) => {
            let _ = failed.render();
        }
    }
});
