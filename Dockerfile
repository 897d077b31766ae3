# The vsys image: `vsys exporter` for deploy/kubernetes/daemonset.yaml, or any vsys command.
#   docker build -t vsys .
#   docker run --rm vsys scan --help
# The exporter loads eBPF programs: it runs as root with CAP_BPF, CAP_PERFMON (and the others the
# DaemonSet lists, each explained there), never --privileged.

FROM node:20-bookworm-slim AS build
WORKDIR /opt/vsys
COPY package.json package-lock.json tsconfig.json ./
COPY bin/ bin/
COPY schema/ schema/
COPY src/ src/
# npm ci runs `prepare` (tsc) as well; the explicit build says what the image is made of.
RUN npm ci --no-audit --no-fund && npx tsc -p . && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    XDG_CACHE_HOME=/var/cache/vsys
WORKDIR /opt/vsys
COPY --from=build /opt/vsys/package.json ./package.json
COPY --from=build /opt/vsys/bin/ ./bin/
COPY --from=build /opt/vsys/dist/src/ ./dist/src/
COPY --from=build /opt/vsys/node_modules/ ./node_modules/
COPY --from=build /opt/vsys/schema/ ./schema/
# eBPF needs capabilities that a non-root user does not keep across exec: root, with the
# container's capability set cut down by the runtime (deploy/kubernetes/daemonset.yaml).
USER root
EXPOSE 9717
ENTRYPOINT ["node", "/opt/vsys/bin/vsys.js"]
CMD ["exporter", "--listen", "0.0.0.0:9717"]
