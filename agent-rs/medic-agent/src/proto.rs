//! The protocol's messages and client (`medic.agent.v1`), generated at build time from
//! `proto/medic/agent/v1/agent.proto` (see `build.rs`).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/client/medic.agent.v1.rs"));
