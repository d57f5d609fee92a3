"""Tests of assets/: image checks, thumbnails, bulk import."""
