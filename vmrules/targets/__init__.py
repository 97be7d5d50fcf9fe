"""Export targets, one module per type (registry.py lists them, with the plugins): files (csv, json,
jsonl, parquet) written into part files and merged, SQLite tables (one transaction per rule), and
services (webhook, Alertmanager, VictoriaMetrics write-back) given a Delivery per rule."""
