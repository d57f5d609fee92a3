"""Tests of service/: the HTTP API, the CLI, the app factory, real gunicorn workers."""
