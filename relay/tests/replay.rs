//! The replay server over real loopback sockets: the 150-frame corpus served byte for byte,
//! cursors, rate, looping, faults, HTTP routes, and record -> replay round trips.
//!
//! Server behaviour (cursors, faults) is checked with a bare WebSocket so the client's
//! deduplication cannot hide a server bug; the client is used where the brief's contract
//! is "a client receives ...".

mod support;

use std::future::pending;
use std::time::{Duration, Instant};

use atelier_relay::sync::client::{ClientConfig, ClientEvent, ClientStream, FirehoseClient};
use atelier_relay::sync::frame::{self, Frame};
use atelier_relay::sync::replay::{
    Fault, FaultKind, FrameFile, RecordConfig, ReplayConfig, ReplayServer, error_frame, record,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Every test finishes well within this, or fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The corpus, read with this crate's reader and checked against the shared test helper's
/// independent one.
fn corpus() -> Vec<Bytes> {
    let path = support::corpus_dir().join("frames.bin.zst");
    let frames = FrameFile::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let independent = support::corpus_frames();
    assert_eq!(frames.len(), 150, "the corpus has 150 frames");
    assert!(
        frames
            .iter()
            .map(|f| &f[..])
            .eq(independent.iter().map(|f| &f[..])),
        "FrameFile::read and the support reader disagree"
    );
    frames
}

fn seq_of(frame: &[u8]) -> i64 {
    frame::decode(frame)
        .expect("corpus frames decode")
        .seq()
        .expect("corpus frames have a seq")
}

async fn serve(config: ReplayConfig) -> ReplayServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    ReplayServer::spawn(config, listener).expect("valid replay config")
}

fn client(url: &str, cursor: Option<i64>) -> ClientStream {
    let mut config = ClientConfig::new(url).expect("valid URL");
    config.cursor = cursor;
    config.backoff_base = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(100);
    FirehoseClient::new(config)
        .expect("valid config")
        .run(pending())
}

/// Reads client events until `n` frames arrived; returns the frames and the other events.
async fn client_frames(stream: &mut ClientStream, n: usize) -> (Vec<Bytes>, Vec<ClientEvent>) {
    let mut frames = Vec::new();
    let mut others = Vec::new();
    while frames.len() < n {
        match stream.recv().await.expect("the client keeps running") {
            ClientEvent::Frame { bytes, seq } => {
                assert_eq!(seq, Some(seq_of(&bytes)), "the event's seq is the frame's");
                frames.push(bytes);
            }
            other => others.push(other),
        }
    }
    (frames, others)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn raw_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
        .0
}

