-- Tutorial databases have no enable/quota columns: add them when missing. MariaDB has
-- ADD COLUMN IF NOT EXISTS, MySQL 8 has not, so the check goes through information_schema.

SET @missing := (SELECT COUNT(*) = 0 FROM information_schema.COLUMNS
  WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'virtual_users' AND COLUMN_NAME = 'enable');
SET @ddl := IF(@missing, 'ALTER TABLE `virtual_users` ADD COLUMN `enable` TINYINT(1) NOT NULL DEFAULT 1', 'DO 0');
PREPARE stmt FROM @ddl;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;

SET @missing := (SELECT COUNT(*) = 0 FROM information_schema.COLUMNS
  WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'virtual_users' AND COLUMN_NAME = 'quota');
SET @ddl := IF(@missing, 'ALTER TABLE `virtual_users` ADD COLUMN `quota` BIGINT NOT NULL DEFAULT 0', 'DO 0');
PREPARE stmt FROM @ddl;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;
