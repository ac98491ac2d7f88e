// The host runtime's build step (feature `host-runtime`, tests only): every kernel module
// (`src/kernels/*.cu`, with `prelude.cuh`) is compiled as C++ for this CPU, after
// `src/runtime/host/nn_host.h`. The sources are rewritten only mechanically: pointer
// parameters become bounds-checked `nn_gptr<T>`, each `extern "C" __global__` kernel
// becomes a file-local function, and an `extern "C"` entry per kernel takes the launch's
// grid, block and argument values from the runtime. A second copy of `copy.cu` with one
// index expression mutated backs the mutation test (the suite must fail on it).

use std::fmt::Write as _;
use std::path::PathBuf;

/// The kernel whose index expression the mutant build breaks, and how.
const MUTANT_MODULE: &str = "copy";
const MUTANT_FROM: &str = "nn_off3(l, i, ox, oy, unused);\n        y[oy] = x[ox];";
const MUTANT_TO: &str = "nn_off3(l, i, ox, oy, unused);\n        y[oy] = x[oy];";

struct Kernel {
    name: String,
    params: Vec<(String, String)>,
    barriers: bool,
}

/// `src` with comments blanked (same length), so scanning never matches inside them.
fn blank_comments(src: &str) -> Vec<u8> {
    let mut b = src.as_bytes().to_vec();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                b[i] = b' ';
                i += 1;
            }
        } else if b[i] == b'/' && b[i + 1] == b'*' {
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                b[i] = b' ';
                i += 1;
            }
            b[i] = b' ';
            if i + 1 < b.len() {
                b[i + 1] = b' ';
            }
        } else {
            i += 1;
        }
    }
    b
}

fn find(hay: &[u8], needle: &str, from: usize) -> Option<usize> {
    let n = needle.as_bytes();
    (from..hay.len().saturating_sub(n.len() - 1)).find(|&i| &hay[i..i + n.len()] == n)
}

