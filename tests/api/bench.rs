//! The benchmark harness, small, so it never rots: it must complete and print its figures.
//! (Figures are read by people from `scripts/bench`; nothing here asserts a speed.)

use std::process::Command;

/// Runs the bench with `args` against this build's server; it must succeed and print each of
/// `headings`.
fn bench_prints(args: &[&str], headings: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .args(["--server", env!("CARGO_BIN_EXE_shadowcheck")])
        .output()
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for heading in headings {
        assert!(
            stdout.contains(heading),
            "missing `{heading}` in:\n{stdout}"
        );
    }
    println!("{stdout}");
}

#[test]
fn the_small_benchmark_prints_its_figures() {
    // Two maximum-size bodies at once: the full eight is for `scripts/bench`, not a loaded CI.
    let args = [
        "--rows",
        "20000",
        "--queries",
        "10",
        "--concurrency",
        "1,2",
        "--large-concurrency",
        "2",
        "--scenarios",
        "2",
        "--walks",
        "1",
        "--weeks",
        "0",
        "--tiles",
        "10",
        "--load-secs",
        "5",
    ];
    let headings = [
        "## (a) baseline: psql COPY",
        "## (b) HTTP ingest",
        "best HTTP/COPY ratio",
        "registry updater statements during (b)",
        "| registry_save |",
        "## (c) query latency",
        "nearest 10",
        "server peak RSS",
        "## (f) map serving on the same table",
        "| shadowcheck | 16 |",
        "| 1000 features, city bbox |",
        "| FlatGeobuf, Berlin box |",
        "## (d) 2 concurrent maximum-size bodies",
        "peak above idle",
        "## (e) detector on 2 randomised known-truth scenarios",
        "| follower (suspicious or alert) |",
        "| evil_twin |",
        "## (e2) detector on 1 scenarios of 16 short walks",
        "| AirGuard-style baseline |",
        "## (h) /v1/geolocate on 169 held-out real scans",
        "| peer: strongest known access point |",
        "## (i) liveness and registry lag: 5 s at 1,000 rows/s",
        "/health/live over",
        "20000 rows in",
    ];
    bench_prints(&args, &headings);
}

#[test]
#[cfg_attr(
    not(feature = "tool-tests"),
    ignore = "needs PgBouncer: feature tool-tests (scripts/test)"
)]
fn the_scale_out_section_prints_its_figures() {
    bench_prints(
        &[
            "--rows",
            "5000",
            "--queries",
            "10",
            "--concurrency",
            "2",
            "--scale-only",
        ],
        &[
            "## (g) scale-out",
            "bytes per row",
            "| direct |",
            "| direct, transaction_pooler on |",
            "| PgBouncer 1.18, transaction mode |",
        ],
    );
}
