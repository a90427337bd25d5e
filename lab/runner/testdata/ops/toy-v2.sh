#!/bin/sh
# A stand-in daemon for the runner's tests (ops.clab.yml): it says its
# version and configuration at start, reloads on SIGHUP and exits on SIGTERM.
v=2
conf() { cat /etc/lab-toy.conf; }
echo "toy v$v started pid $$ config $(conf)"
trap 'echo "toy v$v reload config $(conf)"' HUP
trap 'echo "toy v$v stopping"; exit 0' TERM
while :; do sleep 1 & wait $!; done