/// Index of the bracket closing the one at `open`.
fn matching(b: &[u8], open: usize, o: u8, c: u8) -> usize {
    let mut depth = 0;
    for (i, &ch) in b.iter().enumerate().skip(open) {
        if ch == o {
            depth += 1;
        } else if ch == c {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
    }
    panic!("unbalanced brackets in a kernel source");
}

fn split_param(p: &str) -> (String, String) {
    let p = p.trim();
    match p.rfind('*') {
        Some(star) => (p[..=star].trim().to_string(), p[star + 1..].trim().to_string()),
        None => {
            let sp = p.rfind(' ').unwrap_or_else(|| panic!("bad parameter `{p}`"));
            (p[..sp].trim().to_string(), p[sp + 1..].trim().to_string())
        }
    }
}

/// Rewrites one module: pointer params to `nn_gptr<T>`, kernels to file-local functions.
fn rewrite(src: &str) -> (String, Vec<Kernel>) {
    let b = blank_comments(src);
    // (start, end, replacement) edits on `src`, applied back to front
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut kernels = Vec::new();
    for tag in ["__global__", "__device__"] {
        let mut at = 0;
        while let Some(pos) = find(&b, tag, at) {
            at = pos + tag.len();
            let open = find(&b, "(", at).unwrap_or_else(|| panic!("no `(` after {tag}"));
            let close = matching(&b, open, b'(', b')');
            let head = &src[at..open];
            let name = head.split_whitespace().last().unwrap_or("").to_string();
            let params: Vec<(String, String)> = src[open + 1..close]
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(split_param)
                .collect();
            let text: Vec<String> = params
                .iter()
                .map(|(t, n)| match t.strip_suffix('*') {
                    Some(inner) => format!("nn_gptr<{}> {n}", inner.trim()),
                    None => format!("{t} {n}"),
                })
                .collect();
            edits.push((open + 1, close, text.join(", ")));
            if tag == "__global__" {
                let ext = src[..pos].rfind("extern \"C\"").expect("kernels are extern \"C\"");
                edits.push((ext, pos + tag.len(), "static".to_string()));
                let body_open = find(&b, "{", close).expect("kernel body");
                let body_close = matching(&b, body_open, b'{', b'}');
                let barriers = src[body_open..body_close].contains("__syncthreads");
                kernels.push(Kernel { name, params, barriers });
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = src.to_string();
    for (s, e, r) in edits {
        out.replace_range(s..e, &r);
    }
    (out, kernels)
}

/// The Rust `Param` and the C++ expression reading argument `i` of type `ty`.
fn param(kernel: &str, ty: &str, name: &str, i: usize) -> (&'static str, String) {
    let t = ty.replace("const ", "");
    let t = t.trim();
    match t {
        "u64" | "unsigned long long" => ("U64", format!("*(const u64*)a[{i}]")),
        "int" => ("I32", format!("*(const int*)a[{i}]")),
        "i64" | "long long" => ("I64", format!("*(const i64*)a[{i}]")),
        "float" => ("F32", format!("*(const float*)a[{i}]")),
        "Layout3" | "Layout3&" => ("Layout3", format!("*(const Layout3*)a[{i}]")),
        "RedLayout" | "RedLayout&" => ("Red", format!("*(const RedLayout*)a[{i}]")),
        "Im2ColLayout" => ("Im2Col", format!("*(const Im2ColLayout*)a[{i}]")),
        "float*" | "i64*" => {
            let kind = if t == "float*" { "F32Ptr" } else { "I64Ptr" };
            let inner = ty.trim_end_matches('*').trim();
            (kind, format!("nn_arg_ptr<{inner}>(a[{i}], \"{name}\")"))
        }
        other => panic!("kernel `{kernel}`: parameter type `{other}` unknown to the host runtime"),
    }
}

/// Writes one C++ translation unit for `module`; returns its kernels' table rows.
fn emit_module(
    out: &Path,
    prefix: &str,
    module: &str,
    prelude: &str,
    src: &str,
    table: &mut String,
    externs: &mut String,
) -> PathBuf {
    let (body, kernels) = rewrite(src);
    let mut cpp = String::new();
    cpp.push_str("#include \"nn_host.h\"\n");
    cpp.push_str(prelude);
    cpp.push_str("\nnamespace {\n");
    cpp.push_str(&body);
    cpp.push_str("\n}  // namespace\n");
    for k in &kernels {
        let (kinds, exprs): (Vec<&str>, Vec<String>) = k
            .params
            .iter()
            .enumerate()
            .map(|(i, (t, n))| param(&k.name, t, n, i))
            .unzip();
        let _ = write!(
            cpp,
            "static void nnbody_{n}(void* c) {{\n    const void* const* a = (const void* const*)c;\n    (void)a;\n    {n}({args});\n}}\n\
             extern \"C\" int {prefix}{n}(const nn_launch* l, const void* const* a, char* msg, unsigned long long cap) {{\n    \
             return nn_run(l, \"{n}\", {f}, nnbody_{n}, (void*)a, msg, cap);\n}}\n",
            n = k.name,
            args = exprs.join(", "),
            f = i32::from(k.barriers),
        );
        let _ = writeln!(externs, "    fn {prefix}{}(l: *const HostLaunch, a: *const *const c_void, msg: *mut c_char, cap: u64) -> i32;", k.name);
        let _ = writeln!(
            table,
            "    HostKernel {{ module: {module:?}, name: {:?}, params: &[{}], entry: {prefix}{} }},",
            k.name,
            kinds.iter().map(|k| format!("Param::{k}")).collect::<Vec<_>>().join(", "),
            k.name
        );
    }
    let path = out.join(format!("{prefix}{module}.cpp"));
    std::fs::write(&path, cpp).expect("write generated C++");
    path
}

fn build_host_runtime() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let kdir = manifest.join("src/kernels");
    let hdir = manifest.join("src/runtime/host");
    println!("cargo::rerun-if-changed=build_host.rs");
    println!("cargo::rerun-if-changed={}", kdir.display());
    println!("cargo::rerun-if-changed={}", hdir.display());
    let prelude = std::fs::read_to_string(kdir.join("prelude.cuh")).expect("prelude.cuh");
    let mut mods: Vec<PathBuf> = std::fs::read_dir(&kdir)
        .expect("src/kernels")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    mods.sort();
    let (mut table, mut mutant, mut externs) = (String::new(), String::new(), String::new());
    let mut files = vec![hdir.join("nn_host_rt.cpp")];
    for m in &mods {
        let name = m.file_stem().and_then(|s| s.to_str()).expect("module name").to_string();
        let src = std::fs::read_to_string(m).expect("kernel source");
        files.push(emit_module(&out, "nnhost_", &name, &prelude, &src, &mut table, &mut externs));
        if name == MUTANT_MODULE {
            assert!(
                src.contains(MUTANT_FROM),
                "build_host.rs: the mutation site `{MUTANT_FROM}` is gone from {name}.cu; update MUTANT_FROM"
            );
            let bad = src.replacen(MUTANT_FROM, MUTANT_TO, 1);
            files.push(emit_module(&out, "nnmut_", &name, &prelude, &bad, &mut mutant, &mut externs));
        }
    }
    // the host runtime's own probe kernels (its tests only)
    let probe = std::fs::read_to_string(hdir.join("probe.cu")).expect("probe.cu");
    files.push(emit_module(&out, "nnhost_", "probe", &prelude, &probe, &mut table, &mut externs));
    let rs = format!(
        "// generated by nn-cuda's build_host.rs\n#[allow(improper_ctypes)]\nextern \"C\" {{\n{externs}}}\n\
         /// Every kernel of `src/kernels/*.cu`, compiled for the host.\npub(super) static KERNELS: &[HostKernel] = &[\n{table}];\n\
         /// The mutant build of module `{MUTANT_MODULE}` (one index expression broken).\npub(super) static MUTANT_KERNELS: &[HostKernel] = &[\n{mutant}];\n"
    );
    std::fs::write(out.join("host_kernels.rs"), rs).expect("write host_kernels.rs");
    let mut cc = cc::Build::new();
    cc.cpp(true)
        .include(&hdir)
        .flag_if_supported("-std=c++17")
        .flag_if_supported("-fno-strict-aliasing")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-unused-function")
        .opt_level(2)
        .warnings(false);
    for f in &files {
        cc.file(f);
    }
    cc.compile("nn_cuda_host");
}
