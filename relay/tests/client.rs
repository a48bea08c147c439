//! The firehose client against the real sandbox PDS (live commits, reconnecting through a
//! connection that is cut) and against the replay server's faults (stalls, error frames,
//! truncated frames), all on loopback.

mod support;

use std::future::pending;
use std::net::SocketAddr;
use std::time::Duration;

use atelier_relay::sync::client::{
    ClientConfig, ClientEvent, ClientStream, DisconnectReason, FirehoseClient,
};
use atelier_relay::sync::frame::{self, Action, Frame};
use atelier_relay::sync::replay::{Fault, FaultKind, FrameFile, ReplayConfig, ReplayServer};
use atelier_sandbox::Sandbox;
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Tests against the replay server finish well within this, or fail.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);
/// Tests that start a sandbox PDS get longer: the PDS takes a few seconds to start.
const SANDBOX_TIMEOUT: Duration = Duration::from_secs(180);

fn corpus() -> Vec<Bytes> {
    let path = support::corpus_dir().join("frames.bin.zst");
    let frames = FrameFile::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(frames.len(), 150, "the corpus has 150 frames");
    frames
}

fn seq_of(frame: &[u8]) -> i64 {
    frame::decode(frame)
        .expect("frames decode")
        .seq()
        .expect("frames have a seq")
}

fn fast_config(url: &str) -> ClientConfig {
    let mut config = ClientConfig::new(url).expect("valid URL");
    config.backoff_base = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(200);
    config
}

fn start(config: ClientConfig) -> ClientStream {
    FirehoseClient::new(config)
        .expect("valid config")
        .run(pending())
}

async fn serve(config: ReplayConfig) -> ReplayServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    ReplayServer::spawn(config, listener).expect("valid replay config")
}

/// Reads events until `n` frames arrived; returns the frames and every event in order.
async fn frames_and_events(stream: &mut ClientStream, n: usize) -> (Vec<Bytes>, Vec<ClientEvent>) {
    let mut frames = Vec::new();
    let mut events = Vec::new();
    while frames.len() < n {
        let event = stream.recv().await.expect("the client keeps running");
        if let ClientEvent::Frame { bytes, .. } = &event {
            frames.push(bytes.clone());
        }
        events.push(event);
    }
    (frames, events)
}

