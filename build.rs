//! Compiles `proto/renmian/v1/*.proto` with the vendored protoc, so no system protoc is
//! needed, and writes the encoded descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("renmian_descriptor.bin"))
        .compile_with_config(config, &["proto/renmian/v1/registry.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    // `sqlx::migrate!` embeds migrations/ at compile time; a new migration file must
    // recompile the crate.
    println!("cargo:rerun-if-changed=migrations");
    Ok(())
}
