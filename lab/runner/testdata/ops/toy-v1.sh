#!/bin/sh
# A stand-in daemon for the runner's tests (ops.clab.yml): it says its
# version and configuration at start, reloads on SIGHUP and exits on SIGTERM.
v=1
conf() { cat /etc/lab-toy.conf; }
trap 'echo "toy v$v reload config $(conf)"' HUP
trap 'echo "toy v$v stopping"; exit 0' TERM
# Only once both traps are set: a SIGHUP before them would kill the shell.
echo "toy v$v started pid $$ config $(conf)"
while :; do sleep 1 & wait $!; done
