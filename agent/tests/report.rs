#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! The agent's client against the real boot-services HTTP server (machinist-boot's router,
//! in-memory machines): the report arrives, a wrong token is refused at once, a server that is
//! down at first is waited for, the log and progress arrive.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use machinist_agent::backoff::Backoff;
use machinist_agent::sidecar::{SendError, Sidecar};
use machinist_agent_protocol::cmdline::{Args, Mode, OnSuccess};
use machinist_agent_protocol::progress::Level;
use machinist_agent_protocol::report::{Quad, Report};
use machinist_boot::machines::{BootRecord, InMemoryMachines};
use machinist_e2e::boot_http::BootHttp;

const TOKEN: &str = "agent-token";

fn args(address: SocketAddr, token: &str) -> Args {
    Args {
        url: format!("http://{address}"),
        machine: "vm-1".into(),
        token: token.into(),
        mac: "52:54:00:ab:00:01".into(),
        mode: Mode::Discovery,
        on_success: OnSuccess::Halt,
        debug: false,
        role: None,
    }
}

/// The boot services' HTTP server on `listener`, with machine vm-1; stops on drop.
fn boot_services(listener: std::net::TcpListener) -> BootHttp {
    let machines = InMemoryMachines::new();
    let record = BootRecord {
        name: "vm-1".into(),
        boot_target: None,
        boot_menu: None,
        token: TOKEN.into(),
        on_success: Default::default(),
        debug: false,
        installed: false,
    };
    machines.insert("52:54:00:ab:00:01".parse().unwrap(), record);
    BootHttp::start(listener, machines, None).unwrap()
}

fn quick() -> Backoff {
    Backoff { base: Duration::from_millis(20), cap: Duration::from_millis(200), attempts: 200 }
}

#[test]
fn the_report_log_and_progress_arrive_and_a_wrong_token_is_final() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let services = boot_services(listener);
    let items = vec![Quad::new("system", "product", "name", "QEMU"), Quad::new("cpu", "logical", "number", "2")];
    let report = Report { items: items.clone() };

    let sidecar = Sidecar::new(&args(address, TOKEN), quick());
    sidecar.report(&report, |_, why| panic!("retried: {why}")).unwrap();
    sidecar.progress("inventory", "2 items", Level::Info).unwrap();
    sidecar.upload_log("agent log line\n").unwrap();
    let reports = services.machines.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!((reports[0].0.as_str(), &reports[0].1.items), ("vm-1", &items));
    assert_eq!(services.machines.log("vm-1").as_deref(), Some("agent log line\n"));

    let mut retries = 0;
    let wrong = Sidecar::new(&args(address, "wrong"), quick());
    match wrong.report(&report, |_, _| retries += 1) {
        Err(SendError::Refused { status: 401, .. }) => {}
        other => panic!("expected a final 401, got {other:?}"),
    }
    assert_eq!(retries, 0, "a refusal is not retried");
    assert_eq!(services.machines.reports().len(), 1, "nothing recorded for the wrong token");
}

#[test]
fn boot_services_that_are_down_at_first_are_waited_for() {
    // Reserve a port, then free it: nothing listens until the agent has failed once.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = reserved.local_addr().unwrap();
    drop(reserved);
    let (failed, first_failure) = mpsc::channel();
    let agent = std::thread::spawn(move || {
        let sidecar = Sidecar::new(&args(address, TOKEN), quick());
        let report = Report { items: vec![Quad::new("system", "product", "name", "QEMU")] };
        let mut failures = 0;
        let result = sidecar.report(&report, |_, _| {
            failures += 1;
            let _ = failed.send(());
        });
        (result, failures)
    });
    first_failure.recv_timeout(Duration::from_secs(30)).expect("the agent tried and failed");
    let services = boot_services(std::net::TcpListener::bind(address).unwrap());
    let (result, failures) = agent.join().unwrap();
    result.unwrap();
    assert!(failures >= 1);
    assert_eq!(services.machines.reports().len(), 1);

    // Gone for good: the agent gives up after its attempts, saying why.
    drop(services);
    let sidecar = Sidecar::new(&args(address, TOKEN), Backoff { attempts: 3, ..quick() });
    match sidecar.report(&Report { items: vec![Quad::new("a", "b", "c", "d")] }, |_, _| {}) {
        Err(SendError::GaveUp { attempts: 3, .. }) => {}
        other => panic!("expected to give up, got {other:?}"),
    }
}
