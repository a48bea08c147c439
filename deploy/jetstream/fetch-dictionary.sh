#!/bin/sh
# fetch-dictionary.sh: install the legacy Jetstream zstd dictionary.
#
# Jetstream clients embed this dictionary and pick it by the dict ID in each frame header,
# so the relay's copy must be byte-identical to theirs (shared/brief/jetstream.md §6). Its
# bytes are not kept in this repository: they come from the MIT-licensed Rust package
# `jetstream-oxide` 0.1.2 (file `zstd/dictionary`), downloaded by cargo itself from the
# registry cargo is configured for, and are checked against a pinned sha256.
#
# Usage: deploy/jetstream/fetch-dictionary.sh [DEST]
#   DEST defaults to $ATELIER_HOME/jetstream/zstd_dictionary, with ATELIER_HOME defaulting
#   to $HOME/.local/share/atelier. Nothing is downloaded when DEST already has the right
#   sha256. A download whose sha256 differs fails loudly and installs nothing.
# Needs: cargo, tar, gzip, sha256sum.
set -eu

package=jetstream-oxide
version=0.1.2
member=zstd/dictionary
want_sha256=b8d77b46933aceecbdd5275a01241efc985c970c78162b8150cf67a26522f70c
want_size=112640

die() {
  printf 'fetch-dictionary.sh: %s\n' "$*" >&2
  exit 1
}
sha256() { sha256sum "$1" | cut -d' ' -f1; }

home=${ATELIER_HOME:-${HOME:?HOME is not set}/.local/share/atelier}
dest=${1:-$home/jetstream/zstd_dictionary}

if [ -f "$dest" ] && [ "$(sha256 "$dest")" = "$want_sha256" ]; then
  printf '    jetstream dictionary: up to date (%s)\n' "$dest"
  exit 0
fi

command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH (install a Rust toolchain first)"
for tool in tar sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found on PATH"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/atelier-dict.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# A throwaway cargo project whose only dependency is the pinned package: `cargo fetch`
# downloads its .crate archive into cargo's registry cache (with cargo's own checksum check
# against the registry index).
mkdir -p "$tmp/project/src"
cat >"$tmp/project/Cargo.toml" <<TOML
[package]
name = "atelier-fetch-jetstream-dictionary"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$package = "=$version"

[workspace]
TOML
: >"$tmp/project/src/lib.rs"
printf '    jetstream dictionary: fetching %s %s with cargo\n' "$package" "$version"
cargo fetch --quiet --manifest-path "$tmp/project/Cargo.toml" ||
  die "cargo fetch of $package $version failed (messages above)"

crate=''
for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$package-$version.crate"; do
  [ -f "$f" ] && crate=$f && break
done
[ -n "$crate" ] || die "cargo fetched $package $version but no $package-$version.crate is under ${CARGO_HOME:-$HOME/.cargo}/registry/cache/"

tar -xzf "$crate" -C "$tmp" "$package-$version/$member" ||
  die "cannot extract $member from $crate"
got="$tmp/$package-$version/$member"
got_sha256=$(sha256 "$got")
if [ "$got_sha256" != "$want_sha256" ]; then
  die "CHECKSUM MISMATCH for $member in $crate: expected sha256 $want_sha256, got $got_sha256 ($(wc -c <"$got") bytes). Nothing was installed."
fi
[ "$(wc -c <"$got")" -eq "$want_size" ] || die "unexpected size for $member in $crate"

mkdir -p "$(dirname -- "$dest")"
cp "$got" "$dest.new.$$"
chmod 0644 "$dest.new.$$"
mv "$dest.new.$$" "$dest"
printf '    jetstream dictionary: installed %s (sha256 %s)\n' "$dest" "$want_sha256"
