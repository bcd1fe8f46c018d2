"""Protocol edges (MQTT, SFTP, HTTP ingest) and the file formats they carry."""
