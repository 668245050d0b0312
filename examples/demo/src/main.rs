//! The main job, on embedded SQLite: a key with a 50-cent monthly budget and a
//! scope takes 20 concurrent 5-cent charges; exactly 10 fit.
fn main() {}
