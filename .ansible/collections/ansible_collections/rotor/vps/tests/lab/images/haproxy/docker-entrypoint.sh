#!/bin/sh
set -e

# Options only (e.g. `-f /path/cfg`): run haproxy with them.
if [ "${1#-}" != "$1" ]; then
	set -- haproxy "$@"
fi

# Like the official image: master-worker mode (reload with SIGUSR2) and
# stay in the foreground.
if [ "$1" = 'haproxy' ]; then
	shift
	set -- haproxy -W -db "$@"
fi

exec "$@"
