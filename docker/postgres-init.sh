#!/bin/sh
# merklog's database and roles, made once by the postgres image when it
# initialises an empty data directory (docker-compose.yml mounts this file
# into /docker-entrypoint-initdb.d). This script runs as the cluster's
# superuser; nothing of merklog's does (docs/STORAGE.md, "Roles").
set -eu
: "${MERKLOG_OWNER_PASSWORD:?set MERKLOG_OWNER_PASSWORD (see docker-compose.yml)}"
: "${MERKLOG_SERVICE_PASSWORD:?set MERKLOG_SERVICE_PASSWORD (see docker-compose.yml)}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set owner_password="$MERKLOG_OWNER_PASSWORD" \
    --set service_password="$MERKLOG_SERVICE_PASSWORD" <<'SQL'
-- The owner of the database and the tables: it runs the migrations (the
-- merklog-init service) and nothing else. Not a superuser; CREATEROLE
-- because the migrations create the cluster-wide roles merklog_writer,
-- merklog_reader and merklog_tiler.
CREATE ROLE merklog_owner LOGIN NOSUPERUSER CREATEROLE PASSWORD :'owner_password';
CREATE DATABASE merklog OWNER merklog_owner;

-- Only the merklog roles may connect (any login that connects can take the
-- leader lock), and nobody creates temporary objects.
REVOKE CONNECT, TEMPORARY ON DATABASE merklog FROM PUBLIC;
CREATE ROLE merklog_writer NOLOGIN;
CREATE ROLE merklog_reader NOLOGIN;
GRANT CONNECT ON DATABASE merklog TO merklog_writer, merklog_reader;

-- The service's login: INSERT and SELECT on the log, nothing more.
CREATE ROLE merklog_service LOGIN PASSWORD :'service_password';
GRANT merklog_writer TO merklog_service;
SQL
