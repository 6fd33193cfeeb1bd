#!/bin/sh
# Raises the open-file limit (1000 agents hold 1000 connections and folders) and runs the bench.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec node "$(dirname "$0")/../dist/bench/main.js" "$@"
