# Sourced by build-deb.sh and build-rpm.sh.
#
# copy_tree SRC DEST: copies the source tree SRC to DEST (created). In a git
# work tree that is every file git tracks or would track (untracked files
# included, ignored ones such as build/ not), as it is on disk; elsewhere it
# is everything but .git and build directories. dist/, where the build
# scripts put packages by default, is never copied.

copy_tree() {
	mkdir -p "$2"
	if command -v git >/dev/null 2>&1 && git -C "$1" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		# A tracked file deleted on disk is skipped, not an error. (The
		# single quotes are right: "$f" belongs to the inner sh.)
		# shellcheck disable=SC2016
		(cd "$1" && git ls-files -z --cached --others --exclude-standard |
			xargs -0 sh -c 'for f; do case $f in dist/*) continue ;; esac; [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
			sort -zu | tar -C "$1" --null --verbatim-files-from -T - -cf - | tar -C "$2" -xf -
	else
		tar -C "$1" --exclude=./.git --exclude=./build --exclude='./build-*' \
			--exclude=./dist --exclude='./obj-*' -cf - . | tar -C "$2" -xf -
	fi
}
