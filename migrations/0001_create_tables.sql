-- The schema of the classic Postfix + Dovecot + MySQL tutorials (virtual_domains, virtual_users,
-- virtual_aliases), with the columns maild adds: virtual_users.enable and virtual_users.quota.
-- IF NOT EXISTS: on a database built by a tutorial these are no-ops and 0002..0004 upgrade it.
-- Every migration may be re-run safely, also by hand: mysql mailserver < migrations/NNNN_x.sql

CREATE TABLE IF NOT EXISTS `virtual_domains` (
  `id` INT NOT NULL AUTO_INCREMENT,
  `name` VARCHAR(50) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `name` (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS `virtual_users` (
  `id` INT NOT NULL AUTO_INCREMENT,
  `domain_id` INT NOT NULL,
  `password` VARCHAR(255) NOT NULL,
  `email` VARCHAR(255) NOT NULL,
  -- 0: the mailbox receives no mail and cannot log in.
  `enable` TINYINT(1) NOT NULL DEFAULT 1,
  -- Bytes; 0 = unlimited.
  `quota` BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  UNIQUE KEY `email` (`email`),
  KEY `domain_id` (`domain_id`),
  FOREIGN KEY (`domain_id`) REFERENCES `virtual_domains` (`id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS `virtual_aliases` (
  `id` INT NOT NULL AUTO_INCREMENT,
  `domain_id` INT NOT NULL,
  -- user@domain, or @domain for a catch-all.
  `source` VARCHAR(255) NOT NULL,
  -- One address per row; @otherdomain keeps the local part (alias domain).
  `destination` VARCHAR(255) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `source` (`source`),
  KEY `domain_id` (`domain_id`),
  FOREIGN KEY (`domain_id`) REFERENCES `virtual_domains` (`id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
