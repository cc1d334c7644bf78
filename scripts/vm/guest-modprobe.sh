#!/bin/sh
# The guest kernel's module autoloader (/proc/sys/kernel/modprobe): modules live in the unpacked
# kernel package on the read-only host share, not in /lib/modules, so point modprobe at them.
exec /sbin/modprobe -d "$(cat /run/nkvm/kernel-dir)" "$@"
