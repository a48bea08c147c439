//! The sync layer: from bytes on a WebSocket to verified repository events.
//!
//! Layers, bottom up:
//! - [`cbor`]: a strict, borrowing DAG-CBOR reader (no allocation per value).
//! - [`car`]: CAR v1 files and slices, every block's CID checked against its bytes.
//! - [`frame`]: `subscribeRepos` messages (`#commit`, `#sync`, `#identity`, `#account`,
//!   `#info`, error frames), decoded without copying.
//! - [`keys`]: ATProto public keys (Multikey, legacy, did:key), k256/p256 signature checks.
//! - [`mst`]: Merkle Search Tree nodes, walks, and the sync 1.1 inversion proof.
//! - [`verify`]: per-account commit verification with typed failure reasons.
//! - [`identity`] and [`ssrf`]: DID and handle resolution through one guarded HTTP client.
//! - [`client`]: the reconnecting firehose client; [`replay`]: recorded frames served as a
//!   real `subscribeRepos` WebSocket.
//! - [`stream`]: all of the above joined: a stream of verified events (commits with their
//!   records, identity and account changes, resyncs, rejections with reasons).

pub mod car;
pub mod cbor;
pub mod client;
pub mod frame;
pub mod identity;
pub mod keys;
pub mod mst;
pub mod replay;
pub mod ssrf;
pub mod stream;
pub mod verify;