/// The events other than frames and lag reports, for order assertions.
fn control_events(events: &[ClientEvent]) -> Vec<&ClientEvent> {
    events
        .iter()
        .filter(|e| !matches!(e, ClientEvent::Frame { .. } | ClientEvent::Lag { .. }))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Against the real PDS
// ---------------------------------------------------------------------------------------------

/// What a client delivered: the seqs of its frames and its other events, in order.
#[derive(Debug, Default)]
struct Seen {
    seqs: Vec<i64>,
    control: Vec<ClientEvent>,
}

/// Waits for the `#commit` by `did` that creates `path`. Checks every delivered seq is
/// greater than the previous one on the way.
async fn wait_for_create(events: &mut ClientStream, did: &str, path: &str, seen: &mut Seen) {
    loop {
        let event = events.recv().await.expect("the client keeps running");
        let ClientEvent::Frame { bytes, seq } = event else {
            if !matches!(event, ClientEvent::Lag { .. }) {
                seen.control.push(event);
            }
            continue;
        };
        let decoded = frame::decode(&bytes).expect("PDS frames decode");
        assert_eq!(seq, decoded.seq());
        if let Some(seq) = seq {
            if let Some(last) = seen.seqs.last() {
                assert!(seq > *last, "seq {seq} after {last}");
            }
            seen.seqs.push(seq);
        }
        if let Frame::Commit(commit) = decoded {
            let creates = commit
                .ops
                .iter()
                .any(|op| op.action == Action::Create && op.path == path);
            if commit.repo == did && creates {
                return;
            }
        }
    }
}

#[tokio::test]
async fn receives_a_commit_for_a_record_created_after_connecting() {
    tokio::time::timeout(SANDBOX_TIMEOUT, async {
        let sandbox = Sandbox::start().await.expect("sandbox starts");
        let account = sandbox.create_account("alice").await.expect("account");
        let mut events = start(fast_config(&sandbox.subscribe_repos_url(None)));
        assert_eq!(
            events.recv().await,
            Some(ClientEvent::Connected { cursor: None })
        );
        let created = account
            .create_record(
                "computer.aesthetic.test",
                &json!({"$type": "computer.aesthetic.test", "text": "after connecting"}),
            )
            .await
            .expect("record created");
        let rkey = created.uri.rsplit('/').next().expect("rkey");
        let path = format!("computer.aesthetic.test/{rkey}");
        wait_for_create(&mut events, &account.did, &path, &mut Seen::default()).await;
    })
    .await
    .expect("test timed out");
}

/// A TCP forwarder whose connections can all be cut at once, to kill a connection to the
/// real PDS from outside the client.
struct CuttingProxy {
    addr: SocketAddr,
    cut: watch::Sender<u64>,
}

impl CuttingProxy {
    async fn start(upstream: SocketAddr) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("address");
        let (cut, cuts) = watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        CuttingProxy { addr, cut }
    }

    /// Drops every open connection (new ones are still forwarded).
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test]
async fn reconnects_with_its_cursor_and_misses_nothing_from_the_pds() {
    tokio::time::timeout(SANDBOX_TIMEOUT, async {
        let sandbox = Sandbox::start().await.expect("sandbox starts");
        let account = sandbox.create_account("bob").await.expect("account");
        let pds: url::Url = sandbox.pds_url().parse().expect("PDS URL");
        let upstream = pds
            .socket_addrs(|| None)
            .expect("PDS address")
            .into_iter()
            .next()
            .expect("one address");
        let proxy = CuttingProxy::start(upstream).await;
        let url = format!("ws://{}/xrpc/com.atproto.sync.subscribeRepos", proxy.addr);
        // From the start of the PDS's window, so the delivered seqs can be checked for gaps.
        let mut config = fast_config(&url);
        config.cursor = Some(0);
        let mut events = start(config);

        let create = |i: usize| {
            let account = account.clone();
            async move {
                let record = json!({"$type": "computer.aesthetic.test", "n": i});
                let created = account
                    .create_record("computer.aesthetic.test", &record)
                    .await
                    .expect("record created");
                let rkey = created.uri.rsplit('/').next().expect("rkey").to_owned();
                format!("computer.aesthetic.test/{rkey}")
            }
        };
        let mut seen = Seen::default();
        for i in 0..3 {
            let path = create(i).await;
            wait_for_create(&mut events, &account.did, &path, &mut seen).await;
        }
        // Nothing else is written meanwhile, so this is the client's cursor at the cut.
        let at_cut = *seen.seqs.last().expect("frames were delivered");

        // Cut the connection, write while the client is away, and write after it is back.
        proxy.cut();
        let mut while_away = Vec::new();
        for i in 3..6 {
            while_away.push(create(i).await);
        }
        for path in &while_away {
            wait_for_create(&mut events, &account.did, path, &mut seen).await;
        }
        for i in 6..8 {
            let path = create(i).await;
            wait_for_create(&mut events, &account.did, &path, &mut seen).await;
        }

        // Strictly increasing with no gap: the PDS numbers its events consecutively, and the
        // window starts at 1.
        let expected: Vec<i64> = (1..=*seen.seqs.last().expect("frames")).collect();
        assert_eq!(seen.seqs, expected);
        // One reconnection, from the cursor held at the cut.
        let connects: Vec<&ClientEvent> = seen
            .control
            .iter()
            .filter(|e| matches!(e, ClientEvent::Connected { .. }))
            .collect();
        assert_eq!(
            connects,
            [
                &ClientEvent::Connected { cursor: Some(0) },
                &ClientEvent::Connected {
                    cursor: Some(at_cut)
                },
            ],
            "{:?}",
            seen.control
        );
        assert!(
            seen.control
                .iter()
                .any(|e| matches!(e, ClientEvent::Disconnected { .. })),
            "{:?}",
            seen.control
        );
    })
    .await
    .expect("test timed out");
}

