"""Persistent state behind one small `Database` interface: SQLite (embedded) or PostgreSQL."""
