#!/usr/bin/env bash
# Installs every Debian 12 package Orthrus needs to build, test, demo and benchmark.
# Idempotent and non-interactive; run as root:  sudo deploy/install-deps.sh
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (apt-get install)" >&2
  exit 1
fi

PACKAGES=(
  # toolchain
  g++ cmake ninja-build pkg-config ccache git make
  # libFuzzer build of tests/fuzz (clang + its fuzzer/sanitizer runtimes)
  clang libclang-rt-14-dev
  # libraries the code links
  libboost-dev libssl-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libkrb5-dev libldap-dev libsqlite3-dev libgtest-dev libgmock-dev
  # test and demo tooling: PKI, clients, namespaces, process inspection
  openssl curl ca-certificates python3 python3-pytest procps iproute2 psmisc bc faketime
  # the throwaway AD test domain (Samba AD DC) and the Kerberos-protected backend (Apache + mod_auth_gssapi)
  samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind ldb-tools
  krb5-user krb5-config ldap-utils libsasl2-modules-gssapi-mit attr
  apache2 libapache2-mod-auth-gssapi
  # KDC-unreachable tests (DROP rule for port 88 inside the test netns)
  nftables
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
fi

# Debian enables and starts these daemons on install; the tests start their own private instances
# inside network namespaces, so the system-wide ones must not hold ports or keytabs.
if [ -d /run/systemd/system ]; then
  for unit in samba-ad-dc smbd nmbd winbind krb5-kdc apache2; do
    if systemctl list-unit-files "$unit.service" >/dev/null 2>&1; then
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
fi
