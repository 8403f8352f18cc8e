"""Backbones and checkpoint reading/writing."""
