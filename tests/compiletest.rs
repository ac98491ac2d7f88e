//! Compile-fail tests of the macros: each tests/ui/<problem>.rs must fail with the
//! error in its .stderr (regenerate with `TRYBUILD=overwrite cargo test --test compiletest`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
