//! Runs the `nn` binary on the PyTorch fixtures (tests/fixtures/pt/) and asserts on its
//! output and exit codes (0 ok/equal, 1 differences, 2 usage, 3 file error).

mod common;

use common::{fixture, nn, tmp};

#[test]
fn inspect_prints_the_tree_with_totals() {
    let (code, out, _) = nn(&["inspect", "--tree", &fixture("checkpoint.pt")]);
    assert_eq!(code, 0);
    assert!(
        out.contains("PyTorch torch.save archive (a checkpoint: nested dicts with non-tensor values), 16 tensors, 205 elements, 820 B"),
        "{out}"
    );
    assert!(out.contains("  model/\n    0/\n      weight"), "{out}");
    assert!(out.contains("float32   [8, 4]         128 B"), "{out}");
    assert!(out.contains("epoch                          = 3"), "{out}");
}

#[test]
fn inspect_lists_full_keys_as_load_addresses_them() {
    let (code, out, _) = nn(&["inspect", &fixture("checkpoint.pt")]);
    assert_eq!(code, 0);
    assert!(out.contains("\n  model.0.weight "), "{out}");
    assert!(out.contains("\n  optimizer.state.0.exp_avg "), "{out}");
    assert!(out.contains("\n  epoch "), "{out}");
    assert!(!out.contains("model/"), "{out}");
}

#[test]
fn inspect_json_is_machine_readable() {
    let (code, out, _) = nn(&["inspect", "--json", &fixture("mlp_bf16.pt")]);
    assert_eq!(code, 0);
    let v: serde_json::Value = match serde_json::from_str(&out) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {out}"),
    };
    assert_eq!(v["format"], "torch");
    assert_eq!(v["kind"], "state_dict");
    assert_eq!(v["total_bytes"], 134);
    assert_eq!(v["tensors"][0]["name"], "0.weight");
    assert_eq!(v["tensors"][0]["dtype"], "bfloat16");
    assert_eq!(v["tensors"][0]["shape"], serde_json::json!([8, 4]));
}

#[test]
fn convert_selects_strips_and_changes_dtype_then_diff_agrees() {
    let out_st = tmp("model.safetensors");
    let (code, out, err) = nn(&[
        "convert",
        &fixture("checkpoint.pt"),
        &out_st,
        "--key",
        "model",
        "--dtype",
        "f16",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("safetensors format, 4 tensors, 134 B"),
        "{out}"
    );
    let (_, json, _) = nn(&["inspect", "--json", &out_st]);
    assert!(json.contains("\"dtype\":\"float16\""), "{json}");

    let dp = tmp("dp.pt");
    let (code, _, err) = nn(&[
        "convert",
        &fixture("mlp_dataparallel.pt"),
        &dp,
        "--strip-prefix",
        "module.",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = nn(&["diff", &dp, &fixture("mlp_f32.pt")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("files are equal"), "{out}");
}

#[test]
fn diff_reports_keys_dtypes_and_values_with_exit_codes() {
    let (code, out, _) = nn(&[
        "diff",
        &fixture("mlp_dataparallel.pt"),
        &fixture("mlp_f32.pt"),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("only in A: module.0.weight"), "{out}");
    assert!(out.contains("only in B: 0.weight"), "{out}");
    let (code, out, _) = nn(&["diff", &fixture("mlp_f32.pt"), &fixture("mlp_f16.pt")]);
    assert_eq!(code, 1);
    assert!(out.contains("dtype 0.weight: float32 -> float16"), "{out}");
    assert!(out.contains("values 0.weight: max abs diff 1.156"), "{out}");
    // the same values, stored as f32 by two writers: equal
    let (code, out, _) = nn(&[
        "diff",
        &fixture("mlp_f32.pt"),
        &fixture("mlp.expect.safetensors"),
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = nn(&["diff", &fixture("mlp_f32.pt"), &fixture("views.pt")]);
    assert_eq!(code, 1);
    assert!(out.contains("only in B: base"), "{out}");
}

#[test]
fn hostile_and_missing_files_are_one_line_errors_with_code_3() {
    for f in [
        "hostile_os_system.pt",
        "hostile_zip_bomb.pt",
        "hostile_deep.pt",
        "legacy.pt",
        "scripted.pt",
    ] {
        let (code, out, err) = nn(&["inspect", &fixture(f)]);
        assert_eq!(code, 3, "{f}");
        assert!(out.is_empty(), "{f}: {out}");
        assert_eq!(err.lines().count(), 1, "{f}: {err}");
        assert!(err.starts_with("nn: error: "), "{f}: {err}");
    }
    let (code, _, err) = nn(&["diff", "/nonexistent/a.pt", &fixture("mlp_f32.pt")]);
    assert_eq!(code, 3);
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn usage_errors_are_code_2() {
    let (code, _, err) = nn(&["frob"]);
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
    let (code, _, _) = nn(&["convert", "a", "b", "--dtype", "f8"]);
    assert_eq!(code, 2);
}
