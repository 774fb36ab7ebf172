#!/usr/bin/env bash
# Prints the highest GLIBC_ symbol version an ELF binary needs (objdump -T): the oldest
# glibc it runs on. With a second argument, fails unless that floor is at most it.
#
#   hack/glibc-floor.sh BINARY [MAX]     e.g. hack/glibc-floor.sh kubeadm-etcd 2.17
set -euo pipefail

bin="${1:?usage: $0 BINARY [MAX_GLIBC_VERSION]}"
max="${2:-}"
command -v objdump >/dev/null || { echo "objdump not found: install binutils" >&2; exit 1; }
[ -f "${bin}" ] || { echo "${bin}: no such file" >&2; exit 1; }

# Dynamic symbols look like "... (GLIBC_2.14) memcpy" or "GLIBC_2.2.5 pthread_create";
# the version is what follows GLIBC_.
versions="$(objdump -T "${bin}" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -u -V)"
if [ -z "${versions}" ]; then
  echo "${bin}: needs no versioned glibc symbol (static, or not linked against glibc)"
  exit 0
fi
floor="$(tail -n1 <<<"${versions}")"
# The symbols that set the floor, so a regression names its cause.
culprits="$(objdump -T "${bin}" | awk -v v="GLIBC_${floor}" 'index($0, v) { print $NF }' | sort -u | head -n 5 | tr '\n' ' ')"
echo "${bin}: needs glibc ${floor} (highest GLIBC_ symbol version; set by: ${culprits% })"
if [ -n "${max}" ] && [ "$(printf '%s\n%s\n' "${floor}" "${max}" | sort -V | tail -n1)" != "${max}" ]; then
  echo "${bin}: needs glibc ${floor}, newer than the ${max} it must run on" >&2
  exit 1
fi
