-- Some tutorials create virtual_domains without a unique name and virtual_aliases without an
-- index on source (every alias lookup then scans the table). Add both when missing. The unique
-- index is skipped while duplicate domain names exist (maild then still refuses new duplicates).

SET @ddl := IF(
  (SELECT COUNT(*) FROM information_schema.STATISTICS
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'virtual_domains' AND COLUMN_NAME = 'name'
       AND NON_UNIQUE = 0 AND SEQ_IN_INDEX = 1) = 0
  AND (SELECT COUNT(*) FROM (SELECT `name` FROM `virtual_domains` GROUP BY `name` HAVING COUNT(*) > 1) AS dup) = 0,
  'ALTER TABLE `virtual_domains` ADD UNIQUE KEY `virtual_domains_name_unique` (`name`)', 'DO 0');
PREPARE stmt FROM @ddl;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;

SET @ddl := IF(
  (SELECT COUNT(*) FROM information_schema.STATISTICS
     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'virtual_aliases' AND COLUMN_NAME = 'source'
       AND SEQ_IN_INDEX = 1) = 0,
  'ALTER TABLE `virtual_aliases` ADD KEY `virtual_aliases_source` (`source`)', 'DO 0');
PREPARE stmt FROM @ddl;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;
