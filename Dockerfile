# One image for every hardcron process; the command chooses: migrate, server or executor.
#   docker build -t hardcron .
#   docker run --rm -e SERVER_DATABASE_URL=… -e JWT_SECRET=… -p 5678:5678 hardcron server

FROM node:24-bookworm-slim AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
# Runtime dependencies only. Install scripts are not needed (embedded PostgreSQL is for
# development; a container talks to a PostgreSQL server through its URL).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    GRAPHILE_ENV=production \
    HOST=0.0.0.0 \
    HARDCRON_EXECUTOR_HTTP_HOST=0.0.0.0
WORKDIR /app
COPY --from=dependencies /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY server ./server
COPY sql ./sql
COPY graphql ./graphql
# The image's own unprivileged user; nothing in /app is writable by it.
USER node
EXPOSE 5678 9464
ENTRYPOINT ["node", "bin/hardcron.js"]
CMD ["server"]
