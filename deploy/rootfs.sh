#!/bin/sh
# Assembles the wasmnet container root filesystem in ROOT from a compiled wasmnet BINARY:
#
#   /wasmnet                              the binary (glibc build, linked dynamically)
#   the dynamic loader and every shared library `ldd` names for it (libc, libm, libpthread, libdl)
#   /etc/ssl/certs/ca-certificates.crt    the system CA bundle
#   /etc/passwd, /etc/group               root and the non-root user nonroot (65532:65532)
#   /etc/nsswitch.conf                    hosts: files dns
#   /tmp (sticky, world-writable); /proc and /dev as mount points for the container runtime
#
# The Dockerfile's build stage runs this and the final stage (FROM scratch) copies ROOT as is;
# test/container.test.ts runs the same script and starts the binary inside ROOT with chroot.
#
#   sh deploy/rootfs.sh BINARY ROOT
set -eu
bin=$1
root=$2
uid=65532

mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/proc" "$root/dev"
chmod 1777 "$root/tmp"
cp "$bin" "$root/wasmnet"
chmod 0755 "$root/wasmnet"

# Every absolute path ldd prints: the libraries (after "=>") and the loader (first column).
libs=$(ldd "$bin" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u)
[ -n "$libs" ] || { echo "rootfs.sh: ldd found no libraries for $bin (static or wrong architecture?)" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

cat > "$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:$uid:$uid:nonroot:/nonexistent:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<GROUP
root:x:0:
nonroot:x:$uid:
GROUP
echo "hosts: files dns" > "$root/etc/nsswitch.conf"
