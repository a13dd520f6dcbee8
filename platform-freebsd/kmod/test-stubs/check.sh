#!/bin/sh
# Syntax check of the shim against the KPI stubs (see kpi.h): all that can be checked without
# FreeBSD's headers.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec gcc -fsyntax-only -ffreestanding -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Werror \
    -nostdinc -I"$here" -iquote "$here/.." "$here/../hydranet_kmod.c"
