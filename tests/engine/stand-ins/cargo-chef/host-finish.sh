# The host's toolchain (without its documentation), cargo-chef, and the vendored crates.
sysroot=$(rustc --print sysroot)
toolchain=$ROOTFS/usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu
mkdir -p "$toolchain" "$ROOTFS/usr/local/cargo/bin"
tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$toolchain" -xf -
for tool in cargo rustc rustdoc; do
  ln -s "../../rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/bin/$tool" "$ROOTFS/usr/local/cargo/bin/$tool"
done
install -m 0755 "$CHEF" "$ROOTFS/usr/local/cargo/bin/cargo-chef"
(cd "$REPO" && cargo vendor --quiet --locked "$ROOTFS/usr/local/cargo/vendor" >/dev/null)
cat > "$ROOTFS/usr/local/cargo/config.toml" <<'TOML'
# Stand-in only: crates come from the vendored copy, never from the network.
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/usr/local/cargo/vendor"

[net]
offline = true
TOML
chmod -R a+rwX "$ROOTFS/usr/local/cargo"
