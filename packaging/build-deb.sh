#!/bin/sh
# Builds the kps-agent .deb from this source tree, without touching it:
# copies the tree (the files git knows, or everything but build output) to
# a temporary directory, puts packaging/debian at its top where dpkg wants
# it, runs `dpkg-buildpackage -us -uc -b` there, copies the packages to
# OUTDIR and checks them with lintian.
#
#   packaging/build-deb.sh [OUTDIR]     (default: ./dist)
#
# Exit status: 0 when the package built and lintian found no error; 1 when
# lintian reported errors (the packages are in OUTDIR all the same); 2 when
# the build failed. Lintian warnings are shown, they do not fail the build.
# The tests are skipped (DEB_BUILD_OPTIONS=nocheck and -Dtests=false in
# debian/rules): they need root and a live sshd; .ci/run runs them.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
out=${1:-$top/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# shellcheck source=packaging/copy-tree.sh
. "$here/copy-tree.sh"

for tool in dpkg-buildpackage dpkg-parsechangelog; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "build-deb: $tool is missing (apt-get install dpkg-dev debhelper)" >&2
		exit 2
	fi
done

version=$(dpkg-parsechangelog -l "$here/debian/changelog" -S Version)
work=$(mktemp -d "${TMPDIR:-/tmp}/kps-agent-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
src="$work/kps-agent-$version"

copy_tree "$top" "$src"
if [ -e "$src/debian" ]; then
	echo "build-deb: the tree already has a debian/ at its top" >&2
	exit 2
fi
cp -R "$src/packaging/debian" "$src/debian"

echo "build-deb: building kps-agent $version in $src"
if ! (cd "$src" && DEB_BUILD_OPTIONS="nocheck ${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage -us -uc -b); then
	echo "build-deb: dpkg-buildpackage failed" >&2
	exit 2
fi

changes=$(ls "$work"/kps-agent_"$version"_*.changes)
for f in "$work"/*.deb "$work"/*.buildinfo "$changes"; do
	cp "$f" "$out/"
done
echo "build-deb: packages in $out:"
ls -1 "$out"/*.deb

if ! command -v lintian >/dev/null 2>&1; then
	echo "build-deb: lintian is missing (apt-get install lintian); not checked" >&2
	exit 0
fi
echo "build-deb: lintian $changes"
status=0
lintian --fail-on error --display-info "$changes" || status=$?
if [ "$status" -ne 0 ]; then
	echo "build-deb: lintian reported errors" >&2
	exit 1
fi
echo "build-deb: lintian: no errors"
