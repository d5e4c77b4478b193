//! Generates the server side of `proto/medic/agent/v1/agent.proto` (the repository's, four
//! levels up), with `protox` so no `protoc` is needed; as `agent-rs/medic-agent/build.rs` does.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../../../proto");
    let proto = proto_root.join("medic/agent/v1/agent.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&proto_root])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .compile_fds(descriptors)?;
    Ok(())
}
