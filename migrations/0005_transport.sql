-- The tutorials' transport table (Postfix transport_maps, transport(5)): where mail for a domain
-- goes, e.g. "smtp:[relay.example.com]:587". A key ".example.com" covers the subdomains of
-- example.com. Read through directory.mysql.queries.transport, e.g.
--   SELECT transport FROM transport WHERE domain = '%s'
-- IF NOT EXISTS: a database that already has a transport table keeps it as it is.

CREATE TABLE IF NOT EXISTS `transport` (
  `id` INT NOT NULL AUTO_INCREMENT,
  `domain` VARCHAR(128) NOT NULL,
  `transport` VARCHAR(128) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `domain` (`domain`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
