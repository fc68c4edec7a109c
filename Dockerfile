# Flotilla: one image for every process (controller, router, host, CLI).
#   docker build -t flotilla:latest .
#   docker run --rm flotilla:latest --help

# --- build: dev dependencies, compile src/ into dist/ ---
FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied in.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# --- production dependencies only (tsx stays: replicas load users' .ts handlers with it) ---
FROM node:20-slim AS deps
WORKDIR /opt/flotilla
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# --- runtime ---
FROM node:20-slim
ENV NODE_ENV=production \
    FLOTILLA_APP_DIR=/app
WORKDIR /opt/flotilla
COPY --from=deps /opt/flotilla/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY --from=build /src/dist ./dist
# /app is the app directory of deployments without runtimeEnv (empty unless you mount modules there);
# /node_modules/flotilla lets them `import ... from "flotilla"`. runtimeEnv packages link to it themselves.
# /var/cache/flotilla: the hosts' runtimeEnv cache (--cache-dir), a volume in docker-compose.yml.
RUN mkdir -p /app /node_modules /var/cache/flotilla && ln -s /opt/flotilla /node_modules/flotilla
WORKDIR /app
ENTRYPOINT ["node", "/opt/flotilla/bin/flotilla.js"]
CMD ["--help"]
