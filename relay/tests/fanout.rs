//! Fan-out under load: a subscriber that stops reading is dropped (`ConsumerTooSlow`, counted
//! in `/metrics`) while 100 others, fed the real firehose corpus through the relay, each
//! receive every event.
//!
//! This is its own test binary so the 100 readers never share the machine's cores with the
//! other service tests (on a 2-core CI runner that contention, not the relay, starved
//! readers long enough to trip the send timeout).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::relay::{
    CORPUS_PASSING, Relay, STEP, corpus_relay_config, corpus_upstream, metric, metrics_text,
    settled,
};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_subscriber_is_dropped_and_fast_ones_get_everything() {
    const FAST: usize = 100;
    // Eight upstreams each replaying the corpus (each upstream has its own verifier state,
    // so the copies are not stale to each other): ~6.5 MB per subscriber, more than the
    // kernel's socket buffers can hide from a subscriber that does not read.
    let mut upstreams = Vec::new();
    for _ in 0..8 {
        upstreams.push(corpus_upstream(300.0).await);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let addrs: Vec<_> = upstreams.iter().map(|(addr, _)| *addr).collect();
    let mut config = corpus_relay_config(dir.path(), &addrs);
    // The default live buffer (4096 events) is more than the whole run, so a subscriber
    // that reads can only be dropped by a send blocking for the timeout; the one that does
    // not read is dropped that way once the kernel's socket buffers are full.
    config.subscribers.send_timeout_secs = 10;
    // The relay starts following at once; subscribers connect from cursor 0 so they see
    // everything regardless of when they attach.
    let relay = Relay::start(config).await;
    let http = reqwest::Client::new();
    let url = format!(
        "ws://{}/xrpc/com.atproto.sync.subscribeRepos?cursor=0",
        relay.addr
    );

    // The slow one: a tiny receive buffer, and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(2048).expect("SO_RCVBUF");
    let stream = socket.connect(relay.addr).await.expect("connect");
    let (slow, _) = tokio_tungstenite::client_async(&url, stream)
        .await
        .expect("slow client handshake");

    // Fast subscribers read until they have everything the relay logged (known once the
    // log stops growing), or until nothing has come for 30 s.
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let mut fast = Vec::new();
    for _ in 0..FAST {
        let (url, target) = (url.clone(), Arc::clone(&target));
        fast.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("fast");
            let (mut n, mut bytes) = (0u64, 0usize);
            let mut last = Instant::now();
            while n < target.load(Ordering::SeqCst) && last.elapsed() < Duration::from_secs(30) {
                match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                    Ok(Some(Ok(Message::Binary(b)))) => {
                        n += 1;
                        bytes += b.len();
                        last = Instant::now();
                    }
                    Ok(Some(Ok(_))) | Err(_) => {}
                    Ok(None | Some(Err(_))) => break,
                }
            }
            (n, bytes)
        }));
    }
    let logged = settled(&http, &relay, 8 * CORPUS_PASSING).await;
    target.store(logged, Ordering::SeqCst);
    let mut counts = Vec::new();
    for f in fast {
        counts.push(f.await.expect("fast subscriber"));
    }
    let text = metrics_text(&http, &relay).await;
    let logged = metric(&text, "atelier_relay_log_latest_seq");
    let dropped = metric(&text, "atelier_relay_subscribers_dropped_total");
    eprintln!(
        "{logged} events logged; fast subscribers got {:?} frames ({} bytes each); {dropped} dropped",
        counts
            .iter()
            .map(|c| c.0)
            .collect::<std::collections::BTreeSet<_>>(),
        counts[0].1
    );
    assert!(
        logged > 8 * 100,
        "most corpus commits pass app.bsky.*: {text}"
    );
    assert!(
        counts.iter().all(|(n, _)| *n == logged),
        "every fast subscriber got every event: {counts:?} of {logged}"
    );
    // The slow one goes once a send has been blocked for the timeout: wait for it.
    let deadline = Instant::now() + STEP;
    let mut dropped = dropped;
    while dropped == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        dropped = metric(
            &metrics_text(&http, &relay).await,
            "atelier_relay_subscribers_dropped_total",
        );
    }
    assert_eq!(dropped, 1, "the slow subscriber was dropped: {text}");
    drop(slow);
    relay.stop().await;
}
