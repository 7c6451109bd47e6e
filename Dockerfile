# syntax=docker/dockerfile:1
# iommud: the same steps as the README's quick start (npm ci, npm run build, npm start), in two stages.

FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    IOMMUD_DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY web ./web
COPY docker/healthcheck.mjs ./docker/healthcheck.mjs
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "docker/healthcheck.mjs"]
# npm start would rebuild (prestart); the image runs the built entry directly, as `npm start` does after its build.
# Arguments of `docker run iommud ...` go to the daemon (e.g. --port 9000); the health probe follows them.
ENTRYPOINT ["node", "dist/src/cli/iommud.js"]
