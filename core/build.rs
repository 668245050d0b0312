//! Rebuilds the core when a migration file changes: the SQL is embedded with
//! `include_str!`, which Cargo does not track across the crate boundary by itself.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
