# The photovault image: one image for every role (`server start`, `worker start`, admin
# commands). Built for linux/arm64 (Raspberry Pi 4/5) and linux/amd64:
#   docker buildx build --platform linux/arm64,linux/amd64 -t registry.example/photovault:0.1.0 --push .

FROM node:24-slim AS build
WORKDIR /app
# better-sqlite3 and sharp ship prebuilt binaries for linux arm64 and x64; the compiler is for
# better-sqlite3's fallback build from source when no prebuilt matches this Node.js.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
RUN npm run build && npm prune --omit=dev

FROM node:24-slim
# ffmpeg/ffprobe: video metadata, poster frames and HLS; heif-convert (libheif-examples): HEVC-coded
# HEIC, which sharp's prebuilt libvips cannot decode. sharp brings its own libvips. tini reaps
# the ffmpeg and heif-convert children and passes signals on (node as PID 1 would not reap).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg libheif-examples tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production \
    PATH=/app/bin:$PATH \
    PHOTOVAULT_DATA_DIR=/var/lib/photovault
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY bin ./bin
# The data dir holds the workers' scratch files in the cluster form (everything else is in
# PostgreSQL and S3), the whole vault in the embedded form: mount a volume there.
RUN mkdir -p /var/lib/photovault && chown node:node /var/lib/photovault
USER node
EXPOSE 8420
ENTRYPOINT ["/usr/bin/tini", "--", "photovault"]
CMD ["server", "start"]
