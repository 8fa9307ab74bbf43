//! Compiles the Talos gRPC API subset in `proto/` (upstream package, service, message names and
//! field numbers) with `protox`, a pure-Rust protobuf compiler, so no `protoc` is needed. Both the
//! client (used by `talos::client`) and the server traits (implemented by the lab's emulated
//! Talos nodes) are generated.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: [&str; 4] = [
        "common/common.proto",
        "machine/machine.proto",
        "cluster/cluster.proto",
        "storage/storage.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
