//! Roles and what each may do: the permission table, in one place.
//!
//! The role type is the configuration's [`Role`] (bootstrap users in `atelier.yaml` name
//! one), so there is one list of roles in the program; this module gives it its meaning.
//! [`TABLE`] is data, not code: every check in the console goes through [`Role::allows`],
//! and changing who may do what is an edit to the table alone.
//!
//! A moderator may also be limited to some label values ([`User::allowed_labels`]);
//! [`can_apply_label`] is the one check for "may this user apply this label".

use std::str::FromStr;

use crate::config::Role;

use super::store::User;

/// Something a console user may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See the dashboard, queues, reports and subjects.
    View,
    /// Comment on a report or subject.
    Comment,
    /// Send a report up to the escalated queue.
    Escalate,
    /// Apply or negate labels (within the user's allowed label values).
    Label,
    /// Take down or restore a record or account.
    Takedown,
    /// Add users, change their roles, disable them, reset their passwords.
    ManageUsers,
    /// Change the console's and the services' settings.
    Settings,
}

impl Permission {
    /// Every permission, in the table's column order.
    pub const ALL: [Permission; 7] = [
        Permission::View,
        Permission::Comment,
        Permission::Escalate,
        Permission::Label,
        Permission::Takedown,
        Permission::ManageUsers,
        Permission::Settings,
    ];

    /// What the permission lets one do, as the end of "your role does not include ...".
    pub fn description(self) -> &'static str {
        match self {
            Permission::View => "viewing the console",
            Permission::Comment => "commenting",
            Permission::Escalate => "escalating reports",
            Permission::Label => "applying labels",
            Permission::Takedown => "taking down records and accounts",
            Permission::ManageUsers => "managing users",
            Permission::Settings => "changing settings",
        }
    }
}

use Permission::{Comment, Escalate, Label, ManageUsers, Settings, Takedown, View};

/// Who may do what. Each role holds everything the one above it holds, and more.
pub const TABLE: &[(Role, &[Permission])] = &[
    (Role::Triage, &[View, Comment, Escalate]),
    (Role::Moderator, &[View, Comment, Escalate, Label, Takedown]),
    (
        Role::Admin,
        &[
            View,
            Comment,
            Escalate,
            Label,
            Takedown,
            ManageUsers,
            Settings,
        ],
    ),
];

impl Role {
    /// Every role, most powerful first (the order of the console's role menus).
    pub const ALL: [Role; 3] = [Role::Admin, Role::Moderator, Role::Triage];

    /// Whether this role grants `permission`, by [`TABLE`].
    pub fn allows(self, permission: Permission) -> bool {
        TABLE
            .iter()
            .any(|(role, granted)| *role == self && granted.contains(&permission))
    }

    /// The role's name in the configuration, the database and the pages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Moderator => "moderator",
            Role::Triage => "triage",
        }
    }
}

/// A role name that is none of `admin`, `moderator`, `triage`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role: use admin, moderator or triage")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Whether `user` may apply (or negate) the label `value`: their role must allow labels,
/// and a moderator limited to some values must have `value` among them.
pub fn can_apply_label(user: &User, value: &str) -> bool {
    user.role.allows(Permission::Label)
        && user
            .allowed_labels
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|v| v == value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per role: `y` or `n` for each permission, in [`Permission::ALL`] order.
    const EXPECTED: &[(Role, &str)] = &[
        //                View Comment Escalate Label Takedown ManageUsers Settings
        (Role::Triage, "y y y n n n n"),
        (Role::Moderator, "y y y y y n n"),
        (Role::Admin, "y y y y y y y"),
    ];

    #[test]
    fn permission_table() {
        for &(role, row) in EXPECTED {
            let expected: Vec<bool> = row.split(' ').map(|cell| cell == "y").collect();
            let actual: Vec<bool> = Permission::ALL.iter().map(|&p| role.allows(p)).collect();
            assert_eq!(actual, expected, "{role:?}");
        }
        assert_eq!(EXPECTED.len(), Role::ALL.len(), "every role has a row");
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        let err = "root".parse::<Role>().expect_err("not a role");
        assert_eq!(
            err.to_string(),
            "\"root\" is not a role: use admin, moderator or triage"
        );
    }

    fn user(role: Role, allowed: Option<&[&str]>) -> User {
        User {
            name: "someone".to_owned(),
            role,
            allowed_labels: allowed.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
            must_change_password: false,
            disabled: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn label_limits() {
        let cases: &[(Role, Option<&[&str]>, &str, bool)] = &[
            (Role::Triage, None, "spam", false),
            (Role::Moderator, None, "spam", true),
            (Role::Moderator, Some(&["spam", "nudity"]), "nudity", true),
            (
                Role::Moderator,
                Some(&["spam", "nudity"]),
                "!takedown",
                false,
            ),
            (Role::Moderator, Some(&[]), "spam", false),
            (Role::Admin, None, "!takedown", true),
        ];
        for &(role, allowed, value, expected) in cases {
            assert_eq!(
                can_apply_label(&user(role, allowed), value),
                expected,
                "{role:?} limited to {allowed:?} applying {value}"
            );
        }
    }
}
