//! Atelier's control plane: the `atelier` command.
//!
//! Today it has `version`, `init`/`check` for `atelier.yaml`, `relay` and `appview` (each
//! service from its section of the file), and `dev pds` / `up`, which run the sandbox
//! network (a local PLC and the reference PDS) in the foreground.
//! The full `atelier.yaml` control plane (`init`, `check`, `plan`, `up`, `down`, `status`,
//! backends, backups) replaces `up` when the Control plane issue lands.

pub mod appview_cmd;
pub mod cli;
pub mod config;
pub mod dev;
pub mod relay_cmd;
pub mod version;