// ---------------------------------------------------------------------------------------------
// Against the replay server's faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_closed_connection_is_resumed_from_the_cursor() {
    tokio::time::timeout(REPLAY_TIMEOUT, async {
        let corpus = corpus();
        let mut config = ReplayConfig::new(corpus.clone());
        config.faults = vec![
            Fault {
                at: 40,
                kind: FaultKind::Close,
            },
            Fault {
                at: 90,
                kind: FaultKind::Abort,
            },
        ];
        let server = serve(config).await;
        let mut events = start(fast_config(&server.url()));
        let (frames, events) = frames_and_events(&mut events, corpus.len()).await;
        assert_eq!(frames, corpus, "nothing missed, nothing twice");
        let control = control_events(&events);
        assert_eq!(control.len(), 5, "{control:?}");
        assert_eq!(control[0], &ClientEvent::Connected { cursor: None });
        assert!(matches!(
            control[1],
            ClientEvent::Disconnected {
                reason: DisconnectReason::Closed { .. },
                ..
            }
        ));
        assert_eq!(
            control[2],
            &ClientEvent::Connected {
                cursor: Some(seq_of(&corpus[39]))
            }
        );
        assert!(matches!(control[3], ClientEvent::Disconnected { .. }));
        assert_eq!(
            control[4],
            &ClientEvent::Connected {
                cursor: Some(seq_of(&corpus[89]))
            }
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn the_idle_watchdog_reconnects_from_a_stalled_server() {
    tokio::time::timeout(REPLAY_TIMEOUT, async {
        let corpus = corpus();
        let mut config = ReplayConfig::new(corpus.clone());
        // Stalls far longer than the test may run: only the watchdog gets past it.
        config.faults = vec![Fault {
            at: 50,
            kind: FaultKind::Stall(Duration::from_secs(600)),
        }];
        let server = serve(config).await;
        let mut client = fast_config(&server.url());
        client.idle_timeout = Duration::from_millis(1500);
        client.ping_interval = Some(Duration::from_millis(250));
        let mut events = start(client);
        let (frames, events) = frames_and_events(&mut events, corpus.len()).await;
        assert_eq!(frames, corpus);
        let control = control_events(&events);
        assert_eq!(control.len(), 3, "{control:?}");
        assert!(matches!(
            control[1],
            ClientEvent::Disconnected {
                reason: DisconnectReason::Idle(_),
                ..
            }
        ));
        assert_eq!(
            control[2],
            &ClientEvent::Connected {
                cursor: Some(seq_of(&corpus[49]))
            }
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_quiet_server_that_answers_pings_is_not_idle() {
    tokio::time::timeout(REPLAY_TIMEOUT, async {
        // Two frames, then nothing: like a PDS without writes.
        let corpus: Vec<Bytes> = corpus().into_iter().take(2).collect();
        let server = serve(ReplayConfig::new(corpus)).await;
        let mut client = fast_config(&server.url());
        client.idle_timeout = Duration::from_millis(500);
        client.ping_interval = Some(Duration::from_millis(100));
        let mut events = start(client);
        let (_, _) = frames_and_events(&mut events, 2).await;
        let quiet = tokio::time::timeout(Duration::from_millis(1500), events.recv()).await;
        assert!(
            quiet.is_err(),
            "no event, in particular no reconnect: {quiet:?}"
        );
    })
    .await
    .expect("test timed out");
}

#[derive(Serialize)]
struct ErrorHeader {
    op: i64,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

/// An error frame built with an independent encoder.
fn dagcbor_error_frame(error: &str, message: &str) -> Bytes {
    let mut bytes = serde_ipld_dagcbor::to_vec(&ErrorHeader { op: -1 }).expect("header");
    bytes.extend(serde_ipld_dagcbor::to_vec(&ErrorBody { error, message }).expect("body"));
    bytes.into()
}

#[test]
fn the_replay_servers_error_frames_match_an_independent_encoder() {
    assert_eq!(
        atelier_relay::sync::replay::error_frame("FutureCursor", "Cursor in the future."),
        dagcbor_error_frame("FutureCursor", "Cursor in the future.")
    );
}

#[tokio::test]
async fn a_future_cursor_error_frame_is_surfaced_and_the_client_restarts_live() {
    tokio::time::timeout(REPLAY_TIMEOUT, async {
        let corpus = corpus();
        let mut config = ReplayConfig::new(corpus.clone());
        let error = dagcbor_error_frame("FutureCursor", "Cursor in the future.");
        config.faults = vec![
            Fault { at: 0, kind: FaultKind::Inject(error) },
            Fault { at: 0, kind: FaultKind::Close },
        ];
        let server = serve(config).await;
        // The client claims to be far ahead; the replay server itself would also answer
        // FutureCursor, but the injected frame comes first.
        let mut client = fast_config(&server.url());
        client.cursor = Some(seq_of(&corpus[0]) - 1);
        let mut events = start(client);
        let (frames, events) = frames_and_events(&mut events, corpus.len()).await;
        assert_eq!(frames, corpus);
        let control = control_events(&events);
        assert_eq!(control.len(), 4, "{control:?}");
        assert_eq!(
            control[1],
            &ClientEvent::FutureCursor { message: Some("Cursor in the future.".into()) }
        );
        assert!(matches!(
            control[2],
            ClientEvent::Disconnected { reason: DisconnectReason::ErrorFrame(e), .. } if e == "FutureCursor"
        ));
        assert_eq!(control[3], &ClientEvent::Connected { cursor: None }, "reconnects live");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn the_replay_servers_own_future_cursor_answer_is_handled() {
    tokio::time::timeout(REPLAY_TIMEOUT, async {
        let corpus = corpus();
        let server = serve(ReplayConfig::new(corpus.clone())).await;
        let mut client = fast_config(&server.url());
        client.cursor = Some(seq_of(&corpus[149]) + 1_000);
        let mut events = start(client);
        let (frames, events) = frames_and_events(&mut events, corpus.len()).await;
        assert_eq!(frames, corpus, "everything, once the cursor is forgotten");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ClientEvent::FutureCursor { .. }))
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn consumer_too_slow_reconnects_with_the_cursor() {
    tokio::time::timeout(REPLAY_TIMEOUT, async {
        let corpus = corpus();
        let mut config = ReplayConfig::new(corpus.clone());
        config.faults = vec![
            Fault {
                at: 20,
                kind: FaultKind::Inject(dagcbor_error_frame("ConsumerTooSlow", "slow")),
            },
            Fault {
                at: 20,
                kind: FaultKind::Close,
            },
        ];
        let server = serve(config).await;
        let mut events = start(fast_config(&server.url()));
        let (frames, events) = frames_and_events(&mut events, corpus.len()).await;
        assert_eq!(frames, corpus);
        let control = control_events(&events);
        assert_eq!(
            control[1],
            &ClientEvent::ConsumerTooSlow {
                message: Some("slow".into())
            }
        );
        assert_eq!(
            control[3],
            &ClientEvent::Connected {
                cursor: Some(seq_of(&corpus[19]))
            }
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_truncated_frame_is_a_bad_frame_and_the_stream_continues() {
    tokio::time::timeout(REPLAY_TIMEOUT, async {
        let corpus = corpus();
        let mut config = ReplayConfig::new(corpus.clone());
        config.faults = vec![Fault {
            at: 10,
            kind: FaultKind::Truncate { len: 100 },
        }];
        let server = serve(config).await;
        let mut events = start(fast_config(&server.url()));
        let (frames, events) = frames_and_events(&mut events, corpus.len()).await;
        assert_eq!(
            frames, corpus,
            "the bad frame is not delivered; its intact copy is"
        );
        let control = control_events(&events);
        assert_eq!(control.len(), 4, "{control:?}");
        assert!(matches!(control[1], ClientEvent::BadFrame { .. }));
        assert!(matches!(
            control[2],
            ClientEvent::Disconnected {
                reason: DisconnectReason::BadFrame,
                ..
            }
        ));
        assert_eq!(
            control[3],
            &ClientEvent::Connected {
                cursor: Some(seq_of(&corpus[9]))
            }
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn an_unreachable_server_is_retried_until_it_appears() {
    tokio::time::timeout(REPLAY_TIMEOUT, async {
        let corpus: Vec<Bytes> = corpus().into_iter().take(5).collect();
        // Reserve a port, then free it so the first attempts are refused.
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        let url = atelier_relay::sync::replay::subscribe_repos_url(addr);
        let mut events = start(fast_config(&url));
        let first = events.recv().await;
        assert!(
            matches!(
                first,
                Some(ClientEvent::Disconnected {
                    reason: DisconnectReason::ConnectFailed(_),
                    ..
                })
            ),
            "{first:?}"
        );
        let listener = TcpListener::bind(addr).await.expect("rebind the port");
        let _server =
            ReplayServer::spawn(ReplayConfig::new(corpus.clone()), listener).expect("valid config");
        let (frames, _) = frames_and_events(&mut events, corpus.len()).await;
        assert_eq!(frames, corpus);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn shutdown_ends_the_stream() {
    tokio::time::timeout(REPLAY_TIMEOUT, async {
        let corpus: Vec<Bytes> = corpus().into_iter().take(3).collect();
        let server = serve(ReplayConfig::new(corpus)).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut events = FirehoseClient::new(fast_config(&server.url()))
            .expect("valid config")
            .run(async move {
                let _ = stopped.await;
            });
        let _ = frames_and_events(&mut events, 3).await;
        stop.send(()).expect("client running");
        // Whatever was queued drains, then the stream ends.
        while let Some(event) = events.recv().await {
            assert!(
                !matches!(event, ClientEvent::Disconnected { .. }),
                "{event:?}"
            );
        }
    })
    .await
    .expect("test timed out");
}
