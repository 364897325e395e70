//! The production stack on a real Docker engine, as the README's "Production" section runs it:
//! stand-in base images under the compose file's names (tests/engine/stand-ins), the API image
//! from the shipped Dockerfile, then `scripts/gen-secrets`, `docker compose up -d --wait`, and
//! what a user and an operator do with it, one step after another on the one stack (each step
//! needs the state the ones before left). The first failing step ends the run; the stack, the
//! forwarding block and an engine this test started are removed in any case.
//!
//! Run by `scripts/test` (feature `engine-tests`); needs root, dockerd (Debian docker.io),
//! debootstrap, iptables and the Compose v2 plugin, which scripts/test installs.

mod engine;
mod stack;
mod steps;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Instant;

use engine::{Engine, ForwardBlock};
use stack::Stack;

type Step = for<'a> fn(&'a mut Stack) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

macro_rules! steps {
    ($($name:ident),* $(,)?) => {
        [$((stringify!($name), (|s| Box::pin(steps::$name(s))) as Step)),*]
    };
}

fn main() -> ExitCode {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter
        .as_deref()
        .is_some_and(|f| !"engine".contains(f) && !f.contains("engine"))
    {
        // `cargo test NAME` for another suite: nothing of ours matches.
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let engine = Engine::ensure();
    println!(
        "engine: {} ({})",
        engine::must(engine::docker().args(["version", "--format", "{{.Server.Version}}"])).trim(),
        if engine.started_here() {
            "started by this test"
        } else {
            "already running"
        }
    );
    if let Err(why) = steps::no_stack_of_the_users() {
        eprintln!("engine: {why}");
        return ExitCode::FAILURE;
    }
    let volumes_before = engine::volumes();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut stack = Stack::copy();
    let guard = ForwardBlock::install();
    let all = steps![
        the_shipped_dockerfile_builds_the_api_image_on_the_engine,
        gen_secrets_then_up_wait_boots_the_stack_within_three_minutes,
        ingest_through_the_tls_proxy_is_read_back,
        prometheus_scrapes_every_target,
        no_alert_is_pending_or_firing_after_boot,
        the_api_role_has_every_grant_it_uses,
        the_scenarios_follower_reaches_an_open_stream_and_the_threats,
        the_follower_alert_reaches_alertmanager,
        an_allowlist_entry_round_trips,
        the_backup_service_writes_a_verified_dump,
        restore_of_a_backup_into_the_live_stack_succeeds,
        restarting_postgis_under_ingest_loses_no_acknowledged_row,
        a_sigkilled_api_is_restarted_by_the_engine,
        deploy_under_steady_ingest_answers_every_request,
        a_tag_that_never_gets_healthy_is_rolled_back_by_itself,
        down_then_up_keeps_the_data,
        scale_profile_reads_from_the_replica_through_pgbouncer,
        one_of_two_api_replicas_stopped_under_load_loses_nothing,
    ];
    let mut failed = None;
    for (name, step) in all {
        let t = Instant::now();
        println!("step {name} ...");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(step(&mut stack))
        }));
        match outcome {
            Ok(()) => println!("step {name} ... ok ({:.0} s)", t.elapsed().as_secs_f64()),
            Err(_) => {
                println!(
                    "step {name} ... FAILED ({:.0} s)",
                    t.elapsed().as_secs_f64()
                );
                failed = Some(name);
                break;
            }
        }
    }
    if failed.is_some() {
        steps::show_state(&stack);
    }
    let teardown = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        steps::down_v_leaves_no_container_network_or_volume(&stack, &volumes_before)
    }));
    match teardown {
        Ok(()) => println!("step down_v_leaves_no_container_network_or_volume ... ok"),
        Err(_) => {
            println!("step down_v_leaves_no_container_network_or_volume ... FAILED");
            failed = failed.or(Some("down_v_leaves_no_container_network_or_volume"));
        }
    }
    drop(guard);
    drop(runtime);
    let _ = std::fs::remove_dir_all(&stack.dir);
    drop(engine);
    println!(
        "engine: {} in {:.0} s",
        if failed.is_some() { "FAILED" } else { "ok" },
        started.elapsed().as_secs_f64()
    );
    match failed {
        Some(_) => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    }
}
