-- Tutorial databases have password VARCHAR(106), too short for an Argon2 hash with its {SCHEME}
-- prefix, and 100-character addresses. Widen such columns to 255, keeping each column's
-- character set, collation and nullability (the tutorial columns have no defaults).

SET @ddl := (SELECT CONCAT('ALTER TABLE `virtual_users` MODIFY `password` VARCHAR(255) CHARACTER SET ', CHARACTER_SET_NAME,
    ' COLLATE ', COLLATION_NAME, IF(IS_NULLABLE = 'YES', ' NULL', ' NOT NULL'))
  FROM information_schema.COLUMNS
  WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'virtual_users' AND COLUMN_NAME = 'password'
    AND DATA_TYPE = 'varchar' AND CHARACTER_MAXIMUM_LENGTH < 255);
SET @ddl := IFNULL(@ddl, 'DO 0');
PREPARE stmt FROM @ddl;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;

SET @ddl := (SELECT CONCAT('ALTER TABLE `virtual_users` MODIFY `email` VARCHAR(255) CHARACTER SET ', CHARACTER_SET_NAME,
    ' COLLATE ', COLLATION_NAME, IF(IS_NULLABLE = 'YES', ' NULL', ' NOT NULL'))
  FROM information_schema.COLUMNS
  WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'virtual_users' AND COLUMN_NAME = 'email'
    AND DATA_TYPE = 'varchar' AND CHARACTER_MAXIMUM_LENGTH < 255);
SET @ddl := IFNULL(@ddl, 'DO 0');
PREPARE stmt FROM @ddl;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;

SET @ddl := (SELECT CONCAT('ALTER TABLE `virtual_aliases` MODIFY `source` VARCHAR(255) CHARACTER SET ', CHARACTER_SET_NAME,
    ' COLLATE ', COLLATION_NAME, IF(IS_NULLABLE = 'YES', ' NULL', ' NOT NULL'))
  FROM information_schema.COLUMNS
  WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'virtual_aliases' AND COLUMN_NAME = 'source'
    AND DATA_TYPE = 'varchar' AND CHARACTER_MAXIMUM_LENGTH < 255);
SET @ddl := IFNULL(@ddl, 'DO 0');
PREPARE stmt FROM @ddl;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;

SET @ddl := (SELECT CONCAT('ALTER TABLE `virtual_aliases` MODIFY `destination` VARCHAR(255) CHARACTER SET ', CHARACTER_SET_NAME,
    ' COLLATE ', COLLATION_NAME, IF(IS_NULLABLE = 'YES', ' NULL', ' NOT NULL'))
  FROM information_schema.COLUMNS
  WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'virtual_aliases' AND COLUMN_NAME = 'destination'
    AND DATA_TYPE = 'varchar' AND CHARACTER_MAXIMUM_LENGTH < 255);
SET @ddl := IFNULL(@ddl, 'DO 0');
PREPARE stmt FROM @ddl;
EXECUTE stmt;
DEALLOCATE PREPARE stmt;
