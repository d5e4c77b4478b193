//! Generates the protocol's Rust types from `proto/medic/agent/v1/agent.proto`.
//!
//! No `protoc` exists where the agent is built, so the `.proto` file is compiled by `protox` (a
//! protobuf compiler written in Rust) and its descriptors are handed to tonic's code generator.
//! Two variants are written: the client the agent uses (`OUT_DIR/client`) and, for the crate's
//! tests only, the server side (`OUT_DIR/server`), so the binary carries no server code.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let proto = proto_root.join("medic/agent/v1/agent.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    for (variant, client, server) in [("client", true, false), ("server", false, true)] {
        let dir = out_dir.join(variant);
        std::fs::create_dir_all(&dir)?;
        tonic_prost_build::configure()
            .build_client(client)
            .build_server(server)
            .build_transport(false)
            .emit_rerun_if_changed(false)
            .out_dir(&dir)
            .compile_fds(descriptors.clone())?;
    }
    Ok(())
}
