//! Records the git commit for `/api/v1/health/detailed` and `shadowcheck_build_info`.
//! `SHADOWCHECK_GIT_COMMIT` (e.g. a Docker build argument) wins when there is no .git.

fn main() {
    println!("cargo:rerun-if-env-changed=SHADOWCHECK_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let commit = std::env::var("SHADOWCHECK_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SHADOWCHECK_GIT_COMMIT={commit}");
}
