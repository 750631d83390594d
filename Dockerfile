# One image for every hardcron process; the command chooses: migrate, server or executor.
#   docker build -t hardcron .
#   docker run --rm -e SERVER_DATABASE_URL=… -e JWT_SECRET=… -p 5678:5678 hardcron server
# Three stages: runtime dependencies, the dashboard's build, and the image, which takes
# node_modules from the first and only the built web/dist from the second.

FROM node:24-bookworm-slim AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
# Runtime dependencies only. Install scripts are not needed (embedded PostgreSQL is for
# development; a container talks to a PostgreSQL server through its URL).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim AS web
WORKDIR /app
COPY package.json package-lock.json ./
# With dev dependencies: Vite and codegen build the dashboard. --ignore-scripts skips `prepare`,
# which would build before the sources below are here; the build runs on its own line instead.
# This stage is thrown away, so its dev dependencies never reach the image.
RUN npm ci --ignore-scripts --no-audit --no-fund
# What build:web reads: the dashboard's sources and configuration, and the schema snapshot its
# operation types are generated from. Vite empties web/dist first, so a build in the context
# does not leak in.
COPY graphql ./graphql
COPY web ./web
RUN npm run build:web

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
# The built dashboard only (index.html and hashed assets), where the server looks for it
# (web/dist beside server/); not its sources, not the build stage's node_modules.
COPY --from=web /app/web/dist ./web/dist
# The image's own unprivileged user; nothing in /app is writable by it.
USER node
EXPOSE 5678 9464
ENTRYPOINT ["node", "bin/hardcron.js"]
CMD ["server"]
