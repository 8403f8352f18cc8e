"""Shared building blocks: heads, momentum encoder, queue, losses."""
