//! Generates the protobuf messages and the tonic clients and servers from
//! `proto/raft.proto` and `proto/admin.proto`, using the vendored `protoc`
//! so a fresh machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An explicitly configured protoc wins; otherwise use the vendored one.
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        std::env::set_var("PROTOC", protoc);
    }

    let protos = ["proto/raft.proto", "proto/admin.proto"];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Every `bytes` field decodes into `bytes::Bytes`: zero-copy slices of
        // the receive buffer instead of fresh `Vec<u8>` allocations.
        .bytes(".")
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
