# maild's image: the release tarball (npm run release) unpacked to /opt/maild on Debian 12.
#
#   docker build -t maild .
#   docker run -d --name maild \
#     -e MAILD_HOSTNAME=mail.example.com -e MAILD_DOMAIN=example.com \
#     -v maild-etc:/etc/maild -v maild-state:/var/lib/maild -v maild-mail:/var/mail/vhosts \
#     -p 25:2525 -p 465:1465 -p 587:1587 -p 993:1993 -p 143:1143 -p 995:1995 -p 110:1110 \
#     maild
#   docker logs maild     # the first start prints the first user's random password, once
#
# There is no built-in configuration, user or password: without /etc/maild/maild.yaml the
# entrypoint writes one with `maild init --container` when MAILD_HOSTNAME and MAILD_DOMAIN are set
# (their values are used on the first start only) and refuses to start otherwise. To bring your
# own, mount the file (nothing else the image needs lives in /etc/maild):
#     -v /srv/maild/maild.yaml:/etc/maild/maild.yaml:ro      (config/container.yaml is an example)
# Certificates: mount them readable by uid 5000, e.g. -v /srv/maild/tls:/etc/maild/tls:ro, and set
# tls.cert/tls.key; without them a self-signed pair is generated in /var/lib/maild.
# Other maild commands: docker exec -it maild maild user add you@example.com
# A compose file with MariaDB as the directory: compose.yaml.

FROM node:22-bookworm-slim AS build
WORKDIR /src
# .dockerignore keeps node_modules, dist, data (keys, mail) and old tarballs out of the context.
COPY . .
RUN npm ci --no-audit --no-fund \
 && npm run release \
 && mv maild-*-linux-x64.tar.gz /maild.tar.gz

FROM debian:bookworm-slim
# ca-certificates: verifying the certificates of remote MX hosts and relays (queue.tls: verify).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The mail user with the id the Postfix/Dovecot tutorials give vmail, so host directories and key
# files can be chowned to it predictably.
RUN groupadd --system --gid 5000 vmail \
 && useradd --system --uid 5000 --gid vmail --home-dir /var/lib/maild --no-create-home --shell /usr/sbin/nologin vmail
COPY --from=build /maild.tar.gz /tmp/maild.tar.gz
RUN tar -xzf /tmp/maild.tar.gz -C /opt \
 && rm /tmp/maild.tar.gz \
 && install -m 0755 /opt/maild/config/docker-entrypoint /opt/maild/bin/docker-entrypoint \
 && install -d -o vmail -g vmail -m 0750 /etc/maild /var/lib/maild /var/mail/vhosts
ENV PATH=/opt/maild/bin:$PATH \
    MAILD_CONFIG=/etc/maild/maild.yaml \
    NODE_ENV=production
# The daemon runs as vmail from the start and never as root: a container needs no port below
# 1024 (publish 25 as 2525 and so on), so root would only widen what a flaw in the daemon could
# reach, and nothing depends on dropping privileges correctly. The price: mounted key files must
# be readable by uid 5000.
USER vmail
VOLUME ["/etc/maild", "/var/lib/maild", "/var/mail/vhosts"]
# SMTP (MX), submissions, submission, IMAPS, IMAP, POP3S, POP3.
EXPOSE 2525 1465 1587 1993 1143 1995 1110
# Exit 0 while the daemon answers on its control socket (/var/lib/maild/control.sock).
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 CMD ["/opt/maild/bin/maild", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/maild/bin/docker-entrypoint"]
CMD ["serve"]
