//! What a user sees when something below the engine fails after work began: the store
//! cannot record a plan that ran, or a runtime's namespace is gone. Against the recording
//! executor, without root. A rollback that fails is covered where plans run
//! (`executor::tests::a_failed_rollback_is_in_the_error_a_user_sees_and_the_errno_is_kept`).

use super::tests::{connect, net, Fixture};
use super::*;
use crate::model::JournalEntry;
use std::path::Path;
use wharf_sdk::{Netns, Op};

/// Network `n` on bridge `bridge`, so its steps can be told apart.
fn bridged(bridge: &str) -> NetworkCreateRequest {
    NetworkCreateRequest { options: [("bridge".to_string(), bridge.to_string())].into(), ..net("n") }
}

#[test]
fn a_plan_the_store_cannot_record_is_rolled_back_and_the_error_says_so() {
    let f = Fixture::new();
    let e = f.engine();
    f.rec.clear();
    // The journal entry is written; the commit after the plan ran is not.
    e.store.fail_write(2);
    let err = e.network_create(bridged("hsbr0")).unwrap_err();
    assert_eq!(err.status(), 500);
    let message = err.message();
    assert!(message.contains("could not be recorded and was rolled back"), "{message}");
    assert!(message.contains("injected write failure"), "the store's own error is kept: {message}");
    assert!(!message.contains("rollback also failed"), "{message}");
    let log = f.rec.log();
    let made = log.iter().position(|op| matches!(op, Op::LinkAdd { link, .. } if link.name == "hsbr0"));
    let undone = log.iter().position(|op| matches!(op, Op::LinkDel { name, .. } if name == "hsbr0"));
    assert!(made.is_some() && made < undone, "the bridge was made, then taken away: {log:?}");
    assert!(e.network("n").is_err());
    assert!(e.store.list::<JournalEntry>(Table::Journal).unwrap().is_empty(), "the journal is settled");
    drop(e);
    assert!(f.engine().network("n").is_err(), "a restart finds nothing either");
}

#[test]
fn a_failed_rollback_after_a_failed_commit_is_in_the_error() {
    let f = Fixture::new();
    let e = f.engine();
    e.store.fail_write(2);
    f.rec.fail_on(Some("delete link hsbr0"));
    let err = e.network_create(bridged("hsbr0")).unwrap_err();
    let message = err.message();
    assert!(message.contains("could not be recorded and was rolled back"), "{message}");
    assert!(message.contains("; rollback also failed: delete link hsbr0"), "{message}");
    assert!(message.contains("(injected)"), "the undo step's own error is kept: {message}");
}

#[test]
fn connecting_a_runtime_sandbox_whose_namespace_is_gone_is_a_conflict_and_makes_nothing() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(net("n")).unwrap();
    let netns = "/run/netns/hs-runtime";
    e.sandbox_create("rt", Some(netns), Default::default()).unwrap();
    f.rec.vanish(Path::new(netns));
    f.rec.clear();
    let err = e.connect(connect("n", "rt")).unwrap_err();
    assert_eq!(err.status(), 409, "the sandbox, not wharf, is at fault: {err}");
    let message = err.message();
    assert!(message.contains(&format!("its namespace {netns} is gone")), "{message}");
    assert!(message.contains("remove the sandbox"), "it says what to do: {message}");
    assert!(f.rec.log().is_empty(), "nothing was made: {:?}", f.rec.log());
    assert_eq!(e.lock().endpoints().len(), 0);
    assert!(e.store.list::<JournalEntry>(Table::Journal).unwrap().is_empty());
    e.sandbox_remove("rt", false).unwrap();
    e.network_remove("n").unwrap();
}

#[test]
fn reconcile_drops_the_endpoints_of_a_runtime_sandbox_whose_namespace_is_gone() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(net("n")).unwrap();
    let netns = "/run/netns/hs-runtime";
    e.sandbox_create("rt", Some(netns), Default::default()).unwrap();
    let ep = e.connect(connect("n", "rt")).unwrap();
    drop(e);
    f.rec.vanish(Path::new(netns));
    f.rec.clear();
    let e = f.engine();
    assert_eq!(e.lock().endpoints().len(), 0, "the endpoint is dropped");
    assert!(e.store.list::<Endpoint>(Table::Endpoints).unwrap().is_empty(), "and forgotten by the store");
    let log = f.rec.log();
    assert!(log.iter().all(|op| !op.namespaces().any(|n| *n == Netns::Path(netns.into()))), "{log:?}");
    assert!(e.sandbox("rt").is_ok(), "the sandbox stays, for its runtime to remove");
    let again = e.sandbox_create("other", None, Default::default()).unwrap();
    let wanted = ConnectRequest { ipv4: ep.ipv4.map(|a| a.addr()), ..connect("n", &again.name) };
    let other = e.connect(wanted).expect("the dropped endpoint's address is free again");
    assert_eq!(other.ipv4, ep.ipv4);
}
