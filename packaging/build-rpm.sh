#!/bin/sh
# Builds the kps-agent binary RPM from this source tree, without touching
# it: makes kps-agent-VERSION.tar.gz from a copy of the tree (the files git
# knows, or everything but build output), runs `rpmbuild -bb` on
# packaging/rpm/kps-agent.spec in a temporary _topdir, and copies the RPMs
# to OUTDIR.
#
#   packaging/build-rpm.sh [OUTDIR]     (default: ./dist)
#
# On an RPM distribution the spec builds as it is. On a host whose rpm
# lacks the meson and systemd macros, or whose rpm database does not know
# the build dependencies (Debian with `apt-get install rpm`), it says so,
# loads stand-in macros from this script and passes --nodeps: the build
# dependencies must then be installed the host's own way (apt), and the
# scriptlets in the package are the stand-ins' (same commands as
# systemd-rpm-macros, but for the user of sysusers.d: systemd-sysusers
# instead of useradd).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
out=${1:-$top/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# shellcheck source=packaging/copy-tree.sh
. "$here/copy-tree.sh"

if ! command -v rpmbuild >/dev/null 2>&1; then
	echo "build-rpm: rpmbuild is missing (dnf install rpm-build, or apt-get install rpm)" >&2
	exit 2
fi

spec="$here/rpm/kps-agent.spec"
version=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
work=$(mktemp -d "${TMPDIR:-/tmp}/kps-agent-rpm.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/rpmbuild/SOURCES" "$work/rpmbuild/SPECS" "$work/src"

copy_tree "$top" "$work/src/kps-agent-$version"
tar -C "$work/src" -czf "$work/rpmbuild/SOURCES/kps-agent-$version.tar.gz" "kps-agent-$version"
cp "$spec" "$work/rpmbuild/SPECS/"
cp "$top/unit/kps-agent.sysusers" "$work/rpmbuild/SOURCES/"

set -- --define "_topdir $work/rpmbuild"

if [ "$(rpm --eval '%{?meson:yes}')" != yes ] || [ "$(rpm --eval '%{?systemd_post:yes}')" != yes ]; then
	echo "build-rpm: this rpm has no meson/systemd macros; loading stand-ins and skipping debuginfo"
	unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || true)
	generatordir=$(pkg-config --variable=systemdsystemgeneratordir systemd 2>/dev/null || true)
	tmpfilesdir=$(pkg-config --variable=tmpfilesdir systemd 2>/dev/null || true)
	sysusersdir=$(pkg-config --variable=sysusersdir systemd 2>/dev/null || true)
	cat >"$work/macros.stand-in" <<EOF
%_unitdir ${unitdir:-/usr/lib/systemd/system}
%_systemdgeneratordir ${generatordir:-/usr/lib/systemd/system-generators}
%_tmpfilesdir ${tmpfilesdir:-/usr/lib/tmpfiles.d}
%_sysusersdir ${sysusersdir:-/usr/lib/sysusers.d}
%_vpath_builddir rpm-build
%meson %{set_build_flags}\\
meson setup --buildtype=plain --prefix=%{_prefix} --libdir=%{_libdir} --bindir=%{_bindir} --sbindir=%{_sbindir} --datadir=%{_datadir} --mandir=%{_mandir} --sysconfdir=%{_sysconfdir} --localstatedir=%{_localstatedir} --sharedstatedir=%{_sharedstatedir} --wrap-mode=nodownload . %{_vpath_builddir}
%meson_build meson compile -C %{_vpath_builddir}
%meson_install DESTDIR=%{buildroot} meson install -C %{_vpath_builddir} --no-rebuild
%systemd_requires Requires(post): systemd\\
Requires(preun): systemd\\
Requires(postun): systemd
%systemd_post() if [ \$1 -eq 1 ]; then systemctl --no-reload preset %{?*} >/dev/null 2>&1 || :; fi
%systemd_preun() if [ \$1 -eq 0 ]; then systemctl --no-reload disable --now %{?*} >/dev/null 2>&1 || :; fi
%systemd_postun() if [ \$1 -ge 1 ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
%systemd_postun_with_restart() if [ \$1 -ge 1 ]; then systemctl daemon-reload >/dev/null 2>&1 || :; systemctl try-restart %{?*} >/dev/null 2>&1 || :; fi
%tmpfiles_create() systemd-tmpfiles --create %{?*} >/dev/null 2>&1 || :
%sysusers_requires_compat Requires(pre): systemd
%sysusers_create_compat() echo '%(grep -v -e '^#' -e '^\$' %1)' | systemd-sysusers --replace=%{_sysusersdir}/%{name}.conf - || :
EOF
	set -- "$@" --load "$work/macros.stand-in" --define 'debug_package %{nil}'
fi

if ! rpm -q --whatprovides 'pkgconfig(libssh)' >/dev/null 2>&1; then
	echo "build-rpm: the rpm database does not know the build dependencies (not an RPM" \
		"distribution?): building with --nodeps"
	set -- "$@" --nodeps
fi

echo "build-rpm: building kps-agent $version"
if ! rpmbuild "$@" -bb "$work/rpmbuild/SPECS/kps-agent.spec"; then
	echo "build-rpm: rpmbuild failed" >&2
	exit 2
fi
find "$work/rpmbuild/RPMS" -name '*.rpm' -exec cp {} "$out/" \;
echo "build-rpm: packages in $out:"
ls -1 "$out"/*.rpm
if command -v rpmlint >/dev/null 2>&1; then
	rpmlint "$out"/kps-agent-"$version"-*.rpm || true
fi