/// The next binary message, or `None` when the server closed.
async fn raw_next(ws: &mut Ws) -> Option<Bytes> {
    loop {
        match ws.next().await? {
            Ok(Message::Binary(bytes)) => return Some(bytes),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_client_receives_the_corpus_byte_identical_in_order() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let corpus = corpus();
        let server = serve(ReplayConfig::new(corpus.clone())).await;
        let mut events = client(&server.url(), None);
        let (frames, others) = client_frames(&mut events, corpus.len()).await;
        assert_eq!(frames, corpus);
        assert_eq!(
            others.first(),
            Some(&ClientEvent::Connected { cursor: None })
        );
        assert!(
            !others.iter().any(|e| matches!(
                e,
                ClientEvent::BadFrame { .. } | ClientEvent::Disconnected { .. }
            )),
            "{others:?}"
        );
        // The corpus is from 2026, so the lag is positive.
        assert!(
            others
                .iter()
                .any(|e| matches!(e, ClientEvent::Lag { behind_ms } if *behind_ms > 0)),
            "{others:?}"
        );
        server.shutdown().await.expect("clean shutdown");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn the_server_honours_cursors() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let corpus = corpus();
        let seqs: Vec<i64> = corpus.iter().map(|f| seq_of(f)).collect();
        let server = serve(ReplayConfig::new(corpus.clone())).await;

        // cursor = seq of frame 99: frames 100.. exactly, nothing before.
        let mut ws = raw_connect(&format!("{}?cursor={}", server.url(), seqs[99])).await;
        for expected in &corpus[100..] {
            assert_eq!(raw_next(&mut ws).await.as_ref(), Some(expected));
        }

        // cursor = 0: the whole window, without OutdatedCursor.
        let mut ws = raw_connect(&format!("{}?cursor=0", server.url())).await;
        assert_eq!(raw_next(&mut ws).await.as_ref(), Some(&corpus[0]));

        // A cursor before the window: #info OutdatedCursor, then everything.
        let mut ws = raw_connect(&format!("{}?cursor={}", server.url(), seqs[0] - 10)).await;
        let info = raw_next(&mut ws).await.expect("an #info frame");
        match frame::decode(&info).expect("valid #info") {
            Frame::Info(info) => assert_eq!(info.name, "OutdatedCursor"),
            other => panic!("expected #info, got {other:?}"),
        }
        assert_eq!(raw_next(&mut ws).await.as_ref(), Some(&corpus[0]));

        // A cursor past the last seq: FutureCursor, then the server closes.
        let mut ws = raw_connect(&format!("{}?cursor={}", server.url(), seqs[149] + 1)).await;
        let error = raw_next(&mut ws).await.expect("an error frame");
        match frame::decode(&error).expect("valid error frame") {
            Frame::Error(e) => assert_eq!(e.error, "FutureCursor"),
            other => panic!("expected an error frame, got {other:?}"),
        }
        assert_eq!(raw_next(&mut ws).await, None, "closed after the error");

        // The last seq itself is not in the future: nothing more to send.
        let mut ws = raw_connect(&format!("{}?cursor={}", server.url(), seqs[149])).await;
        let quiet = tokio::time::timeout(Duration::from_millis(300), raw_next(&mut ws)).await;
        assert!(
            quiet.is_err(),
            "nothing is sent after the last seq: {quiet:?}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_client_resuming_from_a_cursor_skips_what_it_saw() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let corpus = corpus();
        let server = serve(ReplayConfig::new(corpus.clone())).await;

        let mut first = client(&server.url(), None);
        let (seen, _) = client_frames(&mut first, 60).await;
        drop(first);
        let cursor = seq_of(&seen[59]);

        let mut second = client(&server.url(), Some(cursor));
        let (rest, others) = client_frames(&mut second, 90).await;
        assert_eq!(
            others.first(),
            Some(&ClientEvent::Connected {
                cursor: Some(cursor)
            })
        );
        let mut all = seen;
        all.extend(rest);
        assert_eq!(all, corpus);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn the_rate_limit_is_honoured_roughly() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let corpus: Vec<Bytes> = corpus().into_iter().take(50).collect();
        let mut config = ReplayConfig::new(corpus.clone());
        config.rate = Some(100.0);
        let server = serve(config).await;
        let started = Instant::now();
        let mut events = client(&server.url(), None);
        let (frames, _) = client_frames(&mut events, corpus.len()).await;
        let elapsed = started.elapsed();
        assert_eq!(frames, corpus);
        // 50 frames at 100/s take about 0.5 s; only a loose lower bound is asserted.
        assert!(elapsed >= Duration::from_millis(350), "took {elapsed:?}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn looping_repeats_the_frames_unchanged() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let corpus: Vec<Bytes> = corpus().into_iter().take(3).collect();
        let mut config = ReplayConfig::new(corpus.clone());
        config.looping = true;
        let server = serve(config).await;
        let mut ws = raw_connect(&server.url()).await;
        for i in 0..10 {
            assert_eq!(
                raw_next(&mut ws).await.as_ref(),
                Some(&corpus[i % 3]),
                "message {i}"
            );
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn faults_apply_once_at_their_frame_index() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let corpus: Vec<Bytes> = corpus().into_iter().take(10).collect();
        let injected = error_frame("ConsumerTooSlow", "test");
        let mut config = ReplayConfig::new(corpus.clone());
        config.faults = vec![
            Fault {
                at: 1,
                kind: FaultKind::Drop,
            },
            Fault {
                at: 2,
                kind: FaultKind::FlipByte { offset: 5 },
            },
            Fault {
                at: 3,
                kind: FaultKind::Truncate { len: 20 },
            },
            Fault {
                at: 4,
                kind: FaultKind::Inject(injected.clone()),
            },
            Fault {
                at: 5,
                kind: FaultKind::Stall(Duration::from_millis(300)),
            },
            Fault {
                at: 7,
                kind: FaultKind::Close,
            },
        ];
        let server = serve(config).await;

        let mut ws = raw_connect(&server.url()).await;
        assert_eq!(raw_next(&mut ws).await.as_ref(), Some(&corpus[0]));
        // Frame 1 dropped.
        let flipped = raw_next(&mut ws).await.expect("frame 2");
        assert_eq!(flipped.len(), corpus[2].len());
        let differing: Vec<usize> = (0..flipped.len())
            .filter(|&i| flipped[i] != corpus[2][i])
            .collect();
        assert_eq!(differing, vec![5]);
        assert_eq!(flipped[5], !corpus[2][5]);
        assert_eq!(raw_next(&mut ws).await, Some(corpus[3].slice(..20)));
        assert_eq!(raw_next(&mut ws).await, Some(injected));
        assert_eq!(raw_next(&mut ws).await.as_ref(), Some(&corpus[4]));
        let stalled = Instant::now();
        assert_eq!(raw_next(&mut ws).await.as_ref(), Some(&corpus[5]));
        assert!(
            stalled.elapsed() >= Duration::from_millis(200),
            "{:?}",
            stalled.elapsed()
        );
        assert_eq!(raw_next(&mut ws).await.as_ref(), Some(&corpus[6]));
        assert_eq!(raw_next(&mut ws).await, None, "closed at frame 7");

        // Faults do not repeat: a second connection gets everything intact.
        let mut ws = raw_connect(&server.url()).await;
        for expected in &corpus {
            assert_eq!(raw_next(&mut ws).await.as_ref(), Some(expected));
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn health_and_other_routes_answer_over_http() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let server = serve(ReplayConfig::new(Vec::new())).await;
        let get = |path: &'static str| {
            let addr = server.addr();
            async move {
                let mut tcp = TcpStream::connect(addr).await.expect("connect");
                let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n");
                tcp.write_all(request.as_bytes()).await.expect("write");
                let mut response = String::new();
                tcp.read_to_string(&mut response).await.expect("read");
                response
            }
        };
        let health = get("/xrpc/_health").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.contains(r#""version""#), "{health}");
        let plain = get("/xrpc/com.atproto.sync.subscribeRepos").await;
        assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
        assert!(plain.contains("InvalidRequest"), "{plain}");
        let bad_cursor = get("/xrpc/com.atproto.sync.subscribeRepos?cursor=-5").await;
        assert!(bad_cursor.starts_with("HTTP/1.1 400"), "{bad_cursor}");
        let other = get("/xrpc/com.atproto.sync.getRepo").await;
        assert!(other.starts_with("HTTP/1.1 501"), "{other}");
        let missing = get("/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn record_then_replay_round_trips_byte_identical() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let corpus = corpus();
        let dir = tempfile::tempdir().expect("temp dir");
        let source = serve(ReplayConfig::new(corpus.clone())).await;

        // Record everything.
        let out = dir.path().join("recorded.bin.zst");
        let config = RecordConfig {
            client: ClientConfig::new(&source.url()).expect("valid URL"),
            out: out.clone(),
            count: Some(corpus.len() as u64),
        };
        let mut seen = 0;
        let progress = record(config, pending(), |p| seen = p.frames)
            .await
            .expect("recording works");
        assert_eq!(progress.frames, 150);
        assert_eq!(seen, 150);
        assert_eq!(progress.last_seq, Some(seq_of(&corpus[149])));
        assert_eq!(FrameFile::read(&out).expect("readable"), corpus);

        // A partial recording from a cursor.
        let partial = dir.path().join("partial.bin.zst");
        let mut from_cursor = ClientConfig::new(&source.url()).expect("valid URL");
        from_cursor.cursor = Some(seq_of(&corpus[9]));
        let config = RecordConfig {
            client: from_cursor,
            out: partial.clone(),
            count: Some(5),
        };
        record(config, pending(), |_| {})
            .await
            .expect("recording works");
        assert_eq!(FrameFile::read(&partial).expect("readable"), corpus[10..15]);

        // Replaying the recording serves the same bytes.
        let replayed = FrameFile::read(&out).expect("readable");
        let server = serve(ReplayConfig::new(replayed)).await;
        let mut events = client(&server.url(), None);
        let (frames, _) = client_frames(&mut events, corpus.len()).await;
        assert_eq!(frames, corpus);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn recording_stops_cleanly_on_shutdown() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let corpus: Vec<Bytes> = corpus().into_iter().take(20).collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let source = serve(ReplayConfig::new(corpus.clone())).await;
        let out = dir.path().join("until-stopped.bin.zst");
        let config = RecordConfig {
            client: ClientConfig::new(&source.url()).expect("valid URL"),
            out: out.clone(),
            count: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (all_written, mut written) = tokio::sync::mpsc::unbounded_channel();
        let recording = tokio::spawn(record(
            config,
            async move {
                let _ = stopped.await;
            },
            move |p| {
                if p.frames == 20 {
                    let _ = all_written.send(());
                }
            },
        ));
        // Stop once everything is written; the server then idles and the client waits.
        written.recv().await.expect("20 frames written");
        stop.send(()).expect("recording still running");
        let progress = recording.await.expect("no panic").expect("recording works");
        assert_eq!(progress.frames, 20);
        assert_eq!(FrameFile::read(&out).expect("readable"), corpus);
    })
    .await
    .expect("test timed out");
}
