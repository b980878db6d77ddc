#!/bin/sh
# Leave a mark in the tmpfs so a test can tell a fresh tmpfs (one file, ours) from a reused one.
set -eu
date -u +%Y-%m-%dT%H:%M:%SZ > "/scratch/started-by-$(hostname)" 2>/dev/null || true
exec "$@"
