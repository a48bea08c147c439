//! Atelier's control plane: the `atelier` command.
//!
//! Today it has `version`, `init`/`check` for `atelier.yaml`, `relay` and `appview` (each
//! service from its section of the file, and `appview backfill`), `dev pds` / `up`, which
//! run the sandbox network (a local PLC and the reference PDS, and for `up` the AppView) in
//! the foreground, `status` / `down` / `account create` for a running `up`, and the
//! labeler core ([`labeler`]: signed labels, their store, `queryLabels` and
//! `subscribeLabels`; not yet wired to a command).
//! The full `atelier.yaml` control plane (`init`, `check`, `plan`, `up`, `down`, `status`,
//! backends, backups) replaces `up` when the Control plane issue lands.

pub mod admin;
pub mod appview_cmd;
pub mod backup;
pub mod cli;
pub mod config;
pub mod console;
pub mod deploy;
pub mod dev;
pub mod labeler;
pub mod moderation;
pub mod relay_cmd;
pub mod up_cmd;
pub mod up_state;
pub mod version;
