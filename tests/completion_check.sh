#!/bin/bash
# The bash completion offers each command and its options.
set -eu
. "$1"
try() {
	local want=$1
	shift
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_kps_agent
	local got="${COMPREPLY[*]}"
	if [ "$got" != "$want" ]; then
		echo "FAIL: '$*' completes to '$got', wanted '$want'"
		exit 1
	fi
}
try "list" kps-agent li
try "check" kps-agent -c /etc/x.conf ch
try "--user --json" kps-agent list ""
try "--json" kps-agent status --j
try "--task" kps-agent submit --t
try "apply check submit list status run" kps-agent ""
try "root" kps-agent list --user roo
echo "PASS completion"
