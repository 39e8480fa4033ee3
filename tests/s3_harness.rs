//! Self-tests of the S3 test harness (`tests/common/s3.rs`) against a real moto server: the
//! bucket helpers read back what a client stored (bytes, keys, `x-amz-meta-*` metadata), and
//! the fault proxy passes, refuses, cuts and stalls connections as asked. The tests of the
//! node's S3 storage rely on both.

mod common;

use std::time::Duration;

use common::s3::{Fault, FaultyProxy, Moto, DUMMY_AUTHORIZATION};
use reqwest::blocking::Client;

fn client(timeout: Duration) -> Client {
    Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("HTTP client")
}

#[test]
fn the_helpers_see_what_a_client_stored_with_its_metadata() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("harness");
    // Stored as a node would: a plain PUT with user metadata.
    let r = client(Duration::from_secs(10))
        .put(format!("{}/harness/backups/one.db", moto.endpoint))
        .header("Authorization", DUMMY_AUTHORIZATION)
        .header("x-amz-meta-x-test-id", "abc")
        .body(b"first".to_vec())
        .send()
        .expect("PUT to moto");
    assert_eq!(r.status().as_u16(), 200, "{}", moto.log());
    moto.put("harness", "backups/two db+&.db", b"second");
    moto.put("harness", "elsewhere/three.db", b"third");

    assert_eq!(
        moto.keys("harness", "backups/"),
        ["backups/one.db", "backups/two db+&.db"]
    );
    assert_eq!(moto.keys("harness", "").len(), 3);
    assert_eq!(
        moto.head_metadata("harness", "backups/one.db"),
        Some(vec![(
            "x-amz-meta-x-test-id".to_string(),
            "abc".to_string()
        )])
    );
    assert_eq!(
        moto.head_metadata("harness", "backups/two db+&.db"),
        Some(vec![])
    );
    assert_eq!(
        moto.get("harness", "backups/one.db").as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        moto.get("harness", "backups/two db+&.db").as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(moto.get("harness", "backups/missing.db"), None);
    assert_eq!(moto.head_metadata("harness", "backups/missing.db"), None);
    assert!(
        moto.log().contains("PUT /harness/backups/one.db"),
        "{}",
        moto.log()
    );
}

#[test]
fn the_proxy_passes_refuses_cuts_and_stalls() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("proxied");
    moto.put("proxied", "small", b"through the proxy");
    let proxy = FaultyProxy::start(moto.address());
    let get = |timeout| {
        client(timeout)
            .get(format!("{}/proxied/small", proxy.endpoint))
            .header("Authorization", DUMMY_AUTHORIZATION)
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.bytes())
    };

    let body = get(Duration::from_secs(10)).expect("GET through a passing proxy");
    assert_eq!(&body[..], b"through the proxy");
    assert_eq!(proxy.connections(), 1);

    proxy.set(Fault::Refuse);
    assert!(
        get(Duration::from_secs(10)).is_err(),
        "a refused GET succeeded"
    );
    assert_eq!(proxy.connections(), 2);

    proxy.set(Fault::CutRequestsAfter(10));
    let before = proxy.bytes_to_server();
    let put = client(Duration::from_secs(10))
        .put(format!("{}/proxied/big", proxy.endpoint))
        .header("Authorization", DUMMY_AUTHORIZATION)
        .body(vec![7u8; 1 << 20])
        .send()
        .and_then(|r| r.error_for_status());
    assert!(put.is_err(), "a PUT cut after 10 bytes succeeded");
    assert_eq!(proxy.bytes_to_server() - before, 10);
    assert_eq!(moto.get("proxied", "big"), None);

    // A stalled server never answers: the client's own timeout ends the request.
    proxy.set(Fault::Stall);
    let err = get(Duration::from_secs(1)).expect_err("a stalled GET succeeded");
    assert!(err.is_timeout(), "not a timeout: {err}");

    proxy.set(Fault::Pass);
    let body = get(Duration::from_secs(10)).expect("GET after the faults end");
    assert_eq!(&body[..], b"through the proxy");
}
