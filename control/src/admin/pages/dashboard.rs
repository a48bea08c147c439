//! `GET /`: the dashboard. For now it names the moderation queues; their pages, sizes and
//! the services' health join it with the moderation module.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

use super::{PageError, Shell, render};
use crate::admin::access::Permission;
use crate::admin::auth::Authed;

/// A moderation queue, as the dashboard lists it.
#[derive(Debug, Clone, Copy)]
struct Queue {
    name: &'static str,
    about: &'static str,
}

/// The queues reports move through.
const QUEUES: [Queue; 3] = [
    Queue {
        name: "Unreviewed",
        about: "new reports and auto-flags nobody has looked at yet",
    },
    Queue {
        name: "Escalated",
        about: "reports sent up for a moderator or admin to decide",
    },
    Queue {
        name: "Resolved",
        about: "reports acted on or acknowledged, kept for the record",
    },
];

#[derive(Template)]
#[template(path = "admin/dashboard.html", config = "src/admin/askama.toml")]
struct DashboardPage {
    shell: Shell,
    queues: [Queue; 3],
}

/// `GET /`.
pub(crate) async fn show(authed: Authed) -> Result<Response, PageError> {
    authed.require(Permission::View)?;
    Ok(render(
        StatusCode::OK,
        &DashboardPage {
            shell: authed.shell("Dashboard"),
            queues: QUEUES,
        },
    ))
}
