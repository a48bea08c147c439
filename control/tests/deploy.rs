//! `atelier deploy systemd` through the real binary: which units each kind of
//! `atelier.yaml` gets, and that every unit is hardened (dedicated user, read-only system
//! but the data directory, no new privileges...) and runs this binary with the file's
//! absolute path.

use std::path::Path;
use std::process::Command;

const ATELIER: &str = env!("CARGO_BIN_EXE_atelier");

/// Lines every unit must have.
const HARDENING: &[&str] = &[
    "User=atelier",
    "Group=atelier",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "RestrictSUIDSGID=yes",
    "CapabilityBoundingSet=",
    "SystemCallFilter=@system-service",
    "UMask=0077",
    "Restart=on-failure",
    "WantedBy=multi-user.target",
];

/// (init arguments, what replaces `relay: null`, expected units and their `ExecStart`
/// subcommand)
type Case = (
    &'static [&'static str],
    &'static str,
    &'static [(&'static str, &'static str)],
);

fn atelier(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(ATELIER)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("atelier runs")
}

#[test]
fn units_per_profile_are_hardened() {
    let cases: [Case; 3] = [
        (&["init"], "", &[("atelier-up.service", "up")]),
        (
            &[
                "init",
                "--profile",
                "production",
                "--hostname",
                "atelier.example.org",
            ],
            "",
            &[("atelier-appview.service", "appview")],
        ),
        (
            &[
                "init",
                "--profile",
                "production",
                "--hostname",
                "atelier.example.org",
            ],
            "  relay:\n    upstreams:\n      - url: wss://relay.example.org\n        kind: relay\n",
            &[
                ("atelier-relay.service", "relay"),
                ("atelier-appview.service", "appview"),
            ],
        ),
    ];
    for (init, edit, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let out = atelier(&root, init);
        assert!(out.status.success(), "{init:?}: {out:?}");
        let path = root.join("atelier.yaml");
        // Production needs TLS or a proxy in front.
        let yaml = std::fs::read_to_string(&path).expect("read");
        std::fs::write(
            &path,
            yaml.replace("behind_proxy: false", "behind_proxy: true"),
        )
        .expect("write");
        if !edit.is_empty() {
            let yaml = std::fs::read_to_string(&path).expect("read");
            std::fs::write(&path, yaml.replace("  relay: null\n", edit)).expect("write");
        }
        let out = atelier(&root, &["deploy", "systemd", "--out", "units"]);
        assert!(out.status.success(), "{init:?}: {out:?}");
        let mut written: Vec<String> = std::fs::read_dir(root.join("units"))
            .expect("units dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        written.sort();
        let mut names: Vec<String> = want.iter().map(|(n, _)| (*n).to_owned()).collect();
        names.sort();
        assert_eq!(written, names, "{init:?}");
        let config = root.join("atelier.yaml");
        for (name, sub) in want {
            let text = std::fs::read_to_string(root.join("units").join(name)).expect("unit");
            for line in HARDENING {
                assert!(
                    text.lines().any(|l| l == *line),
                    "{name}: missing {line}\n{text}"
                );
            }
            let exec = format!("ExecStart={ATELIER} {sub} --config {}", config.display());
            assert!(text.lines().any(|l| l == exec), "{name}: {exec}\n{text}");
            let rw = text
                .lines()
                .find_map(|l| l.strip_prefix("ReadWritePaths="))
                .expect("ReadWritePaths");
            assert!(
                Path::new(rw).is_absolute() && rw.starts_with(root.to_str().expect("utf-8")),
                "{rw}"
            );
        }
    }
}
