# syntax=docker/dockerfile:1
# wasmnet container image: the compiled server on an otherwise empty filesystem (no shell, no
# package manager), running as uid 65532.
#
#   docker build -t wasmnet .
#   docker run --rm --read-only -p 9000:9000 wasmnet                     # default policy
#   docker run --rm --read-only -p 9000:9000 -v "$PWD/policy.toml:/etc/wasmnet/policy.toml:ro" \
#     wasmnet --host 0.0.0.0 --port 9000 --policy /etc/wasmnet/policy.toml
#
# Multi-arch: `docker buildx build --platform linux/amd64,linux/arm64 .` (each platform compiles
# natively in the build stage; deploy/rootfs.sh asks ldd for that platform's libraries).
#
# The build stage compiles dist/wasmnet with scripts/build.ts and assembles the image's root
# filesystem with deploy/rootfs.sh: the binary, the dynamic loader and the glibc libraries ldd
# names, the CA bundle, /etc/passwd and /etc/group with the non-root user, /tmp.
# test/container.test.ts runs the same script and proves that root is enough: it starts the
# binary in it with chroot as 65532:65532 on a read-only root and relays through it.

FROM node:22-bookworm AS build
WORKDIR /src
# .git stays in the context so that --version names the commit.
COPY . .
RUN git config --global --add safe.directory /src \
 && npm ci --no-audit --no-fund \
 && node_modules/.bin/bun scripts/build.ts --outfile /out/wasmnet \
 && /out/wasmnet --version \
 && sh deploy/rootfs.sh /out/wasmnet /rootfs

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
EXPOSE 9000
ENTRYPOINT ["/wasmnet"]
CMD ["--host", "0.0.0.0", "--port", "9000"]
# The image has no shell or curl; the binary probes itself. Orchestrators can also probe
# GET /healthz directly (200 while serving, 503 while draining).
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s CMD ["/wasmnet", "healthcheck", "http://127.0.0.1:9000/healthz"]
