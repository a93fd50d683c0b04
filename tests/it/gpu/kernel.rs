//! The kernel table (`src/backend/gpu/kernel.rs`) against the WGSL it
//! binds. Needs no device.

use std::collections::{BTreeSet, HashMap, HashSet};

use nudge::backend::gpu::kernel::{Access, BindingDecl, SPECS};
use nudge::backend::gpu::tiled::{SHARE_LANES, Tile};
use nudge::backend::gpu::tune::{DIRECT_VARIANTS, VARIANTS};

/// What a WGSL source says about one `@group(0) @binding(n)` variable.
#[derive(Debug, Clone, PartialEq)]
struct WgslBinding {
    slot: u32,
    /// What stands between `var<` and `>`, without spaces.
    access: String,
    name: String,
    ty: String,
}

/// `src` with `//` comments removed (the shaders use no block comments).
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `@group(g) @binding(n) var<...> name: T;` of a module; other
/// groups are a failure (every kernel binds group 0 only).
fn wgsl_bindings(src: &str) -> Vec<WgslBinding> {
    let mut out = Vec::new();
    for line in strip_comments(src).lines() {
        let Some(at) = line.find("@binding(") else {
            continue;
        };
        let num = |s: &str| -> u32 {
            let s = &s[s.find('(').unwrap() + 1..];
            s[..s.find(')').unwrap()].trim().parse().unwrap()
        };
        let group = line.find("@group(").map(|g| num(&line[g..]));
        assert_eq!(group, Some(0), "not group 0: {line}");
        let slot = num(&line[at..]);
        let var = &line[line.find("var<").expect(line) + 4..];
        let close = var.find('>').unwrap();
        let access: String = var[..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let rest = &var[close + 1..];
        let colon = rest.find(':').unwrap();
        out.push(WgslBinding {
            slot,
            access,
            name: rest[..colon].trim().to_string(),
            ty: rest[colon + 1..]
                .trim()
                .trim_end_matches(';')
                .trim()
                .to_string(),
        });
    }
    out
}

/// Identifiers of a piece of WGSL, leaving out member names after `.`
/// (`p.rows` uses `p`, not a global called `rows`).
fn identifiers(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        if word(b[i]) {
            let start = i;
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            let member = text[..start].trim_end().ends_with('.');
            if !member && !b[start].is_ascii_digit() {
                out.push(&text[start..i]);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Each `fn name(...) { body }` of a module: name -> signature and body.
fn wgsl_functions(src: &str) -> HashMap<String, String> {
    let src = strip_comments(src);
    let mut out = HashMap::new();
    let mut from = 0;
    while let Some(pos) = src[from..].find("fn ") {
        let start = from + pos;
        from = start + 3;
        let at_word = start == 0 || !src.as_bytes()[start - 1].is_ascii_alphanumeric();
        if !at_word {
            continue;
        }
        let name: String = src[start + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let open = start + src[start..].find('{').unwrap();
        let mut depth = 0;
        let mut end = open;
        for (i, c) in src[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.insert(name, src[start..=end].to_string());
        from = end;
    }
    out
}

/// Bytes of WGSL `struct name` when all its members are 4-byte scalars (as
/// every `Params` is); `None` if it has other members.
fn wgsl_scalar_struct_size(src: &str, name: &str) -> Option<usize> {
    let src = strip_comments(src);
    let head = format!("struct {name} {{");
    let body = &src[src.find(&head)? + head.len()..];
    let body = &body[..body.find('}')?];
    let mut bytes = 0;
    for member in body.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let ty = member.split(':').nth(1)?.trim();
        match ty {
            "u32" | "i32" | "f32" => bytes += 4,
            _ => return None,
        }
    }
    Some(bytes)
}

/// Every way the Rust binding declaration of a kernel disagrees with its
/// WGSL: a binding declared on one side only, at another slot, with another
/// access or (for the parameter block) another size; empty when they agree.
fn binding_mismatches(source: &str, entry: &str, declared: &[BindingDecl]) -> Vec<String> {
    let globals = wgsl_bindings(source);
    let fns = wgsl_functions(source);
    let mut problems = Vec::new();
    if !fns.contains_key(entry) {
        return vec![format!("no fn {entry} in the shader")];
    }
    // Globals the entry point reaches through the functions it calls.
    let mut used = BTreeSet::new();
    let mut todo = vec![entry.to_string()];
    let mut seen = HashSet::new();
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        for id in identifiers(&fns[&f]) {
            if fns.contains_key(id) && id != f {
                todo.push(id.to_string());
            } else if globals.iter().any(|g| g.name == id) {
                used.insert(id.to_string());
            }
        }
    }
    let mut slots = HashSet::new();
    for d in declared {
        if !slots.insert(d.slot) {
            problems.push(format!("slot {} declared twice", d.slot));
        }
        let Some(g) = globals.iter().find(|g| g.name == d.name) else {
            problems.push(format!("{}: no such binding in the WGSL", d.name));
            continue;
        };
        if g.slot != d.slot {
            problems.push(format!(
                "{}: Rust binds slot {}, WGSL says @binding({})",
                d.name, d.slot, g.slot
            ));
        }
        let want: String = d
            .access
            .wgsl()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if g.access != want {
            problems.push(format!(
                "{}: Rust says var<{}>, WGSL var<{}>",
                d.name,
                d.access.wgsl(),
                g.access
            ));
        }
        if d.access == Access::Uniform {
            match wgsl_scalar_struct_size(source, &g.ty) {
                Some(n) if n == d.size => {}
                n => problems.push(format!(
                    "{}: Rust block of {} bytes, WGSL struct {} of {n:?}",
                    d.name, d.size, g.ty
                )),
            }
        }
        if !used.contains(d.name) {
            problems.push(format!("{}: declared but unused by {entry}", d.name));
        }
    }
    for u in &used {
        if !declared.iter().any(|d| d.name == u.as_str()) {
            problems.push(format!("{u}: used by {entry} but not declared in Rust"));
        }
    }
    problems
}

/// The bindings each kernel's Rust struct declares (`kernel::SPECS`, which
/// also builds the bind-group layouts and the bind groups) are exactly the
/// `@group(0) @binding(n) var<...> name` globals its WGSL entry point uses:
/// same names, slots, access, and parameter-block size. Needs no device.
#[test]
fn kernel_bindings_match_the_wgsl() {
    let mut names = HashSet::new();
    let mut all = Vec::new();
    for spec in SPECS {
        assert!(names.insert(spec.name), "kernel {} twice", spec.name);
        // The generated GEMM is checked in every shape it is built in: the
        // defaults and every shape the autotuner may choose.
        let shapes = [Tile::LARGE, Tile::SMALL]
            .into_iter()
            .chain(VARIANTS)
            .chain(DIRECT_VARIANTS);
        // Each with and without a direct tile's shared loads.
        let sources: Vec<String> = if spec.name == "gemm_tiled" {
            shapes
                .flat_map(|t| [t.wgsl(), t.wgsl_for(SHARE_LANES)])
                .collect()
        } else if spec.name == "gemm_fused" {
            shapes
                .flat_map(|t| [t.wgsl_fused(), t.wgsl_fused_for(SHARE_LANES)])
                .collect()
        } else {
            vec![spec.shader.source.to_string()]
        };
        for p in sources
            .iter()
            .flat_map(|src| binding_mismatches(src, spec.entry, spec.bindings))
        {
            all.push(format!(
                "kernel {} ({}::{}): {p}",
                spec.name, spec.shader.name, spec.entry
            ));
        }
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
    assert_eq!(SPECS.len(), 21, "a kernel was added or lost");

    // The check is not vacuous: swapping two same-typed buffers (S0 and the
    // slopes of NUDGE-M), or binding the wrong access, is caught.
    let bounds = SPECS.iter().find(|s| s.name == "nudge_m_bounds").unwrap();
    let mut swapped = bounds.bindings.to_vec();
    let (i, j) = (
        swapped.iter().position(|b| b.name == "s0").unwrap(),
        swapped.iter().position(|b| b.name == "slope").unwrap(),
    );
    let (si, sj) = (swapped[i].slot, swapped[j].slot);
    swapped[i].slot = sj;
    swapped[j].slot = si;
    let p = binding_mismatches(bounds.shader.source, bounds.entry, &swapped);
    assert_eq!(p.len(), 2, "{p:?}");
    let mut wrong_access = bounds.bindings.to_vec();
    wrong_access[i].access = Access::Write;
    assert_eq!(
        binding_mismatches(bounds.shader.source, bounds.entry, &wrong_access).len(),
        1
    );
    let missing = &bounds.bindings[..bounds.bindings.len() - 1];
    assert_eq!(
        binding_mismatches(bounds.shader.source, bounds.entry, missing).len(),
        1
    );
}
