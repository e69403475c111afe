# maild: build with `docker build -t maild .`, run with
#   docker run -p 25:2525 -v maild-mail:/var/mail/vhosts -v maild-data:/var/lib/maild \
#              -v ./my-config:/etc/maild maild
# The image's default config is the container quick start (config/container.yaml).

FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY test ./test
COPY bench ./bench
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:22-bookworm-slim
ENV NODE_ENV=production
RUN groupadd --system vmail && useradd --system --gid vmail --home-dir /var/lib/maild --shell /usr/sbin/nologin vmail \
 && install -d -o vmail -g vmail /var/mail/vhosts /var/lib/maild /etc/maild
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY migrations ./migrations
COPY config ./config
RUN ln -s /app/dist/src/cli/index.js /usr/local/bin/maild && chmod +x /app/dist/src/cli/index.js \
 && cp /app/config/container.yaml /etc/maild/maild.yaml && cp /app/config/quickstart-directory.yaml /etc/maild/
USER vmail
VOLUME ["/var/mail/vhosts", "/var/lib/maild", "/etc/maild"]
EXPOSE 2525 1587 1465 2424 1143 1993 1110 1995
ENV MAILD_CONFIG=/etc/maild/maild.yaml
STOPSIGNAL SIGTERM
CMD ["node", "/app/dist/src/main.js", "--config", "/etc/maild/maild.yaml"]
