//! The `roost` binary. The broker itself arrives with issue 3; until then this says so.

fn main() {
    eprintln!(
        "roost {}: the MQTT codec is built, the broker is not built yet (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
