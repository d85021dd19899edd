#!/bin/sh
# Runs one test function (run.sh starts this under a timeout): lib.sh and every case file are
# sourced, then the function runs in $T_DIR.
. /vm/lib.sh
for f in /vm/cases/*.sh; do
    . "$f"
done
T_NAME=$1
T_DIR=/tmp/t/$T_NAME
rm -rf "$T_DIR"
mkdir -p "$T_DIR"
cd "$T_DIR" || exit 1
export T_NAME T_DIR
"$T_NAME"
