# bash completion for kps-agent(8)
_kps_agent()
{
	local cur prev words cword
	_init_completion 2>/dev/null || {
		cur=${COMP_WORDS[COMP_CWORD]}
		prev=${COMP_WORDS[COMP_CWORD-1]}
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	}
	local commands="apply check submit list status run"
	case $prev in
	-c | --config | --task)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--user)
		COMPREPLY=($(compgen -u -- "$cur"))
		return
		;;
	esac
	local cmd="" i
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-c | --config) ((i++)) ;;
		apply | check | submit | list | status | run)
			cmd=${words[i]}
			break
			;;
		esac
	done
	case $cmd in
	"")
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "-c --config -v --verbose -V --version -h --help" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		fi
		;;
	apply | check | submit) COMPREPLY=($(compgen -W "--task" -- "$cur")) ;;
	list) COMPREPLY=($(compgen -W "--user --json" -- "$cur")) ;;
	status) COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
	esac
}
complete -F _kps_agent kps-agent
